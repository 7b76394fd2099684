/**
 * The Dataverse dynamic providers, tested as the engine runs them: the `__provider` strings come from a mock run
 * of index.ts in a fresh process, and a separate host process loads and drives them against the emulator.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import {
    Emulator,
    LEAD_WRITER_ROLE_NAME,
    LEAD_WRITER_SOLUTION_UNIQUE_NAME,
    ROOT_BUSINESS_UNIT_ID,
    CHILD_BUSINESS_UNIT_ID,
    startEmulator,
} from "./emulator/server";
import { buildSolutionZip } from "./support/solutionZip";
import {
    EngineSimulator,
    PLAIN_STACK_CONFIG,
    ProviderCallError,
    ProviderHost,
    providersOf,
    ResourceState,
    runMockProgram,
    stopProviderTest,
    UNKNOWN,
} from "./support/providerHost";
import { GUIDE_ROLE_PRIVILEGES, PrivilegeGrant } from "../components/guide";
import { APP_ID, PROPAGATION, grantInputs, linkInputs, solutionInputs, userInputs } from "./support/providerInputs";

const OTHER_APP_ID = "3f2504e0-4f89-41d3-9a0c-0305e82c3302";

let emulator: Emulator;
let host: ProviderHost;
let providers: Map<string, string>;
let zips: Record<"v1" | "v1_1" | "v0_9", string>;
let zipDir: string;

/** Solution inputs once check has read the package. */
const checkedSolution = { ...solutionInputs("s.zip"), uniqueName: "Lead", version: "1.0.0.0", managed: true, sha256: "a" };

function engineFor(type: string): EngineSimulator {
    const provider = providers.get(`pulumi-nodejs:dynamic/dataverse:${type}`);
    if (!provider) throw new Error(`no serialized provider for ${type}`);
    return new EngineSimulator(host, provider);
}

/** Requests that changed something, since a mark in the request log. */
function writesSince(mark: number) {
    return emulator.requests
        .slice(mark)
        .filter((r) => r.method !== "GET")
        .map((r) => `${r.method} ${r.path.split("?")[0].replace("/api/data/v9.2/", "")}`);
}

function liveUsers(applicationId: string) {
    return emulator.state.systemUsers.filter((u) => u.applicationid === applicationId && u.deletedstate === 0);
}

function depthOf(roleId: string, privilegeName: string) {
    const privilege = emulator.state.privileges.find((p) => p.name === privilegeName)!;
    return emulator.state.rolePrivileges[roleId]?.[privilege.privilegeid];
}

function leadWriterRole(businessUnitId = ROOT_BUSINESS_UNIT_ID) {
    return emulator.state.roles.find((r) => r.name === LEAD_WRITER_ROLE_NAME && r.businessunitid === businessUnitId);
}

beforeAll(async () => {
    zipDir = fs.mkdtempSync(path.join(os.tmpdir(), "lead-solution-"));
    const write = (version: string) => {
        const file = path.join(zipDir, `lead-writer-${version}.zip`);
        fs.writeFileSync(file, buildSolutionZip({ uniqueName: LEAD_WRITER_SOLUTION_UNIQUE_NAME, version, managed: true }));
        return file;
    };
    zips = { v1: write("1.0.0.0"), v1_1: write("1.0.0.1"), v0_9: write("0.9.0.0") };
    // The mock run and the host start are independent child processes: start both at once.
    const mockRun = runMockProgram(PLAIN_STACK_CONFIG);
    // An import is done by the first poll: polling itself is pinned in client.test.ts, and a provider test waits for nothing.
    emulator = await startEmulator({ importPolls: 0 });
    // What a user could set too (README "Environment variables"): quick retries, a short first wait for a service principal.
    host = await ProviderHost.start({
        DATAVERSE_ENDPOINT: emulator.origin,
        DATAVERSE_TOKEN: "test-token",
        DATAVERSE_RETRY_DELAY_MS: "1",
        ...PROPAGATION,
    });
    const report = await mockRun;
    expect(report.error).toBeUndefined();
    providers = providersOf(report);
}, 120_000);

afterAll(() => stopProviderTest({ host, emulator, scratch: zipDir }));

beforeEach(() => {
    emulator.reset();
    emulator.registerApplication(APP_ID);
    emulator.registerApplication(OTHER_APP_ID);
});

it("serializes one provider per Dataverse resource, loading packages by name", () => {
    expect([...providers.keys()].sort()).toEqual([
        "pulumi-nodejs:dynamic/dataverse:ApplicationUser",
        "pulumi-nodejs:dynamic/dataverse:RoleAssignment",
        "pulumi-nodejs:dynamic/dataverse:RolePrivileges",
        "pulumi-nodejs:dynamic/dataverse:Solution",
    ]);
    for (const provider of providers.values()) {
        expect(provider).toContain('require("axios/dist/node/axios.cjs")');
        expect(provider).not.toMatch(/test-token|DATAVERSE_TOKEN=/);
    }
});

