// The WASM backend against the float64 reference, op by op (tests/conformance.ts), on one thread
// and on three (uneven row splits, per-thread partials combined).
import { WasmBackend } from "../src/wasm/backend.ts";
import { conformanceTests } from "./conformance.ts";

// Float32 with sums of up to a few hundred terms: a few ulps of the largest magnitude involved.
const tolerance = { rel: 2e-6, abs: 1e-7 };

conformanceTests("wasm, 1 thread", () => WasmBackend.create({ threads: 1 }), tolerance);
conformanceTests("wasm, 3 threads", () => WasmBackend.create({ threads: 3 }), tolerance);
