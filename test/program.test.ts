import * as fs from "fs";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { installMocks, MockRun } from "./support/pulumiMocks";
import { MOCK_SECRET_VALUE, MOCK_TENANT_ID } from "./support/mockValues";
import { registrationsOf } from "./support/registrations";
import { PLAIN_STACK_CONFIG, providersOf, runMockProgram } from "./support/providerHost";
import { README, renderPreview, stackConfig, withPreview } from "./support/renderPreview";
import type { MockProgramReport, Registration } from "./support/mockProgram";
import { CONFIG_KEYS, StackConfig } from "../components/config";
import { GUIDE_ROLE_PRIVILEGES } from "../components/guide";

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
    let report: MockProgramReport;
    const { byName, dependsOn } = registrationsOf(() => report);

    beforeAll(async () => {
        report = await runMockProgram(stackConfig("dev"));
        expect(report.error).toBeUndefined();
    }, 60_000);

    it("exports exactly the Partner Center connection details, with the client secret as a secret", () => {
        expect(report.outputs).toEqual({
            leadDestination: { value: "Dynamics 365 Customer Engagement", secret: false },
            instanceUrl: { value: "https://contoso.crm.dynamics.com", secret: false },
            authenticationMethod: { value: "Azure Active Directory", secret: false },
            applicationId: { value: "11111111-2222-4333-8444-555555555555", secret: false },
            directoryId: { value: MOCK_TENANT_ID, secret: false },
            clientSecret: { value: MOCK_SECRET_VALUE, secret: true },
            clientSecretEndDate: { value: expect.stringMatching(/^\d{4}-\d\d-\d\dT00:00:00\.000Z$/), secret: false },
            contactEmails: { value: "leads@contoso.com;sales@contoso.com", secret: false },
            warnings: { value: [], secret: false },
        });
    });

    it("declares the guide's resources under one LeadManagement component", () => {
        const children = report.registrations.filter((r) => r.parent.endsWith("::lead-management")).map((r) => [r.type, r.name]);
        expect(children.sort()).toEqual([
            ["leadmanagement:identity:AzureAdApp", "lead-management-aad"],
            ["pulumi-nodejs:dynamic/dataverse:ApplicationUser", "lead-management-app-user"],
            ["pulumi-nodejs:dynamic/dataverse:RoleAssignment", "lead-management-role-assignment"],
            ["pulumi-nodejs:dynamic/dataverse:RolePrivileges", "lead-management-role-privileges"],
            ["pulumi-nodejs:dynamic/dataverse:Solution", "lead-management-solution"],
        ]);
        expect(byName("lead-management").type).toBe("leadmanagement:index:LeadManagement");
    });

    it("orders the Dataverse steps: user after the service principal, role and privileges after the solution", () => {
        expect(dependsOn("lead-management-app-user")).toEqual(
            expect.arrayContaining(["lead-management-aad-sp", "lead-management-aad-app"]),
        );
        expect(dependsOn("lead-management-role-assignment")).toEqual(
            expect.arrayContaining(["lead-management-app-user", "lead-management-solution"]),
        );
        expect(dependsOn("lead-management-role-privileges")).toEqual(["lead-management-solution"]);
    });

    it("passes the Dataverse providers only non-sensitive inputs", () => {
        expect(byName("lead-management-app-user").inputs).toMatchObject({
            instanceUrl: "https://contoso.crm.dynamics.com",
            applicationId: "11111111-2222-4333-8444-555555555555",
            businessUnitId: "",
        });
        expect(byName("lead-management-role-privileges").inputs.privileges).toEqual([...GUIDE_ROLE_PRIVILEGES]);
        const { version } = JSON.parse(fs.readFileSync(path.join(__dirname, "..", "package.json"), "utf8")) as { version: string };
        for (const r of report.registrations.filter((x) => x.type.startsWith("pulumi-nodejs:dynamic"))) {
            expect([r.name, r.inputs.providerVersion]).toEqual([r.name, version]);
            expect([r.name, JSON.stringify(r.inputs)]).not.toEqual([r.name, expect.stringContaining(MOCK_SECRET_VALUE)]);
        }
    });

    it("is what the README's walkthrough shows (npm run docs:preview regenerates it)", () => {
        const preview = renderPreview(report, "dev");
        expect(preview).toContain(" +   pulumi:pulumi:Stack");
        expect(preview).toMatch(/clientSecret +: \[secret\]/);
        const readme = fs.readFileSync(README, "utf8");
        expect(withPreview(readme, preview)).toBe(readme);
    });

    it("stops before declaring anything when the config is invalid, naming the key", async () => {
        await expect(loadProgram({ instanceUrl: "https://contoso.crm.dynamics.com", contactEmails: "not-an-address" })).rejects.toThrow(
            /lead-management:contactEmails: has invalid address\(es\) "not-an-address"/,
        );
        await new Promise((r) => setTimeout(r, 100));
        expect(mocks.resources.size).toBe(0);
    });
});

/** The report with every secret wrapper replaced by a marker: what is left is what the engine would store in plaintext. */
function plaintextOf(value: unknown): unknown {
    if (Array.isArray(value)) return value.map(plaintextOf);
    if (value && typeof value === "object") {
        if (SECRET_SIG in value) return "[secret]";
        return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plaintextOf(v)]));
    }
    return value;
}
const SECRET_SIG = "4dabf18193072939515e22adb298388d";