describe("Solution", () => {
    const inputs = solutionInputs;

    it("imports the package, then a re-run makes no write, and destroy uninstalls it", async () => {
        const engine = engineFor("Solution");
        const { op, state } = await engine.up(inputs(zips.v1));
        expect(op).toBe("create");
        expect(state.outputs).toMatchObject({
            uniqueName: LEAD_WRITER_SOLUTION_UNIQUE_NAME,
            version: "1.0.0.0",
            installedVersion: "1.0.0.0",
            adopted: false,
        });
        expect(emulator.state.solutions.map((s) => [s.uniquename, s.version])).toEqual([[LEAD_WRITER_SOLUTION_UNIQUE_NAME, "1.0.0.0"]]);
        expect(leadWriterRole()).toBeDefined();
        expect(writesSince(0)).toEqual(["POST ImportSolutionAsync"]);

        const mark = emulator.requests.length;
        const again = await engine.up(inputs(zips.v1), await engine.refresh(state));
        expect(again.op).toBe("same");
        expect(writesSince(mark)).toEqual([]);

        await engine.destroy(state);
        expect(emulator.state.solutions).toEqual([]);
        expect(leadWriterRole()).toBeUndefined();
    });

    it("upgrades to a higher version and refuses a lower one in preview", async () => {
        const engine = engineFor("Solution");
        const { state } = await engine.up(inputs(zips.v1));
        expect(await engine.preview(inputs(zips.v1_1), state)).toEqual({ op: "update", replaces: [] });
        const upgraded = await engine.up(inputs(zips.v1_1), state);
        expect(upgraded.op).toBe("update");
        expect(upgraded.state.outputs.installedVersion).toBe("1.0.0.1");
        expect(emulator.state.solutions[0].version).toBe("1.0.0.1");

        const mark = emulator.requests.length;
        await expect(engine.preview(inputs(zips.v0_9), upgraded.state)).rejects.toThrow(
            /1\.0\.0\.1 is installed; the package at .* is the older 0\.9\.0\.0/,
        );
        expect(writesSince(mark)).toEqual([]);
    });

    it("adopts a solution already installed at the same version and leaves it on destroy", async () => {
        const engine = engineFor("Solution");
        const first = await engine.up(inputs(zips.v1));
        // Installed long before this stack: its import is older than the import window.
        for (const job of emulator.state.importJobs) job.createdon = "2020-01-01T00:00:00Z";
        const mark = emulator.requests.length;
        const adopted = await engine.up(inputs(zips.v1));
        expect(adopted.state.outputs.adopted).toBe(true);
        expect(adopted.state.outputs.warnings).toEqual([expect.stringMatching(/was installed .* before this stack: it was adopted/)]);
        expect(writesSince(mark)).toEqual([]);
        await engine.destroy(adopted.state);
        expect(emulator.state.solutions).toHaveLength(1);
        expect(first.state.id).toBe(adopted.state.id);
    });

    it("never starts an import twice when the answer to the first was lost", async () => {
        emulator.injectFault({ method: "POST", path: /ImportSolutionAsync/ }, 1, { kind: "resetAfter" });
        const { state } = await engineFor("Solution").up(inputs(zips.v1));
        expect(state.outputs.installedVersion).toBe("1.0.0.0");
        expect(writesSince(0)).toEqual(["POST ImportSolutionAsync"]);
        expect(host.output).toMatch(
            /answer to ImportSolutionAsync for MicrosoftMarketplacesLeadIntegrationSolution was lost; looking the import job up/,
        );
    });

    it("rejects a missing package in check, naming the field", async () => {
        await expect(engineFor("Solution").up(inputs("/nonexistent/lead-writer.zip"))).rejects.toThrow(
            /check failed: source: .*no such file/i,
        );
        expect(emulator.requests).toHaveLength(0);
    });
});

