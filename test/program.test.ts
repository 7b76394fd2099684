import * as fs from "fs";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { installMocks, MockRun, MOCK_SECRET_VALUE, MOCK_TENANT_ID, settle } from "./support/pulumiMocks";
import { CONFIG_KEYS, StackConfig } from "../components/config";

type Program = typeof import("../index");
let mocks: MockRun;

/** Loads index.ts in isolation with the given stack config, as `pulumi up` would run it. */
async function loadProgram(config: Record<string, string>): Promise<Program> {
    mocks = installMocks();
    pulumi.runtime.setAllConfig(Object.fromEntries(Object.entries(config).map(([k, v]) => [`lead-management:${k}`, v])));
    let program: Program | undefined;
    jest.isolateModules(() => {
        // A fresh module registry: index.ts runs top to bottom again, as in a new `pulumi up`.
        // eslint-disable-next-line @typescript-eslint/no-require-imports -- jest re-evaluates only require()d modules
        program = require("../index") as Program;
    });
    return program!;
}

describe("the program (index.ts)", () => {
    it("exports the Partner Center connection details, with the client secret as a secret", async () => {
        const program = await loadProgram({ instanceUrl: "https://contoso.crm4.dynamics.com/", contactEmails: "a@contoso.com;b@contoso.com" });
        const expected: Record<string, [string, boolean]> = {
            leadDestination: ["Dynamics 365 Customer Engagement", false],
            instanceUrl: ["https://contoso.crm4.dynamics.com", false],
            authenticationMethod: ["Azure Active Directory", false],
            applicationId: ["11111111-2222-4333-8444-555555555555", false],
            directoryId: [MOCK_TENANT_ID, false],
            clientSecret: [MOCK_SECRET_VALUE, true],
            contactEmails: ["a@contoso.com;b@contoso.com", false],
        };
        for (const [name, [value, secret]] of Object.entries(expected)) {
            const output = (program as unknown as Record<string, pulumi.Output<string>>)[name];
            expect([name, await settle(output)]).toEqual([name, { value, secret }]);
        }
    });

    it("stops before declaring anything when the config is invalid, naming the key", async () => {
        await expect(loadProgram({ instanceUrl: "https://contoso.crm.dynamics.com", contactEmails: "not-an-address" }))
            .rejects.toThrow(/lead-management:contactEmails: has invalid address\(es\) "not-an-address"/);
        await new Promise((r) => setTimeout(r, 100));
        expect(mocks.resources.size).toBe(0);
    });
});

describe("Pulumi.yaml", () => {
    const yaml = fs.readFileSync(path.join(__dirname, "..", "Pulumi.yaml"), "utf8");
    const declared = [...yaml.split(/^config:\n/m)[1].matchAll(/^ {2}(\w+):\n((?: {4}.*\n?)*)/gm)]
        .map((m) => ({ key: m[1], body: m[2] }));

    it("declares exactly the keys the program reads, each with a type and a description", () => {
        expect(declared.map((d) => d.key).sort()).toEqual([...CONFIG_KEYS].sort());
        for (const { key, body } of declared) {
            expect([key, /^ {4}type: (string|integer|boolean)$/m.test(body)]).toEqual([key, true]);
            expect([key, /^ {4}description: \S/m.test(body)]).toEqual([key, true]);
        }
    });

    it("leaves only the instance and the contacts without a default", () => {
        const required = declared.filter((d) => !/^ {4}default:/m.test(d.body)).map((d) => d.key);
        expect(required.sort()).toEqual(["contactEmails", "instanceUrl"] satisfies (keyof StackConfig)[]);
    });
});
