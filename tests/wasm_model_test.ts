// The whole model on the WASM backend: PyTorch's fixtures (float32 kernels vs float64 PyTorch),
// and agreement with the float64 reference backend over several training steps.
import { WasmBackend } from "../src/wasm/backend.ts";
import { checkFixture, FIXTURES } from "./model_fixtures.ts";
import { checkTrainingAgreement } from "./model_agreement.ts";
import { ReferenceBackend } from "./reference_backend.ts";

for (const threads of [1, 2]) {
  for (const name of FIXTURES) {
    Deno.test(`wasm (${threads} threads) matches PyTorch on fixture ${name}`, async () => {
      const backend = await WasmBackend.create({ threads });
      try {
        await checkFixture(backend, name, 2e-4);
      } finally {
        backend.dispose();
      }
    });
  }
}

Deno.test("wasm and the float64 reference agree after 5 training steps", async () => {
  const backend = await WasmBackend.create();
  try {
    await checkTrainingAgreement(new ReferenceBackend(), backend, 5, 2e-3);
  } finally {
    backend.dispose();
  }
});
