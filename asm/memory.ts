// The first byte the TypeScript allocator may use: everything below is the module's static data.
export function heapBase(): usize {
  return __heap_base;
}
