// The WASM backend against the float64 reference, op by op (tests/conformance.ts), on one thread
// and on three (uneven row splits, per-thread partials combined).
import { WasmBackend } from "../src/wasm/backend.ts";
import { WASM_ARITHMETIC } from "./bounds.ts";
import { conformanceTests } from "./conformance.ts";

conformanceTests("wasm, 1 thread", () => WasmBackend.create({ threads: 1 }), WASM_ARITHMETIC);
conformanceTests("wasm, 3 threads", () => WasmBackend.create({ threads: 3 }), WASM_ARITHMETIC);
