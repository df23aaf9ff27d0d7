// src/model.ts on the float64 reference backend against PyTorch's fixtures: the wiring alone,
// with no float32 rounding in the way (each backend has its own fixture test too), so held to the
// float32 rounding of the stored values and float64 arithmetic.
import { ReferenceBackend } from "./reference_backend.ts";
import { checkFixture, FIXTURES } from "./model_fixtures.ts";

for (const name of FIXTURES) {
  Deno.test(`reference backend matches PyTorch on fixture ${name}`, () =>
    checkFixture(new ReferenceBackend(), name, 2 ** -53));
}