describe("ApplicationUser", () => {
    const inputs = userInputs;

    it("creates a non-interactive user in the root business unit; a re-run writes nothing", async () => {
        emulator.requests.length = 0;
        const engine = engineFor("ApplicationUser");
        const { state } = await engine.up(inputs());
        const users = liveUsers(APP_ID);
        expect(users).toHaveLength(1);
        expect(users[0]).toMatchObject({ accessmode: 4, businessunitid: ROOT_BUSINESS_UNIT_ID, isdisabled: false });
        expect(state.id).toBe(users[0].systemuserid);
        expect(state.outputs).toMatchObject({
            systemUserId: users[0].systemuserid,
            resolvedBusinessUnitId: ROOT_BUSINESS_UNIT_ID,
            isDisabled: false,
        });
        expect(writesSince(0)).toEqual(["POST systemusers"]);

        const mark = emulator.requests.length;
        expect((await engine.up(inputs(), await engine.refresh(state))).op).toBe("same");
        expect(writesSince(mark)).toEqual([]);
    });

    it("notices a disabled user on refresh and enables it again", async () => {
        const engine = engineFor("ApplicationUser");
        const { state } = await engine.up(inputs());
        emulator.state.systemUsers.find((u) => u.systemuserid === state.id)!.isdisabled = true;
        const refreshed = (await engine.refresh(state))!;
        expect(refreshed.outputs.isDisabled).toBe(true);
        const repaired = await engine.up(inputs(), refreshed);
        expect(repaired.op).toBe("update");
        expect(repaired.state.outputs.isDisabled).toBe(false);
        expect(liveUsers(APP_ID)[0].isdisabled).toBe(false);
    });

    it("adopts an existing user after a crash instead of creating a second one", async () => {
        const engine = engineFor("ApplicationUser");
        await engine.up(inputs());
        const mark = emulator.requests.length;
        // The engine died before it saved the state: the next run creates again.
        const rerun = await engine.up(inputs());
        expect(liveUsers(APP_ID)).toHaveLength(1);
        expect(rerun.state.id).toBe(liveUsers(APP_ID)[0].systemuserid);
        expect(writesSince(mark)).toEqual([]);
    });

    it("converges without a duplicate when the provider process dies right after its create call", async () => {
        // The POST reaches the service, which carries it out after the caller is gone.
        let release = (): void => undefined;
        const held = new Promise<void>((resolve) => (release = resolve));
        const createUser = { method: "POST", path: /^\/api\/data\/v9\.2\/systemusers$/ };
        emulator.injectFault(createUser, 1, { kind: "hold", until: held });
        const doomed = await ProviderHost.start({ DATAVERSE_ENDPOINT: emulator.origin, DATAVERSE_TOKEN: "test-token" });
        const crashed = new EngineSimulator(doomed, providers.get("pulumi-nodejs:dynamic/dataverse:ApplicationUser")!).up(inputs());
        const failure = expect(crashed).rejects.toThrow(/provider host exited/);
        await emulator.waitForRequest(createUser);
        await doomed.stop();
        await failure;
        release();
        await emulator.whenIdle();
        expect(liveUsers(APP_ID)).toHaveLength(1);

        const mark = emulator.requests.length;
        const rerun = await engineFor("ApplicationUser").up(inputs());
        expect(rerun.state.id).toBe(liveUsers(APP_ID)[0].systemuserid);
        expect(liveUsers(APP_ID)).toHaveLength(1);
        expect(writesSince(mark)).toEqual([]);
    });

    it("adopts the user when the create was carried out but its answer was lost", async () => {
        emulator.injectFault({ method: "POST", path: /^\/api\/data\/v9\.2\/systemusers$/ }, 1, { kind: "resetAfter" });
        const { state } = await engineFor("ApplicationUser").up(inputs());
        expect(liveUsers(APP_ID)).toHaveLength(1);
        expect(state.id).toBe(liveUsers(APP_ID)[0].systemuserid);
        expect(writesSince(0)).toEqual(["POST systemusers"]);
    });

    it("settles a create that never reached the service by reading again and creating", async () => {
        emulator.injectFault({ method: "POST", path: /^\/api\/data\/v9\.2\/systemusers/ }, 1, { kind: "reset" });
        const { state } = await engineFor("ApplicationUser").up(inputs());
        expect(liveUsers(APP_ID)).toHaveLength(1);
        expect(state.id).toBe(liveUsers(APP_ID)[0].systemuserid);
        // The reset came before the service acted: one POST lost, one that created the user.
        expect(writesSince(0)).toEqual(["POST systemusers", "POST systemusers"]);
    });

    it("removes a soft-deleted leftover that would block the create", async () => {
        const engine = engineFor("ApplicationUser");
        const { state } = await engine.up(inputs());
        const row = emulator.state.systemUsers.find((u) => u.systemuserid === state.id)!;
        row.isdisabled = true;
        row.deletedstate = 1;
        const recreated = await engine.up(inputs());
        expect(recreated.state.id).not.toBe(state.id);
        expect(emulator.state.systemUsers.filter((u) => u.applicationid === APP_ID)).toHaveLength(1);
        expect(liveUsers(APP_ID)).toHaveLength(1);
    });

    it("waits for a service principal that Dataverse cannot see yet", async () => {
        emulator.registerApplication(APP_ID, { visibleAfter: 1 });
        const { state } = await engineFor("ApplicationUser").up(inputs());
        expect(state.id).toBe(liveUsers(APP_ID)[0].systemuserid);
        expect(host.output).toMatch(
            /info: .*Waiting 10 ms for the service principal of app 3f2504e0-4f89-41d3-9a0c-0305e82c3301 to reach Dataverse \(attempt 1 of 8\)/,
        );
    }, 30_000);

    it("replaces the user when the client id changes, and deletes before replacing when the business unit changes", async () => {
        const engine = engineFor("ApplicationUser");
        const { state } = await engine.up(inputs());
        expect(await engine.preview(inputs(OTHER_APP_ID), state)).toEqual({ op: "replace", replaces: ["applicationId"] });
        const moved = await engine.up(inputs(APP_ID, CHILD_BUSINESS_UNIT_ID), state);
        expect(moved.op).toBe("replace");
        expect(liveUsers(APP_ID).map((u) => u.businessunitid)).toEqual([CHILD_BUSINESS_UNIT_ID]);
    });

    it("destroys by disabling and deleting; a user already gone counts as deleted", async () => {
        const engine = engineFor("ApplicationUser");
        const { state } = await engine.up(inputs());
        await engine.destroy(state);
        expect(emulator.state.systemUsers.filter((u) => u.applicationid === APP_ID)).toEqual([]);
        await expect(engine.destroy(state)).resolves.toBeUndefined();
        expect(writesSince(0)).toEqual([
            "POST systemusers",
            "PATCH systemusers(" + state.id + ")",
            "DELETE systemusers(" + state.id + ")",
            "DELETE systemusers(" + state.id + ")",
            // The second destroy's disabling PATCH answers 404 (the user is gone): nothing else is sent.
            "PATCH systemusers(" + state.id + ")",
        ]);
        expect(emulator.requests.at(-1)?.status).toBe(404);
    });

    it("finishes a destroy that a crash left with the user soft-deleted", async () => {
        const engine = engineFor("ApplicationUser");
        const { state } = await engine.up(inputs());
        const user = emulator.state.systemUsers.find((u) => u.systemuserid === state.id)!;
        user.isdisabled = true;
        user.deletedstate = 1;
        await engine.destroy(state);
        expect(emulator.state.systemUsers.filter((u) => u.applicationid === APP_ID)).toEqual([]);
    });

    it("finishes a destroy when records the user owns keep it from being purged", async () => {
        const engine = engineFor("ApplicationUser");
        const { state } = await engine.up(inputs());
        emulator.state.leads.push({
            leadid: "9d3f0c51-0000-4000-8000-000000000001",
            subject: "MSFT_TEST",
            lastname: "Test",
            firstname: null,
            emailaddress1: null,
            companyname: null,
            leadsourcecode: 8,
            description: null,
            ownerid: state.id,
            createdon: new Date().toISOString(),
        });
        await engine.destroy(state);
        const row = emulator.state.systemUsers.find((u) => u.systemuserid === state.id);
        expect(row).toMatchObject({ isdisabled: true, deletedstate: 1 });
        expect(host.output).toMatch(/warning: .*is disabled and deleted, but Dataverse keeps its record/);
    });

    it("rejects a client id that is not a GUID before any call", async () => {
        const mark = emulator.requests.length;
        await expect(engineFor("ApplicationUser").up(inputs("my-app"))).rejects.toThrow(
            /check failed: applicationId: "my-app" is not a GUID/,
        );
        expect(emulator.requests.length).toBe(mark);
    });
});

