/**
 * The faults issue 10 names, each pinned by a test that failed before its fix: a preview that promised a
 * replacement for a value it did not know, warnings only in the provider log, errors printed as `: undefined`, a
 * lost import start that left `up` waiting for the import timeout, a crash after the import start that lost the
 * solution's ownership, and a destroy that gave up on the first "owns records".
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { Emulator, LEAD_WRITER_ROLE_NAME, LEAD_WRITER_SOLUTION_UNIQUE_NAME, ROOT_BUSINESS_UNIT_ID, startEmulator } from "./emulator/server";
import { buildSolutionZip } from "./support/solutionZip";
import { EngineSimulator, PLAIN_STACK_CONFIG, ProviderHost, providersOf, runMockProgram, stopProviderTest } from "./support/providerHost";
import { GUIDE_ROLE_PRIVILEGES } from "../components/guide";
import { clientTuningFromEnvironment } from "../components/dataverse/client";
import { APP_ID, grantInputs, linkInputs, solutionInputs, userInputs } from "./support/providerInputs";

const UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";
/** What a user on a slow or flaky network could set too: fast retries and a short per-request timeout. */
const CLIENT_TUNING = { DATAVERSE_RETRY_DELAY_MS: "1", DATAVERSE_TIMEOUT_MS: "2000" };

let emulator: Emulator;
let host: ProviderHost;
let providers: Map<string, string>;
let zip: string;

const provider = (type: string) => providers.get(`pulumi-nodejs:dynamic/dataverse:${type}`)!;
const engineFor = (type: string, on: ProviderHost = host) => new EngineSimulator(on, provider(type));
const startHost = () => ProviderHost.start({ DATAVERSE_ENDPOINT: emulator.origin, DATAVERSE_TOKEN: "test-token", ...CLIENT_TUNING });
const requestsTo = (pattern: RegExp) => emulator.requests.filter((r) => pattern.test(`${r.method} ${r.path}`));

let scratch: string | undefined;

beforeAll(async () => {
    const dir = (scratch = fs.mkdtempSync(path.join(os.tmpdir(), "lead-solution-")));
    zip = path.join(dir, "lead-writer.zip");
    fs.writeFileSync(zip, buildSolutionZip({ uniqueName: LEAD_WRITER_SOLUTION_UNIQUE_NAME, version: "1.0.0.0", managed: true }));
    const report = await runMockProgram(PLAIN_STACK_CONFIG);
    expect(report.error).toBeUndefined();
    providers = providersOf(report);
    // Imports finish with the first request after their start, so no test waits on polling.
    emulator = await startEmulator({ importPolls: 0 });
    host = await startHost();
}, 120_000);

afterAll(() => stopProviderTest({ host, emulator, scratch }));

beforeEach(() => {
    emulator.reset();
    emulator.registerApplication(APP_ID);
});

