/** The stack's `solutionSha256` reaches the Solution resource as its `expectedSha256` input. */
import { installMocks } from "./support/pulumiMocks";
import { parseStackConfig } from "../components/config";
import { LeadManagement } from "../components/leadManagement";

const run = installMocks();
const PIN = "b85dc283101174d7ca716ae2b022fb7cfaec08cd736bbbb8c36db5340ef115ef";

it("passes solutionSha256 to the Solution resource, and leaves it out when unset", async () => {
    const config = parseStackConfig({ instanceUrl: "https://contoso.crm.dynamics.com", contactEmails: "leads@contoso.com" });
    new LeadManagement("pinned", { config: { ...config, solutionSha256: PIN } });
    new LeadManagement("unpinned", { config });
    expect((await run.declared("pinned-solution")).inputs.expectedSha256).toBe(PIN);
    expect((await run.declared("unpinned-solution")).inputs).not.toHaveProperty("expectedSha256");
});
