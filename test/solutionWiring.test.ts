/** The stack's `solutionSha256` reaches the Solution resource as its `expectedSha256` input. */
import { PLAIN_STACK_CONFIG, runMockProgram } from "./support/providerHost";
import { registrationsOf } from "./support/registrations";

const PIN = "b85dc283101174d7ca716ae2b022fb7cfaec08cd736bbbb8c36db5340ef115ef";

it("passes solutionSha256 to the Solution resource, and leaves it out when unset", async () => {
    const [pinned, unpinned] = await Promise.all([
        runMockProgram({ ...PLAIN_STACK_CONFIG, solutionSha256: PIN }),
        runMockProgram(PLAIN_STACK_CONFIG),
    ]);
    const solutionInputs = (report: typeof pinned) => registrationsOf(() => report).byName("lead-management-solution").inputs;
    expect(solutionInputs(pinned).expectedSha256).toBe(PIN);
    expect(solutionInputs(unpinned)).not.toHaveProperty("expectedSha256");
});
