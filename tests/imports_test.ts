// The module structure of src/: no import cycles (a cycle makes the load order matter and hides
// which module owns what), and the data layer independent of the backends' types. Reads the
// import and export-from statements of every file, type-only ones included.
import assert from "node:assert/strict";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const SRC = fileURLToPath(new URL("../src", import.meta.url));

function sources(dir: string): string[] {
  return [...Deno.readDirSync(dir)].flatMap((entry) => {
    const path = join(dir, entry.name);
    return entry.isDirectory ? sources(path) : entry.name.endsWith(".ts") ? [path] : [];
  });
}

/** Each file (relative to src/) → the files of src/ it imports. */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of sources(SRC)) {
    const text = Deno.readTextFileSync(file);
    const targets = [...text.matchAll(/^\s*(?:import|export)\b[^;]*?\bfrom\s+"(\.{1,2}\/[^"]+)"/gms)]
      .map((m) => relative(SRC, resolve(dirname(file), m[1])));
    graph.set(relative(SRC, file), targets.filter((t) => !t.startsWith("..")));
  }
  return graph;
}

/** The first cycle found by depth-first search, as a path that returns to its start, or null. */
function findCycle(graph: Map<string, string[]>): string[] | null {
  const state = new Map<string, "open" | "done">();
  const stack: string[] = [];
  const visit = (file: string): string[] | null => {
    if (state.get(file) === "done") return null;
    if (state.get(file) === "open") return [...stack.slice(stack.indexOf(file)), file];
    state.set(file, "open");
    stack.push(file);
    for (const next of graph.get(file) ?? []) {
      const cycle = visit(next);
      if (cycle) return cycle;
    }
    stack.pop();
    state.set(file, "done");
    return null;
  };
  for (const file of graph.keys()) {
    const cycle = visit(file);
    if (cycle) return cycle;
  }
  return null;
}

Deno.test("src/ has no import cycles", () => {
  const graph = importGraph();
  assert.ok(graph.size > 20, `read only ${graph.size} files`);
  const cycle = findCycle(graph);
  assert.equal(cycle, null, `import cycle: ${cycle?.join(" → ")}`);
});

/** Every file of src/ that `file` reaches through its imports, itself excluded. */
function reachable(graph: Map<string, string[]>, file: string): Set<string> {
  const seen = new Set<string>();
  const walk = (f: string) => {
    for (const next of graph.get(f) ?? []) if (!seen.has(next)) seen.add(next), walk(next);
  };
  walk(file);
  return seen;
}

Deno.test("the data layer does not reach the backends' modules, even through others", () => {
  const graph = importGraph();
  const backendModules = /^(backend\.ts|shapes\.ts|model\.ts|webgpu\/|wasm\/(?!module\.ts))/;
  for (const file of graph.keys()) {
    if (!file.startsWith("data/")) continue;
    const bad = [...reachable(graph, file)].filter((t) => backendModules.test(t));
    assert.deepEqual(bad, [], `${file} reaches ${bad.join(", ")}`);
  }
});

Deno.test("the cycle search finds a planted cycle", () => {
  const graph = new Map([["a.ts", ["b.ts"]], ["b.ts", ["c.ts"]], ["c.ts", ["a.ts"]], ["d.ts", []]]);
  assert.deepEqual(findCycle(graph), ["a.ts", "b.ts", "c.ts", "a.ts"]);
  assert.equal(findCycle(new Map([["a.ts", ["b.ts"]], ["b.ts", []]])), null);
});
