// Compiles asm/*.ts (AssemblyScript) into build/convmixer.wasm, skipping the work when the
// output is newer than every source. One module serves both the training threads (which share
// one WebAssembly.Memory) and the data workers (each with a memory of its own).
import asc from "assemblyscript/asc";

const root = new URL("..", import.meta.url);
const sourceDir = new URL("asm/", root);
const output = new URL("build/convmixer.wasm", root);

function mtime(url: URL): number {
  try {
    return Deno.statSync(url).mtime?.getTime() ?? 0;
  } catch {
    return 0;
  }
}

const sources = [...Deno.readDirSync(sourceDir)]
  .filter((e) => e.isFile && e.name.endsWith(".ts") && e.name !== "build.ts")
  .map((e) => new URL(e.name, sourceDir));
const newestSource = Math.max(...sources.map(mtime), mtime(new URL("asm/build.ts", root)));

if (mtime(output) > newestSource) Deno.exit(0);

Deno.mkdirSync(new URL("build/", root), { recursive: true });
const { error, stderr } = await asc.main([
  "asm/index.ts",
  "--outFile", "build/convmixer.wasm",
  "-O3", "--noAssert",
  "--runtime", "stub",
  "--enable", "simd",
  "--enable", "relaxed-simd",
  "--enable", "threads",
  "--importMemory", "--sharedMemory",
  "--initialMemory", "256",
  "--maximumMemory", "65536",
], { stdout: { write: () => true } as never });
if (error) {
  console.error(stderr.toString());
  console.error(`asm build failed: ${error.message}`);
  Deno.exit(1);
}
console.error("built build/convmixer.wasm");