describe("a preview with values it does not know yet", () => {
    // Whenever the application user is updated (every release bump, a refresh that found it disabled), all its
    // outputs are unknown in the preview, so the role assignment sees the placeholder as its user id.
    it.each([
        ["RoleAssignment", linkInputs(APP_ID), { systemUserId: UNKNOWN }],
        ["ApplicationUser", { ...userInputs(), isDisabled: false }, { applicationId: UNKNOWN }],
        ["RolePrivileges", { ...grantInputs(), currentDepths: {} }, { roleName: UNKNOWN }],
        [
            "Solution",
            { ...solutionInputs(zip), uniqueName: LEAD_WRITER_SOLUTION_UNIQUE_NAME, version: "1.0.0.0", installedVersion: "1.0.0.0" },
            { instanceUrl: UNKNOWN },
        ],
    ])("%s reports a change, never a replacement", async (type, olds, unknowns) => {
        const diff = await host.call<{ changes?: boolean; replaces?: string[] }>(provider(type), "diff", "id", olds, {
            ...olds,
            ...unknowns,
        });
        expect(diff.changes).toBe(true);
        expect(diff.replaces ?? []).toEqual([]);
    });

    it("previews a release as updates only, though the role assignment sees its user id unknown", async () => {
        await engineFor("Solution").up(solutionInputs(zip));
        const user = await engineFor("ApplicationUser").up(userInputs());
        const link = await engineFor("RoleAssignment").up(linkInputs(user.state.id));
        const release = { providerVersion: "9.9.9" };
        const userPlan = await engineFor("ApplicationUser").plan({ ...userInputs(), ...release }, user.state);
        expect(userPlan.outputs.systemUserId).toBe(UNKNOWN);
        const linkPreview = await engineFor("RoleAssignment").preview(
            { ...linkInputs(userPlan.outputs.systemUserId as string), ...release },
            link.state,
        );
        expect([userPlan.op, linkPreview.op, linkPreview.replaces]).toEqual(["update", "update", []]);
        // The up that follows: the same user, so the link is only updated.
        const upUser = await engineFor("ApplicationUser").up({ ...userInputs(), ...release }, user.state);
        const upLink = await engineFor("RoleAssignment").up({ ...linkInputs(upUser.state.id), ...release }, link.state);
        expect(upLink.op).toBe("update");
    });

    it("still replaces the link when the user id is known and different", async () => {
        const olds = linkInputs(APP_ID);
        const other = "3f2504e0-4f89-41d3-9a0c-0305e82c3399";
        const diff = await host.call<{ replaces?: string[] }>(provider("RoleAssignment"), "diff", "id", olds, {
            ...olds,
            systemUserId: other,
        });
        expect(diff.replaces).toEqual(["systemUserId"]);
    });
});

describe("warnings a user must act on", () => {
    it("are outputs of each resource: none on a clean install", async () => {
        const solution = await engineFor("Solution").up(solutionInputs(zip));
        const user = await engineFor("ApplicationUser").up(userInputs());
        const link = await engineFor("RoleAssignment").up(linkInputs(user.state.id));
        const grants = await engineFor("RolePrivileges").up(grantInputs());
        for (const { state } of [solution, user, link, grants]) {
            expect(state.outputs.warnings).toEqual([]);
        }
    });

    it("name an adopted solution, a user found disabled, other roles, and grants beyond the guide", async () => {
        const first = await engineFor("Solution").up(solutionInputs(zip));
        // Imported long ago (outside the import window), so a stack without state finds it installed before it.
        for (const job of emulator.state.importJobs) job.createdon = "2020-01-01T00:00:00Z";
        const solution = await engineFor("Solution").up(solutionInputs(zip));
        expect(solution.state.outputs.warnings).toEqual([
            expect.stringMatching(/1\.0\.0\.0 was installed on .* before this stack: it was adopted, not imported, and destroy leaves it/),
        ]);
        expect(first.state.id).toBe(solution.state.id);

        const user = await engineFor("ApplicationUser").up(userInputs());
        emulator.state.systemUsers.find((u) => u.systemuserid === user.state.id)!.isdisabled = true;
        const refreshed = (await engineFor("ApplicationUser").refresh(user.state))!;
        expect(refreshed.outputs.warnings).toEqual([
            expect.stringMatching(/is disabled in Dataverse; the next 'pulumi up' enables it again/),
        ]);
        const repaired = await engineFor("ApplicationUser").up(userInputs(), refreshed);
        expect(repaired.state.outputs.warnings).toEqual([expect.stringMatching(/was disabled in Dataverse and has been enabled again/)]);

        const salesperson = emulator.state.roles.find(
            (r) => r.name !== LEAD_WRITER_ROLE_NAME && r.businessunitid === ROOT_BUSINESS_UNIT_ID,
        )!;
        emulator.state.userRoles.push({ systemuserid: user.state.id, roleid: salesperson.roleid });
        const link = await engineFor("RoleAssignment").up(linkInputs(user.state.id));
        expect(link.state.outputs.warnings).toEqual([
            expect.stringContaining(`also holds "${salesperson.name}" besides "${LEAD_WRITER_ROLE_NAME}"`),
        ]);

        const elevated = [...GUIDE_ROLE_PRIVILEGES, { name: "prvReadLead", depth: "Global" as const }];
        const grants = await engineFor("RolePrivileges").up(grantInputs(elevated));
        expect(grants.state.outputs.warnings).toEqual([
            expect.stringMatching(/is granted prvReadLead at Global, which the guide does not ask for/),
        ]);
        expect(host.output).toMatch(/prvReadLead at Global, which the guide does not ask for/);
    });
});

