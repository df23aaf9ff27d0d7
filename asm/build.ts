// Compiles the AssemblyScript modules of asm/, skipping the work when every output is newer than
// every source: build/convmixer.wasm (asm/index.ts, every kernel of training and data preparation;
// one module serves both the training threads, which share one WebAssembly.Memory, and the data
// workers, each with a memory of its own) and build/peak.wasm (asm/peak.ts, the bench's FMA-rate
// probe, kept out of the production module). Both import a shared memory, so src/wasm/threads.ts's
// pool runs either.
import asc from "assemblyscript/asc";

const root = new URL("..", import.meta.url);
const sourceDir = new URL("asm/", root);
const modules = [
  { entry: "asm/index.ts", output: "build/convmixer.wasm" },
  { entry: "asm/peak.ts", output: "build/peak.wasm" },
];

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

if (modules.every(({ output }) => mtime(new URL(output, root)) > newestSource)) Deno.exit(0);

Deno.mkdirSync(new URL("build/", root), { recursive: true });
for (const { entry, output } of modules) {
  const { error, stderr } = await asc.main([
    entry,
    "--outFile", output,
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
    console.error(`asm build of ${output} failed: ${error.message}`);
    Deno.exit(1);
  }
  console.error(`built ${output}`);
}
