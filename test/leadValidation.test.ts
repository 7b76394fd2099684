/**
 * `validateOnUp`: the LeadValidation resource as the engine runs it. Its `__provider` comes from a mock run of
 * index.ts with `validateOnUp: true`; a separate host process (started with NODE_EXTRA_CA_CERTS and
 * AZURE_AUTHORITY_HOST, as a real provider process would be) drives it after the other Dataverse resources, and the
 * app signs in through the real @azure/identity flow against the emulated identity platform.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { Emulator, LEAD_WRITER_SOLUTION_UNIQUE_NAME, LEAD_WRITER_ROLE_NAME, startEmulator } from "./emulator/server";
import { IdentityPlatform, startIdentityPlatform } from "./emulator/identityPlatform";
import { trustedTestCertificate } from "./support/testRun";
import { buildSolutionZip } from "./support/solutionZip";
import { EngineSimulator, ProviderHost, providersOf, ResourceState, PLAIN_STACK_CONFIG, runMockProgram } from "./support/providerHost";
import type { MockProgramReport, Registration } from "./support/mockProgram";
import { MOCK_ROLE_ID, MOCK_TENANT_ID } from "./support/mockValues";
import { GUIDE_ROLE_PRIVILEGES } from "../components/guide";
import { classifyDataverseFailure, classifySignInFailure, LeadCheckTarget } from "../components/validation/leadCheck";
import { DataverseError } from "../components/dataverse/client";
import { APP_ID, INSTANCE, PROVIDER_VERSION } from "./support/providerInputs";

const TENANT = MOCK_TENANT_ID;
const SECRET = "Lv8~emulated.secret-for-validate-on-up_0123";
const NEXT_SECRET = "Qm3~emulated.secret-next-generation_456789";
const SECRET_SIG = "4dabf18193072939515e22adb298388d";
const LEAD_VALIDATION = "pulumi-nodejs:dynamic/dataverse:LeadValidation";

let dataverse: Emulator;
let identity: IdentityPlatform;
let host: ProviderHost;
let report: MockProgramReport;
let providers: Map<string, string>;
let zip: string;

function engineFor(type: string): EngineSimulator {
    const provider = providers.get(`pulumi-nodejs:dynamic/dataverse:${type}`);
    if (!provider) throw new Error(`no serialized provider for ${type}`);
    return new EngineSimulator(host, provider);
}

/** The other Dataverse resources, through their own providers: what LeadValidation runs after. */
async function deploy(): Promise<{ systemUserId: string; roleId: string; solutionVersion: string }> {
    const solution = await engineFor("Solution").up({
        ...PROVIDER_VERSION,
        instanceUrl: INSTANCE,
        source: zip,
        importTimeoutMinutes: 1,
        retainOnDelete: false,
    });
    const user = await engineFor("ApplicationUser").up({
        ...PROVIDER_VERSION,
        instanceUrl: INSTANCE,
        applicationId: APP_ID,
        businessUnitId: "",
    });
    const systemUserId = String(user.state.outputs.systemUserId);
    const link = await engineFor("RoleAssignment").up({
        ...PROVIDER_VERSION,
        instanceUrl: INSTANCE,
        systemUserId,
        roleName: LEAD_WRITER_ROLE_NAME,
    });
    const solutionVersion = String(solution.state.outputs.installedVersion);
    await engineFor("RolePrivileges").up({
        ...PROVIDER_VERSION,
        instanceUrl: INSTANCE,
        roleName: LEAD_WRITER_ROLE_NAME,
        privileges: [...GUIDE_ROLE_PRIVILEGES],
        solutionVersion,
    });
    return { systemUserId, roleId: String(link.state.outputs.roleId), solutionVersion };
}

/** LeadValidation's inputs as the program passes them (the secret arrives as a plain value: no secrets in the host). */
function validationInputs(deployed: { roleId: string; solutionVersion: string }, overrides: Record<string, unknown> = {}) {
    return {
        ...PROVIDER_VERSION,
        instanceUrl: INSTANCE,
        tenantId: TENANT,
        applicationId: APP_ID,
        clientSecret: SECRET,
        clientSecretEndDate: "2027-05-01T00:00:00.000Z",
        roleId: deployed.roleId,
        privileges: [...GUIDE_ROLE_PRIVILEGES],
        solutionVersion: deployed.solutionVersion,
        ...overrides,
    };
}

/** Test leads the app posted since a mark in the request log, with who posted them. */
function leadPostsSince(mark: number): string[] {
    return dataverse.requests
        .slice(mark)
        .filter((r) => r.method === "POST" && r.path.startsWith("/api/data/v9.2/leads"))
        .map((r) => `${r.status} ${r.principal}`);
}

function expectNoSecret(...texts: unknown[]): void {
    for (const text of texts) {
        const serialized = typeof text === "string" ? text : JSON.stringify(text);
        expect(serialized).not.toContain(SECRET);
        expect(serialized).not.toContain(NEXT_SECRET);
    }
}