describe("errors that cross the provider host", () => {
    it("print with a stack, never `: undefined`", async () => {
        emulator.injectFault({ method: "GET", path: /systemusers\(/ }, "every", { kind: "status", status: 403, code: "0x80040220" });
        const state = {
            id: `${APP_ID}/${APP_ID}`,
            inputs: {},
            outputs: { ...linkInputs(APP_ID), roleId: APP_ID, __provider: provider("RoleAssignment") },
        };
        await expect(engineFor("RoleAssignment").refresh(state)).rejects.toThrow(/Dataverse GET systemusers\(.*\) failed: 403 0x80040220/);
        expect(host.output).toMatch(/DataverseError: Dataverse GET systemusers\([^)]*\) failed: 403[^\n]*: DataverseError: [^\n]*\n\s+at /);
        expect(host.output).not.toMatch(/: undefined/);
    });
});

describe("a lost import start", () => {
    it("starts again at once when the request never reached the service", async () => {
        emulator.injectFault({ method: "POST", path: /ImportSolutionAsync/ }, 1, { kind: "reset" });
        const started = Date.now();
        const { state } = await engineFor("Solution").up(solutionInputs(zip));
        expect(Date.now() - started).toBeLessThan(10_000);
        expect(state.outputs).toMatchObject({ installedVersion: "1.0.0.0", adopted: false });
        expect(requestsTo(/^POST .*ImportSolutionAsync/)).toHaveLength(2);
        expect(emulator.state.importJobs).toHaveLength(1);
        expect(host.output).toMatch(/No import job of .* exists: the request never reached the service\. Starting the import again/);
    }, 20_000);

    it("starts again after a request that timed out unanswered", async () => {
        emulator.injectFault({ method: "POST", path: /ImportSolutionAsync/ }, 1, { kind: "timeout", ms: 300 });
        const { state } = await engineFor("Solution").up(solutionInputs(zip));
        expect(state.outputs.installedVersion).toBe("1.0.0.0");
        expect(emulator.state.importJobs).toHaveLength(1);
    }, 20_000);

    it("follows the job it started when only the answer was lost", async () => {
        emulator.injectFault({ method: "POST", path: /ImportSolutionAsync/ }, 1, { kind: "resetAfter" });
        const { state } = await engineFor("Solution").up(solutionInputs(zip));
        expect(state.outputs).toMatchObject({ installedVersion: "1.0.0.0", adopted: false });
        expect(requestsTo(/^POST .*ImportSolutionAsync/)).toHaveLength(1);
        expect(host.output).toMatch(/Found import job .* waiting for it/);
    }, 20_000);
});