describe("preview with values not known yet", () => {
    it.each([
        ["ApplicationUser", userInputs(UNKNOWN)],
        ["RoleAssignment", linkInputs(UNKNOWN)],
        ["RolePrivileges", grantInputs(GUIDE_ROLE_PRIVILEGES, UNKNOWN)],
        ["Solution", solutionInputs(UNKNOWN, { instanceUrl: UNKNOWN })],
    ])("%s passes check without calling Dataverse", async (type, news) => {
        const provider = providers.get(`pulumi-nodejs:dynamic/dataverse:${type}`)!;
        const result = await host.call<{ failures?: unknown[] }>(provider, "check", {}, news);
        expect(result.failures ?? []).toEqual([]);
        expect(emulator.requests).toHaveLength(0);
    });

    it("diffs a solution whose package version is not known yet as a change, not an error", async () => {
        const provider = providers.get("pulumi-nodejs:dynamic/dataverse:Solution")!;
        const olds = { ...checkedSolution, installedVersion: "1.0.0.0" };
        const diff = await host.call(provider, "diff", "id", olds, {
            ...olds,
            installedVersion: undefined,
            version: UNKNOWN,
            sha256: UNKNOWN,
        });
        expect(diff).toEqual({ changes: true, replaces: [] });
    });
});

describe("through Pulumi's own provider host", () => {
    it("a preview of a user being updated shows dependents its id but none of its outputs", async () => {
        const engine = engineFor("ApplicationUser");
        const { state } = await engine.up(userInputs());
        const mark = emulator.requests.length;

        const same = await engine.plan(userInputs(), state);
        const released = await engine.plan({ ...userInputs(), providerVersion: "9.9.9" }, state);

        expect(same).toMatchObject({ op: "same", id: state.id, outputs: { systemUserId: state.outputs.systemUserId } });
        expect(released).toMatchObject({ op: "update", id: state.id, outputs: { systemUserId: UNKNOWN, isDisabled: UNKNOWN } });
        expect(await engine.plan(userInputs(OTHER_APP_ID), state)).toMatchObject({ op: "replace", id: UNKNOWN });
        expect(writesSince(mark)).toEqual([]);
    });

    it("reports a provider's failure with the message the host puts in the gRPC status", async () => {
        const engine = engineFor("ApplicationUser");
        emulator.injectFault({ method: "GET", path: /systemusers/ }, "every", {
            kind: "status",
            status: 400,
            code: "0x80040203",
            message: "refused",
        });
        await expect(engine.up(userInputs())).rejects.toThrow(
            new ProviderCallError("Dataverse GET systemusers failed: 400 0x80040203 refused"),
        );
    });
});