let scratch: string | undefined;

beforeAll(async () => {
    const dir = (scratch = fs.mkdtempSync(path.join(os.tmpdir(), "lead-validation-")));
    zip = path.join(dir, "lead-writer.zip");
    fs.writeFileSync(zip, buildSolutionZip({ uniqueName: LEAD_WRITER_SOLUTION_UNIQUE_NAME, version: "1.0.0.0", managed: true }));
    report = await runMockProgram({ ...PLAIN_STACK_CONFIG, validateOnUp: "true" });
    expect(report.error).toBeUndefined();
    providers = providersOf(report);
    dataverse = await startEmulator();
    identity = await startIdentityPlatform({
        certificate: trustedTestCertificate(),
        onTokenIssued: (token, claims) => dataverse.acceptToken(token, claims),
    });
    host = await ProviderHost.start({
        DATAVERSE_ENDPOINT: dataverse.origin,
        DATAVERSE_TOKEN: "deploying-identity-token",
        AZURE_AUTHORITY_HOST: identity.authorityHost,
        NODE_EXTRA_CA_CERTS: identity.caCertPath,
    });
}, 120_000);

afterAll(async () => {
    await host?.stop();
    await identity?.close();
    await dataverse?.close();
    if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
});

beforeEach(() => {
    dataverse.reset();
    dataverse.registerApplication(APP_ID);
    identity.reset();
    identity.requests.length = 0;
    identity.registerApp({ tenantId: TENANT, applicationId: APP_ID, secret: SECRET });
    host.output = "";
});

describe("the program with validateOnUp", () => {
    const registration = (type: string): Registration => {
        const found = report.registrations.find((r) => r.type === type);
        if (!found) throw new Error(`${type} was not declared`);
        return found;
    };

    it("declares LeadValidation after the role assignment and the privileges, its secret input wrapped as a secret", () => {
        const validation = registration(LEAD_VALIDATION);
        const urnOf = (type: string) => registration(`pulumi-nodejs:dynamic/dataverse:${type}`).urn;
        expect(validation.dependencies).toEqual(expect.arrayContaining([urnOf("RoleAssignment"), urnOf("RolePrivileges")]));
        expect(validation.propertyDependencies.roleId).toEqual([urnOf("RoleAssignment")]);
        expect(validation.propertyDependencies.solutionVersion).toEqual([urnOf("Solution")]);
        expect(validation.inputs.clientSecret).toMatchObject({ [SECRET_SIG]: "1b47061264138c4ac30d75fd1eb44270" });
        expect(validation.additionalSecretOutputs).toContain("clientSecret");
        // Every other input is plain: the engine compares them to decide whether to validate again.
        expect(validation.inputs).toMatchObject({
            instanceUrl: INSTANCE,
            tenantId: TENANT,
            applicationId: expect.any(String),
            clientSecretEndDate: expect.stringMatching(/^\d{4}-/),
            roleId: MOCK_ROLE_ID,
            solutionVersion: "1.0.0.0",
            privileges: GUIDE_ROLE_PRIVILEGES.map((p) => ({ ...p })),
        });
        expect(validation.parent).toMatch(/::lead-management$/);
    });

    it("declares no LeadValidation by default", async () => {
        const plain = await runMockProgram(PLAIN_STACK_CONFIG);
        expect(plain.error).toBeUndefined();
        expect(plain.registrations.map((r) => r.type)).not.toContain(LEAD_VALIDATION);
        expect(Object.keys(plain.outputs)).not.toContain("validatedAt");
    }, 60_000);
});