describe("the program with secret config and the privilege override", () => {
    const sas = "sv=2024-11-04&sig=bm90LWEtcmVhbC1zYXMtc2lnbmF0dXJl";
    const source = `https://contoso.blob.core.windows.net/solutions/lead-writer.zip?${sas}`;
    let report: MockProgramReport & { console: string };
    const byName = (name: string): Registration => report.registrations.find((r) => r.name === name)!;

    beforeAll(async () => {
        report = await runMockProgram(
            {
                ...stackConfig("dev"),
                solutionSource: source,
                leadWriterRoleName: "Lead Writer (contoso)",
                allowElevatedPrivileges: "true",
                rolePrivileges: JSON.stringify([...GUIDE_ROLE_PRIVILEGES, { name: "prvReadLead", depth: "Global" }]),
            },
            false,
            ["solutionSource", "leadWriterRoleName"],
        );
        expect(report.error).toBeUndefined();
    }, 60_000);

    it("passes a secret solutionSource to the Solution resource as a secret", () => {
        expect(byName("lead-management-solution").inputs.source).toEqual({ [SECRET_SIG]: expect.any(String), value: source });
        for (const name of ["lead-management-role-assignment", "lead-management-role-privileges"]) {
            expect([name, byName(name).inputs.roleName]).toEqual([
                name,
                { [SECRET_SIG]: expect.any(String), value: "Lead Writer (contoso)" },
            ]);
        }
        expect(byName("lead-management-app-user").inputs.instanceUrl).toBe("https://contoso.crm.dynamics.com");
    });

    it("keeps the secret values out of every plaintext input and output of the run", () => {
        const plaintext = JSON.stringify(plaintextOf({ registrations: report.registrations, outputs: report.outputs }));
        expect(plaintext).toContain("[secret]");
        expect(plaintext).not.toContain(sas);
        expect(plaintext).not.toContain("Lead Writer (contoso)");
        expect(report.console).not.toContain(sas);
    });

    it("warns at every run, and says in an output what the override let through", () => {
        expect(report.console).toMatch(
            /warning: .*allowElevatedPrivileges is true: .*lead-management:rolePrivileges grants prvReadLead at Global \(not one of the guide's six\)/,
        );
        expect(report.outputs.elevatedPrivileges).toEqual({
            value: "lead-management:rolePrivileges grants prvReadLead at Global (not one of the guide's six)",
            secret: false,
        });
        expect(byName("lead-management-role-privileges").inputs.privileges).toContainEqual({ name: "prvReadLead", depth: "Global" });
    });
});

describe("the stack output warnings", () => {
    it("gathers what each Dataverse resource reports, in dependency order, into one list", async () => {
        const dynamic = (type: string) => `pulumi-nodejs:dynamic/dataverse:${type}`;
        const report = await runMockProgram(PLAIN_STACK_CONFIG, false, [], {
            [dynamic("Solution")]: { warnings: ["solution adopted"] },
            [dynamic("ApplicationUser")]: { warnings: ["user was disabled"] },
            [dynamic("RoleAssignment")]: { warnings: [] },
            [dynamic("RolePrivileges")]: { warnings: ["grant beyond the guide", "deeper grant left alone"] },
        });
        expect(report.error).toBeUndefined();
        expect(report.outputs.warnings).toEqual({
            value: ["solution adopted", "user was disabled", "grant beyond the guide", "deeper grant left alone"],
            secret: false,
        });
    }, 60_000);
});

describe("the mock program server", () => {
    it("gets the providers' code from a fresh evaluation under another config unchanged: they capture no config", async () => {
        // The server reuses the components (and Pulumi's serialized providers) across specs; this spec evaluates every
        // project module afresh under a different config, as a new `pulumi up` process would.
        const [shared, fresh] = await Promise.all([
            runMockProgram(PLAIN_STACK_CONFIG),
            runMockProgram(
                { ...stackConfig("dev"), leadWriterRoleName: "Lead Writer (contoso)", validateOnUp: "true" },
                false,
                [],
                {},
                { freshModules: true },
            ),
        ]);
        expect(fresh.error).toBeUndefined();
        const freshProviders = providersOf(fresh);
        expect(freshProviders.size).toBe(5);
        for (const [type, code] of providersOf(shared)) {
            expect({ type, same: freshProviders.get(type) === code }).toEqual({ type, same: true });
        }
    }, 60_000);
});

describe("the program with bad config", () => {
    it("names every bad key and declares nothing, so no provider and no request can run", async () => {
        const report = await runMockProgram({
            ...stackConfig("dev"),
            contactEmails: "leads@contoso.com;LEADS@contoso.com",
            redirectUri: "https://localhost/auth#state",
            leadWriterRoleName: "System Administrator",
            rolePrivileges: '[{"name":"prvReadAsyncOperation","depth":"Global","access":"all"}]',
            solutionSource: "./vendor/not-there.zip",
        });
        expect(report.error).toMatch(/^Invalid stack configuration:/);
        for (const key of ["contactEmails", "redirectUri", "leadWriterRoleName", "rolePrivileges", "solutionSource"]) {
            expect(report.error).toMatch(new RegExp(`^  - lead-management:${key}: `, "m"));
        }
        expect(report.registrations).toEqual([]);
    }, 60_000);
});

describe("Pulumi.yaml", () => {
    const yaml = fs.readFileSync(path.join(__dirname, "..", "Pulumi.yaml"), "utf8");
    const declared = [...yaml.split(/^config:\n/m)[1].matchAll(/^ {2}(\w+):\n((?: {4}.*\n?)*)/gm)].map((m) => ({ key: m[1], body: m[2] }));

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