describe("a whole stack", () => {
    it("comes up in dependency order, re-runs without a write, and destroys back to the instance it found", async () => {
        const before = JSON.parse(JSON.stringify(emulator.state)) as typeof emulator.state;
        const solution = await engineFor("Solution").up(solutionInputs(zips.v1));
        const user = await engineFor("ApplicationUser").up(userInputs());
        const link = linkInputs(user.state.id);
        const grants = grantInputs(GUIDE_ROLE_PRIVILEGES, solution.state.outputs.installedVersion);
        const assignment = await engineFor("RoleAssignment").up(link);
        const privileges = await engineFor("RolePrivileges").up(grants);
        expect([solution.op, user.op, assignment.op, privileges.op]).toEqual(["create", "create", "create", "create"]);

        const mark = emulator.requests.length;
        const again = [
            await engineFor("Solution").up(solutionInputs(zips.v1), (await engineFor("Solution").refresh(solution.state))!),
            await engineFor("ApplicationUser").up(userInputs(), (await engineFor("ApplicationUser").refresh(user.state))!),
            await engineFor("RoleAssignment").up(link, (await engineFor("RoleAssignment").refresh(assignment.state))!),
            await engineFor("RolePrivileges").up(grants, (await engineFor("RolePrivileges").refresh(privileges.state))!),
        ];
        expect(again.map((a) => a.op)).toEqual(["same", "same", "same", "same"]);
        expect(writesSince(mark)).toEqual([]);

        // Reverse dependency order, as `pulumi destroy` runs it.
        await engineFor("RolePrivileges").destroy(privileges.state);
        await engineFor("RoleAssignment").destroy(assignment.state);
        await engineFor("ApplicationUser").destroy(user.state);
        await engineFor("Solution").destroy(solution.state);
        const after = emulator.state;
        expect(after.solutions).toEqual(before.solutions);
        expect(after.roles).toEqual(before.roles);
        expect(after.userRoles).toEqual(before.userRoles);
        expect(after.rolePrivileges).toEqual(before.rolePrivileges);
        expect(after.systemUsers).toEqual(before.systemUsers);
    }, 30_000);
});

describe("a new release", () => {
    it("updates every resource once, writing nothing to Dataverse, so the new provider code is what destroy runs", async () => {
        const next = { providerVersion: "9.9.9" };
        const solution = await engineFor("Solution").up(solutionInputs(zips.v1));
        const user = await engineFor("ApplicationUser").up(userInputs());
        const link = await engineFor("RoleAssignment").up(linkInputs(user.state.id));
        const grants = await engineFor("RolePrivileges").up(grantInputs());

        const mark = emulator.requests.length;
        const released = [
            await engineFor("Solution").up({ ...solutionInputs(zips.v1), ...next }, solution.state),
            await engineFor("ApplicationUser").up({ ...userInputs(), ...next }, user.state),
            await engineFor("RoleAssignment").up({ ...linkInputs(user.state.id), ...next }, link.state),
            await engineFor("RolePrivileges").up({ ...grantInputs(), ...next }, grants.state),
        ];
        expect(released.map((r) => r.op)).toEqual(["update", "update", "update", "update"]);
        expect(writesSince(mark)).toEqual([]);
        expect(released[2].state.outputs).toMatchObject({ roleId: link.state.outputs.roleId, providerVersion: "9.9.9" });
        for (const r of released) {
            expect(r.state.outputs.providerVersion).toBe("9.9.9");
        }
    }, 30_000);
});