describe("a provider process killed right after the import started", () => {
    async function crashAfterImportStart(): Promise<void> {
        // The poll after the start hangs, so the process is surely between the start and its outcome when killed.
        emulator.injectFault({ method: "GET", path: /asyncoperations\(/ }, 1, { kind: "timeout", ms: 60_000 });
        const doomed = await startHost();
        const crashed = engineFor("Solution", doomed).up(solutionInputs(zip));
        const failure = expect(crashed).rejects.toThrow();
        while (!requestsTo(/^GET .*asyncoperations\(/).length) await new Promise((r) => setTimeout(r, 10));
        await doomed.stop();
        await failure;
        emulator.clearFaults();
    }

    it("re-runs to a solution the stack owns, so destroy uninstalls it", async () => {
        await crashAfterImportStart();
        const rerun = await engineFor("Solution").up(solutionInputs(zip));
        expect(rerun.state.outputs).toMatchObject({ installedVersion: "1.0.0.0", adopted: false, warnings: [] });
        expect(requestsTo(/^POST .*ImportSolutionAsync/)).toHaveLength(1);
        await engineFor("Solution").destroy(rerun.state);
        expect(emulator.state.solutions).toEqual([]);
        expect(emulator.state.roles.some((r) => r.name === LEAD_WRITER_ROLE_NAME)).toBe(false);
    }, 30_000);

    it("follows the import still running instead of starting a second one", async () => {
        await crashAfterImportStart();
        emulator.state.asyncOperations[0].pollsRemaining = 3;
        const rerun = await engineFor("Solution").up(solutionInputs(zip));
        expect(rerun.state.outputs).toMatchObject({ installedVersion: "1.0.0.0", adopted: false });
        expect(requestsTo(/^POST .*ImportSolutionAsync/)).toHaveLength(1);
        expect(emulator.state.importJobs).toHaveLength(1);
    }, 30_000);
});

describe("destroying an application user that owns records", () => {
    const ownLead = (ownerid: string) =>
        emulator.state.leads.push({
            leadid: "9d3f0c51-0000-4000-8000-000000000001",
            subject: "MSFT_TEST_1",
            lastname: "MSFT_TEST_1",
            firstname: null,
            emailaddress1: null,
            companyname: null,
            leadsourcecode: 8,
            description: null,
            ownerid,
            createdon: new Date().toISOString(),
        });

    it("retries the permanent delete while the user's own rows settle", async () => {
        const { state } = await engineFor("ApplicationUser").up(userInputs());
        emulator.injectFault({ method: "DELETE", path: /systemusers\(/ }, [2, 3], {
            kind: "status",
            status: 400,
            code: "0x80048610",
            message: "Can't delete a user which owns records.",
        });
        await engineFor("ApplicationUser").destroy(state);
        expect(emulator.state.systemUsers.filter((u) => u.applicationid === APP_ID)).toEqual([]);
        expect(requestsTo(/^DELETE .*systemusers\(/)).toHaveLength(4);
    });

    it("then warns and succeeds, naming the records that keep it, with one query", async () => {
        const { state } = await engineFor("ApplicationUser").up(userInputs());
        ownLead(state.id);
        const mark = emulator.requests.length;
        await engineFor("ApplicationUser").destroy(state);
        expect(emulator.state.systemUsers.find((u) => u.systemuserid === state.id)).toMatchObject({ isdisabled: true, deletedstate: 1 });
        expect(host.output).toMatch(
            new RegExp(
                `Application user ${state.id} is disabled and deleted, but Dataverse keeps its record because it owns leads such as 9d3f0c51-0000-4000-8000-000000000001 \\("MSFT_TEST_1"\\)`,
            ),
        );
        expect(
            emulator.requests
                .slice(mark)
                .filter((r) => r.path.includes("/leads"))
                .map((r) => r.method),
        ).toEqual(["GET"]);
    });
});

describe("client tuning a user can set (what these tests use to stay fast)", () => {
    const saved = { ...process.env };
    afterEach(() => {
        process.env = { ...saved };
    });

    it("reads the per-request timeout, the first backoff step and the first propagation wait, and leaves the defaults alone otherwise", () => {
        delete process.env.DATAVERSE_TIMEOUT_MS;
        delete process.env.DATAVERSE_RETRY_DELAY_MS;
        delete process.env.DATAVERSE_PROPAGATION_DELAY_MS;
        expect(clientTuningFromEnvironment()).toEqual({});
        process.env.DATAVERSE_TIMEOUT_MS = "30000";
        process.env.DATAVERSE_RETRY_DELAY_MS = "250";
        process.env.DATAVERSE_PROPAGATION_DELAY_MS = "15000";
        expect(clientTuningFromEnvironment()).toEqual({ timeoutMs: 30000, retry: { baseDelayMs: 250 }, propagationFirstDelayMs: 15000 });
    });

    it("refuses a value that is not a positive number, naming the variable", () => {
        process.env.DATAVERSE_TIMEOUT_MS = "soon";
        expect(() => clientTuningFromEnvironment()).toThrow('DATAVERSE_TIMEOUT_MS must be a positive number of milliseconds, not "soon"');
        process.env.DATAVERSE_TIMEOUT_MS = "30000";
        process.env.DATAVERSE_PROPAGATION_DELAY_MS = "-1";
        expect(() => clientTuningFromEnvironment()).toThrow(
            'DATAVERSE_PROPAGATION_DELAY_MS must be a positive number of milliseconds, not "-1"',
        );
    });
});