describe("LeadValidation", () => {
    it("writes a test lead as the app's application user and deletes it as the deployer; a re-run writes none", async () => {
        const deployed = await deploy();
        const engine = new EngineSimulator(host, providers.get(LEAD_VALIDATION)!);
        const mark = dataverse.requests.length;
        const { op, state } = await engine.up(validationInputs(deployed));
        expect(op).toBe("create");
        expect(state.outputs).toMatchObject({ applicationId: APP_ID, testName: expect.stringMatching(/^MSFT_TEST_\d{18}$/) });
        expect(state.outputs).not.toHaveProperty("clientSecret");
        expect(leadPostsSince(mark)).toEqual([`204 ${deployed.systemUserId}`]);
        const admin = dataverse.state.systemUsers[0].systemuserid;
        expect(dataverse.requests.filter((r) => r.method === "DELETE").map((r) => r.principal)).toEqual([admin]);
        expect(dataverse.state.leads).toEqual([]);
        // The real client-credentials grant ran.
        expect(identity.requests.filter((r) => r.path.endsWith("/token")).map((r) => r.status)).toEqual([200]);

        const again = await engine.up(validationInputs(deployed), await engine.refresh(state));
        expect(again.op).toBe("same");
        expect(leadPostsSince(mark)).toHaveLength(1);
        expectNoSecret(state.outputs, host.output);
    }, 60_000);

    it("runs again when the secret generation, the role, the privileges or the solution version change", async () => {
        const deployed = await deploy();
        const engine = new EngineSimulator(host, providers.get(LEAD_VALIDATION)!);
        let { state } = await engine.up(validationInputs(deployed));
        identity.registerApp({ tenantId: TENANT, applicationId: APP_ID, secret: NEXT_SECRET });
        const changes: Record<string, unknown>[] = [
            { clientSecret: NEXT_SECRET, clientSecretEndDate: "2027-11-01T00:00:00.000Z" },
            { roleId: deployed.roleId.replace(/.$/, (c) => (c === "0" ? "1" : "0")) },
            { privileges: [...GUIDE_ROLE_PRIVILEGES, { name: "prvReadLead", depth: "Basic" }] },
            { solutionVersion: "1.0.0.1" },
        ];
        let inputs = validationInputs(deployed, { clientSecret: NEXT_SECRET });
        for (const change of changes) {
            inputs = { ...inputs, ...change };
            const mark = dataverse.requests.length;
            const result = await engine.up(inputs, state);
            expect([Object.keys(change)[0], result.op]).toEqual([Object.keys(change)[0], "update"]);
            expect(leadPostsSince(mark)).toEqual([`204 ${deployed.systemUserId}`]);
            state = result.state;
        }
        // A new project version stores the new provider code without writing another lead.
        const mark = dataverse.requests.length;
        const upgraded = await engine.up({ ...inputs, providerVersion: "1.0.1" }, state);
        expect(upgraded.op).toBe("update");
        expect(upgraded.state.outputs.providerVersion).toBe("1.0.1");
        expect(leadPostsSince(mark)).toEqual([]);
        expectNoSecret(upgraded.state.outputs, host.output);
    }, 90_000);

    it("fails the update with the same message as npm run validate when the secret is rejected", async () => {
        const deployed = await deploy();
        const engine = new EngineSimulator(host, providers.get(LEAD_VALIDATION)!);
        const target: LeadCheckTarget = { instanceUrl: INSTANCE, tenantId: TENANT, applicationId: APP_ID, clientSecret: "x" };
        const expected = classifySignInFailure(new Error("AADSTS7000215: Invalid client secret provided."), target).message;
        const failure = await engine.up(validationInputs(deployed, { clientSecret: "an-older-secret" })).catch((err: Error) => err);
        expect(failure).toBeInstanceOf(Error);
        expect((failure as Error).message).toBe(expected);
        expect(dataverse.state.leads).toEqual([]);
    }, 60_000);

    it("fails when the application user lost its role, naming 0x80042f09 and the fix", async () => {
        const deployed = await deploy();
        dataverse.state.userRoles = dataverse.state.userRoles.filter((l) => l.systemuserid !== deployed.systemUserId);
        const engine = new EngineSimulator(host, providers.get(LEAD_VALIDATION)!);
        const target: LeadCheckTarget = { instanceUrl: INSTANCE, tenantId: TENANT, applicationId: APP_ID, clientSecret: "x" };
        const expected = classifyDataverseFailure(
            new DataverseError("no roles", 403, "0x80042f09", "GET", "WhoAmI"),
            target,
            "call WhoAmI",
        ).message;
        const failure = await engine.up(validationInputs(deployed)).catch((err: Error) => err);
        expect((failure as Error).message).toBe(expected);
        expect((failure as Error).message).toMatch(/has no security role .*\(0x80042f09\)\. Run 'pulumi up'/);
        expectNoSecret((failure as Error).message, host.output);
    }, 60_000);

    it("rejects an empty secret in check without echoing values, before any sign-in", async () => {
        const engine = new EngineSimulator(host, providers.get(LEAD_VALIDATION)!);
        const failure = await engine
            .up(validationInputs({ roleId: "0d3c5a2e-1b4f-4e6a-9c8d-7f6e5d4c3b2a", solutionVersion: "1.0.0.0" }, { clientSecret: " " }))
            .catch((err: Error) => err);
        expect((failure as Error).message).toBe("check failed: clientSecret: must not be empty");
        expect(identity.requests).toEqual([]);
    });

    it("keeps refresh and destroy free of Dataverse writes: the test lead is already gone", async () => {
        const deployed = await deploy();
        const engine = new EngineSimulator(host, providers.get(LEAD_VALIDATION)!);
        const { state } = await engine.up(validationInputs(deployed));
        const mark = dataverse.requests.length;
        const refreshed = (await engine.refresh(state)) as ResourceState;
        expect(refreshed.id).toBe(state.id);
        await engine.destroy(refreshed);
        expect(dataverse.requests.slice(mark)).toEqual([]);
    }, 60_000);
});