describe("diff", () => {
    const solution = checkedSolution;
    const user = userInputs();
    const link = linkInputs(APP_ID);
    const grants = grantInputs();
    const current = Object.fromEntries(GUIDE_ROLE_PRIVILEGES.map((g) => [g.name, g.depth]));
    const cases: [
        string,
        Record<string, unknown>,
        Record<string, unknown>,
        { changes: boolean; replaces: string[]; deleteBeforeReplace?: boolean },
    ][] = [
        ["Solution", { ...solution, installedVersion: "1.0.0.0" }, solution, { changes: false, replaces: [] }],
        ["Solution", { ...solution, installedVersion: "1.0.0.0" }, { ...solution, version: "1.0.0.1" }, { changes: true, replaces: [] }],
        [
            "Solution",
            { ...solution, installedVersion: "1.0.0.0" },
            { ...solution, providerVersion: "1.1.0" },
            { changes: true, replaces: [] },
        ],
        [
            "ApplicationUser",
            { ...user, isDisabled: false },
            { ...user, providerVersion: "1.1.0" },
            { changes: true, replaces: [], deleteBeforeReplace: false },
        ],
        ["RoleAssignment", link, { ...link, providerVersion: "1.1.0" }, { changes: true, replaces: [] }],
        ["RolePrivileges", { ...grants, currentDepths: current }, { ...grants, providerVersion: "1.1.0" }, { changes: true, replaces: [] }],
        ["Solution", { ...solution, installedVersion: "1.0.0.0" }, { ...solution, retainOnDelete: true }, { changes: true, replaces: [] }],
        [
            "Solution",
            { ...solution, installedVersion: "1.0.0.0" },
            { ...solution, instanceUrl: "https://fabrikam.crm.dynamics.com" },
            { changes: true, replaces: ["instanceUrl"] },
        ],
        [
            "Solution",
            { ...solution, installedVersion: "1.0.0.0" },
            { ...solution, uniqueName: "Other" },
            { changes: true, replaces: ["uniqueName"] },
        ],
        ["ApplicationUser", { ...user, isDisabled: false }, user, { changes: false, replaces: [], deleteBeforeReplace: false }],
        ["ApplicationUser", { ...user, isDisabled: true }, user, { changes: true, replaces: [], deleteBeforeReplace: false }],
        [
            "ApplicationUser",
            { ...user, isDisabled: false },
            { ...user, applicationId: OTHER_APP_ID },
            { changes: true, replaces: ["applicationId"], deleteBeforeReplace: false },
        ],
        [
            "ApplicationUser",
            { ...user, isDisabled: false },
            { ...user, businessUnitId: CHILD_BUSINESS_UNIT_ID },
            { changes: true, replaces: ["businessUnitId"], deleteBeforeReplace: true },
        ],
        ["RoleAssignment", link, link, { changes: false, replaces: [] }],
        ["RoleAssignment", link, { ...link, roleName: "Other" }, { changes: true, replaces: ["roleName"] }],
        ["RoleAssignment", link, { ...link, systemUserId: OTHER_APP_ID }, { changes: true, replaces: ["systemUserId"] }],
        ["RolePrivileges", { ...grants, currentDepths: current }, grants, { changes: false, replaces: [] }],
        [
            "RolePrivileges",
            { ...grants, currentDepths: { ...current, prvReadAsyncOperation: "Deep" } },
            grants,
            { changes: true, replaces: [] },
        ],
        [
            "RolePrivileges",
            { ...grants, currentDepths: current },
            { ...grants, solutionVersion: "1.0.0.1" },
            { changes: true, replaces: [] },
        ],
        [
            "RolePrivileges",
            { ...grants, currentDepths: current },
            { ...grants, roleName: "Other" },
            { changes: true, replaces: ["roleName"] },
        ],
    ];

    const label = ([type, olds, news, expected]: (typeof cases)[number]) => {
        const changed = Object.keys(news).filter((k) => JSON.stringify(olds[k]) !== JSON.stringify(news[k]));
        const drift =
            "isDisabled" in olds && olds.isDisabled
                ? ["disabled in Dataverse"]
                : "currentDepths" in olds && JSON.stringify(olds.currentDepths) !== JSON.stringify(current)
                  ? ["privilege lowered in Dataverse"]
                  : [];
        return `${type}: ${[...changed, ...drift].join(", ") || "nothing changed"} → ${expected.replaces.length ? `replace (${expected.replaces})` : expected.changes ? "update" : "no change"}`;
    };

    it.each(cases.map((c) => [label(c), ...c] as const))("%s", async (_label, type, olds, news, expected) => {
        const provider = providers.get(`pulumi-nodejs:dynamic/dataverse:${type}`)!;
        const diff = await host.call<Record<string, unknown>>(provider, "diff", "id", olds, news);
        // Over gRPC a left-out deleteBeforeReplace and false are the same value.
        expect({ ...diff, deleteBeforeReplace: diff.deleteBeforeReplace ?? false }).toEqual({ deleteBeforeReplace: false, ...expected });
        expect(emulator.requests).toHaveLength(0);
    });
});

