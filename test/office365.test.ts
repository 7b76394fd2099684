/**
 * The Office 365 sign-in path (authMethod office365): the resource graph under mocks, the Microsoft Graph client on
 * the shared request core, and the licence and synchronised-user providers as the engine runs them (serialized
 * `__provider` strings in a separate host process) against the emulator's Graph and Dataverse.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { inspect } from "util";
import { DYNAMICS_SALES_SKU_ID, Emulator, LEAD_WRITER_SOLUTION_UNIQUE_NAME, ROOT_BUSINESS_UNIT_ID, startEmulator } from "./emulator/server";
import { directoryUser } from "./emulator/graph";
import type { DirectoryUserRow } from "./emulator/graphState";
import { buildSolutionZip } from "./support/solutionZip";
import { EngineSimulator, ProviderHost, providersOf, ResourceState, runMockProgram, stopProviderTest } from "./support/providerHost";
import { registrationsOf } from "./support/registrations";
import type { MockProgramReport } from "./support/mockProgram";
import { MOCK_PASSWORD, MOCK_SKU_ID, MOCK_USER_OBJECT_ID, UNKNOWN_OUTPUT } from "./support/mockValues";
import { GUIDE_ROLE_PRIVILEGES } from "../components/guide";
import { GraphClient, GraphError, graphClientFromEnvironment } from "../components/graph/client";
import { checkEndpointOverride } from "../components/http/endpoint";
import { staticTokenCredential } from "../components/http/requestCore";
import { INSTANCE, PROPAGATION, PROVIDER_VERSION, grantInputs, linkInputs, solutionInputs } from "./support/providerInputs";

const UPN = "lead-writer@contoso.com";
const OFFICE365_CONFIG = {
    instanceUrl: INSTANCE,
    contactEmails: "leads@contoso.com",
    authMethod: "office365",
    serviceAccountUserPrincipalName: UPN,
    serviceAccountUsageLocation: "US",
};
const DAY_MS = 24 * 60 * 60 * 1000;

describe("authMethod office365 under mocks", () => {
    let report: MockProgramReport;
    const { byName, dependsOn } = registrationsOf(() => report);

    beforeAll(async () => {
        report = await runMockProgram(OFFICE365_CONFIG, true);
        expect(report.error).toBeUndefined();
    }, 60_000);

    it("declares the user, password, licence, synchronised user, role assignment and privileges, and no app registration", () => {
        const declared = report.registrations.map((r) => [r.type, r.name]).sort();
        expect(declared).toEqual(
            [
                ["leadmanagement:index:LeadManagement", "lead-management"],
                ["leadmanagement:identity:Office365ServiceAccount", "lead-management-o365"],
                ["random:index/randomPassword:RandomPassword", "lead-management-o365-password"],
                ["azuread:index/user:User", "lead-management-o365-user"],
                ["pulumi-nodejs:dynamic/graph:UserLicense", "lead-management-o365-license"],
                ["pulumi-nodejs:dynamic/dataverse:SyncedUser", "lead-management-synced-user"],
                ["pulumi-nodejs:dynamic/dataverse:RoleAssignment", "lead-management-role-assignment"],
                ["pulumi-nodejs:dynamic/dataverse:RolePrivileges", "lead-management-role-privileges"],
                ["pulumi-nodejs:dynamic/dataverse:Solution", "lead-management-solution"],
            ].sort(),
        );
        expect(report.registrations.filter((r) => r.type.startsWith("azuread:index/application"))).toEqual([]);
        expect(byName("lead-management-role-privileges").inputs.privileges).toEqual([...GUIDE_ROLE_PRIVILEGES]);
    });

    it("exports Partner Center's Office 365 connection details, the password as a secret, and nothing of the Azure AD path", () => {
        expect(report.outputs).toEqual({
            leadDestination: { value: "Dynamics 365 Customer Engagement", secret: false },
            instanceUrl: { value: INSTANCE, secret: false },
            authenticationMethod: { value: "Office 365", secret: false },
            userName: { value: UPN, secret: false },
            password: { value: MOCK_PASSWORD, secret: true },
            passwordRenewalDate: { value: expect.stringMatching(/^\d{4}-\d\d-\d\dT00:00:00\.000Z$/), secret: false },
            contactEmails: { value: "leads@contoso.com", secret: false },
            warnings: { value: UNKNOWN_OUTPUT, secret: false },
        });
    });

    it("renews the password at the start of each 90-day period, and says when", () => {
        const period = Math.floor(Date.now() / (90 * DAY_MS));
        expect(byName("lead-management-o365-password").inputs.keepers).toEqual({ period: String(period) });
        expect(byName("lead-management-o365-password").additionalSecretOutputs).toEqual(expect.arrayContaining(["result"]));
        expect(report.outputs.passwordRenewalDate.value).toBe(new Date((period + 1) * 90 * DAY_MS).toISOString());
    });

    it("creates the user for non-interactive sign-in with the configured usage location", () => {
        const user = byName("lead-management-o365-user");
        expect(user.inputs).toMatchObject({
            userPrincipalName: UPN,
            usageLocation: "US",
            forcePasswordChange: false,
            disablePasswordExpiration: true,
            accountEnabled: true,
        });
        expect(user.additionalSecretOutputs).toEqual(expect.arrayContaining(["password"]));
        expect(dependsOn("lead-management-o365-user")).toEqual(["lead-management-o365-password"]);
    });

    it("orders licence → synchronised user → role, and gives providers no secret", () => {
        expect(byName("lead-management-o365-license").inputs).toMatchObject({
            userId: MOCK_USER_OBJECT_ID,
            userPrincipalName: UPN,
            skuPartNumber: "DYN365_ENTERPRISE_SALES",
        });
        expect(byName("lead-management-synced-user").inputs).toMatchObject({
            instanceUrl: INSTANCE,
            objectId: MOCK_USER_OBJECT_ID,
            licenseSkuId: MOCK_SKU_ID,
        });
        expect(dependsOn("lead-management-synced-user")).toEqual(
            expect.arrayContaining(["lead-management-o365-license", "lead-management-o365-user"]),
        );
        expect(dependsOn("lead-management-role-assignment")).toEqual(
            expect.arrayContaining(["lead-management-synced-user", "lead-management-solution"]),
        );
        for (const r of report.registrations.filter((x) => x.type.startsWith("pulumi-nodejs:dynamic"))) {
            expect([r.name, JSON.stringify(r.inputs)]).not.toEqual([r.name, expect.stringContaining(MOCK_PASSWORD)]);
        }
    });
});

describe("the Graph client and GRAPH_ENDPOINT", () => {
    let emulator: Emulator;
    const TOKEN = "graph-bearer-5e1f";
    beforeEach(async () => {
        emulator = await startEmulator();
    });
    afterEach(async () => {
        await emulator.close();
        delete process.env.GRAPH_ENDPOINT;
        delete process.env.GRAPH_TOKEN;
    });

    it("sends requests under /v1.0/ of GRAPH_ENDPOINT with GRAPH_TOKEN", async () => {
        process.env.GRAPH_ENDPOINT = emulator.origin;
        process.env.GRAPH_TOKEN = TOKEN;
        const warn = jest.spyOn(console, "warn").mockImplementation(() => undefined);
        const graph = graphClientFromEnvironment();
        graphClientFromEnvironment();
        expect(warn.mock.calls.map((c) => String(c[0]))).toEqual([
            expect.stringContaining(
                `GRAPH_ENDPOINT is set: requests meant for https://graph.microsoft.com, with their bearer tokens, go to ${emulator.origin} instead.`,
            ),
        ]);
        warn.mockRestore();
        expect(graph.baseUrl).toBe(`${emulator.origin}/v1.0/`);
        const skus = await graph.list<{ skuPartNumber: string }>("subscribedSkus");
        expect(skus.map((s) => s.skuPartNumber).sort()).toEqual(["DYN365_ENTERPRISE_SALES", "ENTERPRISEPACK"]);
    });

    it("refuses an endpoint that would send the token in the clear, naming the variable", () => {
        process.env.GRAPH_ENDPOINT = "http://graph.example.com";
        expect(() => graphClientFromEnvironment()).toThrow(
            /^GRAPH_ENDPOINT "http:\/\/graph\.example\.com" uses http to a host that is not loopback/,
        );
        expect(checkEndpointOverride("GRAPH_ENDPOINT", "https://graph.example.com")).toBe("https://graph.example.com");
        expect(checkEndpointOverride("GRAPH_ENDPOINT", "http://[::1]:8080")).toBe("http://[::1]:8080");
        expect(() => checkEndpointOverride("GRAPH_ENDPOINT", "https://graph.example.com/v1.0")).toThrow(/has a path, query or fragment/);
    });

    it("answers with a typed GraphError carrying Graph's code and no token", async () => {
        const graph = new GraphClient({ endpoint: emulator.origin, credential: staticTokenCredential(TOKEN) });
        const failure = await graph.get("users/0badc0de-0000-4000-8000-000000000001").catch((e: unknown) => e);
        expect(failure).toBeInstanceOf(GraphError);
        expect(failure).toMatchObject({ status: 404, code: "Request_ResourceNotFound", method: "GET" });
        expect((failure as GraphError).message).toMatch(
            /^Microsoft Graph GET users\/0badc0de-.* failed: 404 Request_ResourceNotFound Resource/,
        );
        expect((failure as GraphError).hasCode("request_resourcenotfound")).toBe(true);
        expect(inspect(failure)).not.toContain(TOKEN);
    });

    it("plays assignLicense's refusals: unknown SKU, no usage location, no free seat", async () => {
        const user = directoryUser(UPN);
        emulator.state.graph.users.push(user);
        const assign = async (skuId: string) => {
            const response = await fetch(`${emulator.origin}/v1.0/users/${user.id}/assignLicense`, {
                method: "POST",
                headers: { Authorization: `Bearer ${TOKEN}`, "Content-Type": "application/json" },
                body: JSON.stringify({ addLicenses: [{ skuId, disabledPlans: [] }], removeLicenses: [] }),
            });
            return { status: response.status, body: (await response.json()) as { error?: { code: string; message: string } } };
        };
        expect(await assign("0badc0de-0000-4000-8000-000000000001")).toEqual({
            status: 400,
            body: {
                error: { code: "Request_BadRequest", message: expect.stringMatching(/does not correspond to a valid company License/) },
            },
        });
        user.usageLocation = null;
        expect((await assign(DYNAMICS_SALES_SKU_ID)).body.error?.message).toBe(
            "License assignment cannot be done for user with invalid usage location.",
        );
        user.usageLocation = "US";
        emulator.state.graph.skus[0].enabled = 0;
        expect((await assign(DYNAMICS_SALES_SKU_ID)).body.error?.message).toMatch(/does not have any available licenses/);
        expect(user.assignedLicenses).toEqual([]);
        expect(emulator.state.systemUsers.filter((u) => u.azureactivedirectoryobjectid === user.id)).toEqual([]);
    });

    it("waits out a 429 with Retry-After, as the Dataverse client does", async () => {
        emulator.injectFault({ method: "GET", path: /subscribedSkus/ }, 1, { kind: "status", status: 429, retryAfter: "1" });
        const waits: number[] = [];
        const graph = new GraphClient({
            endpoint: emulator.origin,
            credential: staticTokenCredential(TOKEN),
            onRetry: (info) => waits.push(info.delayMs),
        });
        expect(await graph.list("subscribedSkus")).toHaveLength(2);
        expect(waits).toEqual([1000]);
    });
});

describe("the Office 365 providers against the emulator", () => {
    let emulator: Emulator;
    let host: ProviderHost;
    let providers: Map<string, string>;
    let zip: string;
    let account: DirectoryUserRow;

    const engineFor = (type: string) => {
        const provider = providers.get(`pulumi-nodejs:dynamic/${type}`);
        if (!provider) throw new Error(`no serialized provider for ${type}`);
        return new EngineSimulator(host, provider);
    };
    const licenseInputs = (skuPartNumber = "DYN365_ENTERPRISE_SALES") => ({
        ...PROVIDER_VERSION,
        userId: account.id,
        userPrincipalName: UPN,
        skuPartNumber,
    });
    const syncInputs = () => ({
        ...PROVIDER_VERSION,
        instanceUrl: INSTANCE,
        objectId: account.id,
        userPrincipalName: UPN,
        licenseSkuId: DYNAMICS_SALES_SKU_ID,
    });
    /** Requests that changed something (Graph and Dataverse), since a mark in the request log. */
    const writesSince = (mark: number) =>
        emulator.requests
            .slice(mark)
            .filter((r) => r.method !== "GET")
            .map((r) => `${r.method} ${r.path.split("?")[0].replace("/api/data/v9.2/", "")}`);
    const systemUserOf = (objectId: string) => emulator.state.systemUsers.find((u) => u.azureactivedirectoryobjectid === objectId);
    const roleLinks = (systemUserId: string) => emulator.state.userRoles.filter((l) => l.systemuserid === systemUserId);
    let scratch: string | undefined;
    /** What an administrator does in the Microsoft 365 admin center: a Graph call the providers did not make. */
    const adminAssignLicense = (body: unknown) =>
        fetch(`${emulator.origin}/v1.0/users/${account.id}/assignLicense`, {
            method: "POST",
            headers: { Authorization: "Bearer admin", "Content-Type": "application/json" },
            body: JSON.stringify(body),
        });

    beforeAll(async () => {
        const dir = (scratch = fs.mkdtempSync(path.join(os.tmpdir(), "o365-solution-")));
        zip = path.join(dir, "lead-writer.zip");
        fs.writeFileSync(zip, buildSolutionZip({ uniqueName: LEAD_WRITER_SOLUTION_UNIQUE_NAME, version: "1.0.0.0", managed: true }));
        // The preview's run above: providers are serialized alike in a preview and an update.
        const report = await runMockProgram(OFFICE365_CONFIG, true);
        expect(report.error).toBeUndefined();
        providers = providersOf(report);
        emulator = await startEmulator();
        host = await ProviderHost.start({
            DATAVERSE_ENDPOINT: emulator.origin,
            DATAVERSE_TOKEN: "dataverse-token",
            GRAPH_ENDPOINT: emulator.origin,
            GRAPH_TOKEN: "graph-token",
            ...PROPAGATION,
        });
    }, 120_000);

    afterAll(() => stopProviderTest({ host, emulator, scratch }));

    beforeEach(() => {
        emulator.reset();
        // The directory user azuread.User creates (the azuread provider is not part of these tests).
        account = directoryUser(UPN);
        emulator.state.graph.users.push(account);
    });

    it("serializes the licence and synchronised-user providers, with no token inside", () => {
        for (const type of ["graph:UserLicense", "dataverse:SyncedUser"]) {
            const provider = providers.get(`pulumi-nodejs:dynamic/${type}`)!;
            expect(provider).toContain('require("axios/dist/node/axios.cjs")');
            expect(provider).not.toMatch(/graph-token|dataverse-token/);
        }
    });

    it("goes up, re-runs without a write, repairs a removed licence and role, and destroys", async () => {
        const solution = (await engineFor("dataverse:Solution").up(solutionInputs(zip))).state;
        const license = await engineFor("graph:UserLicense").up(licenseInputs());
        expect(license.state.outputs).toMatchObject({ skuId: DYNAMICS_SALES_SKU_ID, assigned: true });
        expect(account.assignedLicenses.map((l) => l.skuId)).toEqual([DYNAMICS_SALES_SKU_ID]);

        const synced = await engineFor("dataverse:SyncedUser").up(syncInputs());
        const systemUser = systemUserOf(account.id)!;
        expect(systemUser).toMatchObject({ applicationid: null, isdisabled: false, businessunitid: ROOT_BUSINESS_UNIT_ID });
        expect(synced.state.id).toBe(systemUser.systemuserid);
        expect(host.output).toMatch(
            /Waiting 10 ms for Dataverse to synchronise lead-writer@contoso\.com: its user is not there yet \(attempt 1 of 12\)/,
        );

        const role = await engineFor("dataverse:RoleAssignment").up(linkInputs(systemUser.systemuserid));
        const grants = await engineFor("dataverse:RolePrivileges").up(grantInputs());
        expect(roleLinks(systemUser.systemuserid)).toHaveLength(1);
        expect(writesSince(0)).toEqual([
            "POST ImportSolutionAsync",
            `POST /v1.0/users/${account.id}/assignLicense`,
            `POST systemusers(${systemUser.systemuserid})/systemuserroles_association/$ref`,
            expect.stringMatching(/^POST roles\(.*\)\/Microsoft\.Dynamics\.CRM\.AddPrivilegesRole$/),
        ]);

        // Re-run: refresh, then up; nothing is written.
        let mark = emulator.requests.length;
        const steps: [string, ResourceState, Record<string, unknown>][] = [
            ["graph:UserLicense", license.state, licenseInputs()],
            ["dataverse:SyncedUser", synced.state, syncInputs()],
            ["dataverse:RoleAssignment", role.state, linkInputs(systemUser.systemuserid)],
            ["dataverse:RolePrivileges", grants.state, grantInputs()],
        ];
        for (const [type, state, inputs] of steps) {
            const engine = engineFor(type);
            expect([type, (await engine.up(inputs, await engine.refresh(state))).op]).toEqual([type, "same"]);
        }
        expect(writesSince(mark)).toEqual([]);

        // Drift: an administrator removes the licence (Dataverse then disables the user) and the role link.
        expect((await adminAssignLicense({ addLicenses: [], removeLicenses: [DYNAMICS_SALES_SKU_ID] })).status).toBe(200);
        emulator.state.userRoles = emulator.state.userRoles.filter((l) => l.systemuserid !== systemUser.systemuserid);
        const licenseNow = (await engineFor("graph:UserLicense").refresh(license.state))!;
        expect(licenseNow.outputs.assigned).toBe(false);
        const syncedNow = (await engineFor("dataverse:SyncedUser").refresh(synced.state))!;
        expect(syncedNow.outputs.isDisabled).toBe(true);
        expect(await engineFor("dataverse:RoleAssignment").refresh(role.state)).toBeUndefined();

        mark = emulator.requests.length;
        expect((await engineFor("graph:UserLicense").up(licenseInputs(), licenseNow)).op).toBe("update");
        const resynced = await engineFor("dataverse:SyncedUser").up(syncInputs(), syncedNow);
        expect(resynced.op).toBe("update");
        expect(resynced.state.outputs).toMatchObject({ systemUserId: systemUser.systemuserid, isDisabled: false });
        const relinked = await engineFor("dataverse:RoleAssignment").up(linkInputs(systemUser.systemuserid));
        expect(relinked.op).toBe("create");
        expect(writesSince(mark)).toEqual([
            `POST /v1.0/users/${account.id}/assignLicense`,
            `POST systemusers(${systemUser.systemuserid})/systemuserroles_association/$ref`,
        ]);

        // Destroy, dependents first: the role link, the licence; Dataverse then disables the user it keeps.
        await engineFor("dataverse:RoleAssignment").destroy(relinked.state);
        await engineFor("dataverse:SyncedUser").destroy(resynced.state);
        await engineFor("graph:UserLicense").destroy(license.state);
        await engineFor("dataverse:RolePrivileges").destroy(grants.state);
        await engineFor("dataverse:Solution").destroy(solution);
        expect(roleLinks(systemUser.systemuserid)).toEqual([]);
        expect(account.assignedLicenses).toEqual([]);
        expect(emulator.state.solutions).toEqual([]);
        expect(systemUserOf(account.id)?.isdisabled).toBe(true);
    }, 60_000);

    it("adopts a licence the user already holds, without a write", async () => {
        account.assignedLicenses.push({ skuId: DYNAMICS_SALES_SKU_ID, disabledPlans: [] });
        const { state } = await engineFor("graph:UserLicense").up(licenseInputs());
        expect(state.outputs.assigned).toBe(true);
        expect(writesSince(0)).toEqual([]);
    });

    it("assigns once when the answer to assignLicense was lost", async () => {
        emulator.injectFault({ method: "POST", path: /assignLicense/ }, 1, { kind: "resetAfter" });
        await engineFor("graph:UserLicense").up(licenseInputs());
        expect(account.assignedLicenses).toEqual([{ skuId: DYNAMICS_SALES_SKU_ID, disabledPlans: [] }]);
    });

    it("names the SKU and what the tenant has when the part number is unknown, before any write", async () => {
        await expect(engineFor("graph:UserLicense").up(licenseInputs("DYN365_TYPO"))).rejects.toThrow(
            'The tenant has no subscription with SKU part number "DYN365_TYPO" (config serviceAccountLicenseSku). Subscribed SKUs: DYN365_ENTERPRISE_SALES, ENTERPRISEPACK.',
        );
        expect(writesSince(0)).toEqual([]);
    });

    it("says no seat is free, with the counts, before any write", async () => {
        emulator.state.graph.skus[0].enabled = 1;
        emulator.state.graph.users.push(
            directoryUser("someone@contoso.com", { assignedLicenses: [{ skuId: DYNAMICS_SALES_SKU_ID, disabledPlans: [] }] }),
        );
        await expect(engineFor("graph:UserLicense").up(licenseInputs())).rejects.toThrow(
            /No free seat of DYN365_ENTERPRISE_SALES for lead-writer@contoso\.com: 1 enabled, 1 assigned\. Buy a licence or free one/,
        );
        expect(writesSince(0)).toEqual([]);
    });

    it("explains a seat taken between its count and the assignment", async () => {
        emulator.state.graph.skus[0].enabled = 1;
        emulator.injectFault({ method: "GET", path: /^\/v1\.0\/users\// }, 1, { kind: "delay", ms: 500 });
        const attempt = engineFor("graph:UserLicense").up(licenseInputs());
        const failure = expect(attempt).rejects.toThrow(
            /No free seat of DYN365_ENTERPRISE_SALES for lead-writer@contoso\.com \(Microsoft Graph POST .*assignLicense failed: 400 Request_BadRequest Subscription .* does not have any available licenses\. \(request id [0-9a-f-]{36}\)\)\. Buy a licence/,
        );
        // Someone else takes the last seat while the provider reads the user.
        while (!emulator.requests.some((r) => r.path.startsWith("/v1.0/users/"))) await new Promise((r) => setTimeout(r, 10));
        emulator.state.graph.users.push(
            directoryUser("someone@contoso.com", { assignedLicenses: [{ skuId: DYNAMICS_SALES_SKU_ID, disabledPlans: [] }] }),
        );
        await failure;
        expect(account.assignedLicenses).toEqual([]);
    });

    it("reports a user without the licence as drift on refresh, and a user without a usage location clearly", async () => {
        const engine = engineFor("graph:UserLicense");
        const { state } = await engine.up(licenseInputs());
        account.assignedLicenses = [];
        const refreshed = (await engine.refresh(state))!;
        expect(refreshed.outputs.assigned).toBe(false);
        expect(await engine.preview(licenseInputs(), refreshed)).toEqual({ op: "update", replaces: [] });

        account.usageLocation = null;
        await expect(engine.up(licenseInputs(), refreshed)).rejects.toThrow(
            /User lead-writer@contoso\.com has no usage location, without which Microsoft 365 assigns no licence; set serviceAccountUsageLocation/,
        );
    });

    it("rejects a user id that is not a GUID in check, naming the field", async () => {
        await expect(engineFor("graph:UserLicense").up({ ...licenseInputs(), userId: "lead-writer" })).rejects.toThrow(
            /check failed: userId: "lead-writer" is not a GUID/,
        );
        expect(emulator.requests).toHaveLength(0);
    });
});