describe("RoleAssignment and RolePrivileges", () => {
    let user: ResourceState;

    beforeEach(async () => {
        await engineFor("Solution").up(solutionInputs(zips.v1));
        user = (await engineFor("ApplicationUser").up(userInputs())).state;
    }, 30_000);

    const assignment = () => linkInputs(user.id);
    const privileges = (grants: readonly PrivilegeGrant[] = GUIDE_ROLE_PRIVILEGES) => grantInputs(grants);
    const links = () => emulator.state.userRoles.filter((l) => l.systemuserid === user.id).map((l) => l.roleid);

    it("assigns the role, re-adds a link someone removed, and unlinks on destroy", async () => {
        const engine = engineFor("RoleAssignment");
        const { state } = await engine.up(assignment());
        const role = leadWriterRole()!;
        expect(links()).toEqual([role.roleid]);
        expect(state.id).toBe(`${user.id}/${role.roleid}`);

        const mark = emulator.requests.length;
        expect((await engine.up(assignment(), await engine.refresh(state))).op).toBe("same");
        expect(writesSince(mark)).toEqual([]);

        emulator.state.userRoles = emulator.state.userRoles.filter((l) => l.systemuserid !== user.id);
        expect(await engine.refresh(state)).toBeUndefined();
        expect((await engine.up(assignment())).op).toBe("create");
        expect(links()).toEqual([role.roleid]);

        await engine.destroy(state);
        expect(links()).toEqual([]);
    });

    it("assigns the copy of the role in the user's own business unit", async () => {
        await engineFor("ApplicationUser").destroy(user);
        user = (await engineFor("ApplicationUser").up(userInputs(APP_ID, CHILD_BUSINESS_UNIT_ID))).state;
        const { state } = await engineFor("RoleAssignment").up(assignment());
        expect(links()).toEqual([leadWriterRole(CHILD_BUSINESS_UNIT_ID)!.roleid]);
        expect(state.outputs.businessUnitId).toBe(CHILD_BUSINESS_UNIT_ID);
    });

    it("explains a missing role instead of failing obscurely", async () => {
        await expect(engineFor("RoleAssignment").up({ ...assignment(), roleName: "Lead Writer (typo)" })).rejects.toThrow(
            /The security role "Lead Writer \(typo\)" does not exist in business unit .* Is the Marketplace Lead Writer solution installed/,
        );
    });

    it("grants the guide's privileges at their depths, and a re-run writes nothing", async () => {
        const engine = engineFor("RolePrivileges");
        const { state } = await engine.up(privileges());
        const role = leadWriterRole()!;
        for (const grant of GUIDE_ROLE_PRIVILEGES) {
            expect([grant.name, depthOf(role.roleid, grant.name)]).toEqual([grant.name, grant.depth]);
        }
        expect(state.outputs.previousDepths).toEqual(Object.fromEntries(GUIDE_ROLE_PRIVILEGES.map((g) => [g.name, null])));
        const mark = emulator.requests.length;
        expect((await engine.up(privileges(), await engine.refresh(state))).op).toBe("same");
        expect(writesSince(mark)).toEqual([]);
    });

    it("repairs a lowered privilege after refresh", async () => {
        const engine = engineFor("RolePrivileges");
        const { state } = await engine.up(privileges());
        const role = leadWriterRole()!;
        const system = emulator.state.privileges.find((p) => p.name === "prvReadAsyncOperation")!;
        emulator.state.rolePrivileges[role.roleid][system.privilegeid] = "Basic";
        const refreshed = (await engine.refresh(state))!;
        expect((refreshed.outputs.currentDepths as Record<string, string>).prvReadAsyncOperation).toBe("Basic");
        expect((await engine.up(privileges(), refreshed)).op).toBe("update");
        expect(depthOf(role.roleid, "prvReadAsyncOperation")).toBe("Global");
    });

    it("never lowers a deeper grant, and destroy puts back exactly what was there before", async () => {
        const role = leadWriterRole()!;
        const readAsync = emulator.state.privileges.find((p) => p.name === "prvReadAsyncOperation")!;
        const writeAsync = emulator.state.privileges.find((p) => p.name === "prvWriteAsyncOperation")!;
        emulator.state.rolePrivileges[role.roleid][readAsync.privilegeid] = "Global";
        emulator.state.rolePrivileges[role.roleid][writeAsync.privilegeid] = "Local";
        const lower = GUIDE_ROLE_PRIVILEGES.map((g) => (g.name === "prvReadAsyncOperation" ? { ...g, depth: "Deep" as const } : g));
        const engine = engineFor("RolePrivileges");
        const { state } = await engine.up(privileges(lower));
        expect(depthOf(role.roleid, "prvReadAsyncOperation")).toBe("Global");
        expect(depthOf(role.roleid, "prvWriteAsyncOperation")).toBe("Global");

        await engine.destroy(state);
        expect(depthOf(role.roleid, "prvReadAsyncOperation")).toBe("Global");
        expect(depthOf(role.roleid, "prvWriteAsyncOperation")).toBe("Local");
        expect(depthOf(role.roleid, "prvCreateUserEntityUISettings")).toBeUndefined();
    });

    it("restores a privilege dropped from the config on update", async () => {
        const engine = engineFor("RolePrivileges");
        const { state } = await engine.up(privileges());
        const fewer = GUIDE_ROLE_PRIVILEGES.filter((g) => g.name !== "prvAppendToAsyncOperation");
        expect((await engine.up(privileges(fewer), state)).op).toBe("update");
        expect(depthOf(leadWriterRole()!.roleid, "prvAppendToAsyncOperation")).toBeUndefined();
    });

    it("refuses an unknown privilege or a depth it cannot take before writing", async () => {
        const engine = engineFor("RolePrivileges");
        const mark = emulator.requests.length;
        await expect(engine.up(privileges([{ name: "prvDoesNotExist", depth: "Basic" }]))).rejects.toThrow(
            /No such privilege on .*: prvDoesNotExist/,
        );
        await expect(engine.up(privileges([{ name: "prvReadUserEntityUISettings", depth: "Global" }]))).rejects.toThrow(
            /prvReadUserEntityUISettings cannot be granted at Global depth/,
        );
        expect(writesSince(mark)).toEqual([]);
    });

    it("refuses an update that adds an unknown privilege before any of it is written", async () => {
        const engine = engineFor("RolePrivileges");
        const { state } = await engine.up(privileges());
        const mark = emulator.requests.length;
        const raisedAndUnknown = [
            ...GUIDE_ROLE_PRIVILEGES.map((g) => (g.name === "prvReadUserEntityUISettings" ? { ...g, depth: "Local" as const } : g)),
            { name: "prvDoesNotExist", depth: "Basic" as const },
        ];
        await expect(engine.up(privileges(raisedAndUnknown), state)).rejects.toThrow(/No such privilege on .*: prvDoesNotExist/);
        expect(writesSince(mark)).toEqual([]);
        expect(depthOf(leadWriterRole()!.roleid, "prvReadUserEntityUISettings")).toBe("Basic");
    });
});

describe("RolePrivileges round trips", () => {
    beforeEach(async () => {
        await engineFor("Solution").up(solutionInputs(zips.v1));
    }, 30_000);

    const calls = (mark: number) =>
        emulator.requests.slice(mark).map(
            (r) =>
                `${r.method} ${r.path
                    .split("?")[0]
                    .replace("/api/data/v9.2/", "")
                    .replace(/\(.*\)/, "(…)")}`,
        );

    it("refreshes with one request, using the privilege ids kept from create", async () => {
        const engine = engineFor("RolePrivileges");
        const { state } = await engine.up(grantInputs());
        expect(Object.keys(state.outputs.privilegeIds as object).sort()).toEqual(GUIDE_ROLE_PRIVILEGES.map((g) => g.name).sort());
        const mark = emulator.requests.length;
        const refreshed = (await engine.refresh(state))!;
        expect(calls(mark)).toEqual(["GET RetrieveRolePrivilegesRole(…)"]);
        expect(refreshed.outputs.currentDepths).toEqual(state.outputs.currentDepths);
    });

    it("refreshes and destroys state written before the ids were kept", async () => {
        const engine = engineFor("RolePrivileges");
        const { state } = await engine.up(grantInputs());
        const older: Record<string, unknown> = { ...state.outputs };
        delete older.privilegeIds;
        delete older.businessUnitId;
        const old = { ...state, outputs: older };
        expect((await engine.refresh(old))!.outputs.privilegeIds).toEqual(state.outputs.privilegeIds);
        await engine.destroy(old);
        for (const grant of GUIDE_ROLE_PRIVILEGES) expect(depthOf(leadWriterRole()!.roleid, grant.name)).toBeUndefined();
    });

    it("restores the privileges on destroy in parallel, not one after another", async () => {
        const engine = engineFor("RolePrivileges");
        const { state } = await engine.up(grantInputs());
        emulator.injectFault({ method: "POST", path: /RemovePrivilegeRole/ }, "every", { kind: "delay", ms: 400 });
        const mark = emulator.requests.length;
        await engine.destroy(state);
        const removals = emulator.requests.slice(mark).filter((r) => r.path.includes("RemovePrivilegeRole"));
        expect(removals).toHaveLength(GUIDE_ROLE_PRIVILEGES.length);
        // In sequence each would arrive at least 400 ms after the one before.
        expect(Math.max(...removals.map((r) => r.time)) - Math.min(...removals.map((r) => r.time))).toBeLessThan(400);
        for (const grant of GUIDE_ROLE_PRIVILEGES) expect(depthOf(leadWriterRole()!.roleid, grant.name)).toBeUndefined();
    });

    it("creates in three round trips when the role holds none of the privileges", async () => {
        const mark = emulator.requests.length;
        await engineFor("RolePrivileges").up(grantInputs());
        expect(calls(mark).sort()).toEqual(
            [
                "GET businessunits",
                "GET roles",
                "GET privileges",
                "GET RetrieveRolePrivilegesRole(…)",
                "POST roles(…)/Microsoft.Dynamics.CRM.AddPrivilegesRole",
            ].sort(),
        );
        const [bu, roles, privileges, read] = ["businessunits", "roles?", "privileges?", "RetrieveRolePrivilegesRole"].map((p) =>
            emulator.requests.slice(mark).find((r) => r.path.includes(p))!,
        );
        // The three lookups go out together, before the read that needs the role's id.
        expect(Math.max(bu.time, roles.time, privileges.time)).toBeLessThanOrEqual(read.time);
    });

    it("reads again after raising a privilege the role already held, and fails loudly when it was not raised", async () => {
        const role = leadWriterRole()!;
        const readAsync = emulator.state.privileges.find((p) => p.name === "prvReadAsyncOperation")!;
        emulator.state.rolePrivileges[role.roleid][readAsync.privilegeid] = "Basic";
        // Add answers success but changes nothing: the undocumented case the re-read guards.
        emulator.injectFault({ method: "POST", path: /AddPrivilegesRole/ }, 1, { kind: "status", status: 204 });
        const mark = emulator.requests.length;
        await expect(engineFor("RolePrivileges").up(grantInputs())).rejects.toThrow(
            /Dataverse did not apply .*prvReadAsyncOperation at Global \(now Basic\)/,
        );
        expect(calls(mark).filter((c) => c.includes("RetrieveRolePrivilegesRole"))).toHaveLength(2);
    });
});

describe("round trips of the Solution and ApplicationUser creates", () => {
    it("has the installed solution in hand when a poll sees the import done: nothing is read after it", async () => {
        // Slow polls, so that what goes out with a poll is told apart from what follows its answer.
        emulator.injectFault({ method: "GET", path: /asyncoperations\(/ }, "every", { kind: "delay", ms: 200 });
        await engineFor("Solution").up(solutionInputs(zips.v1));
        const polls = emulator.requests.filter((r) => r.path.includes("asyncoperations("));
        const last = polls[polls.length - 1];
        expect(last).toBeDefined();
        expect(emulator.requests.filter((r) => r.time >= last.answered!).map((r) => `${r.method} ${r.path}`)).toEqual([]);
    });

    it("looks up the business unit and the user together", async () => {
        emulator.injectFault({ method: "GET", path: /businessunits/ }, "every", { kind: "delay", ms: 400 });
        await engineFor("ApplicationUser").up(userInputs());
        const [units, users] = ["businessunits", "systemusers?"].map((p) => emulator.requests.find((r) => r.path.includes(p))!);
        // In sequence the user lookup would arrive after the business unit's 400 ms answer.
        expect(Math.abs(users.time - units.time)).toBeLessThan(400);
    });
});
