/**
 * The fault matrix (run by the faultMatrix*.test.ts files): every provider operation, with one fault at each of its requests in turn (429 with
 * Retry-After, 503, a reset before the service saw the request, a timeout, an answer lost after the service acted),
 * run through Pulumi's own dynamic-provider host. Each case either succeeds through retries or fails with a clear
 * error, and a re-run (what the engine does next) reaches the same Dataverse state as a fault-free run: no
 * duplicate user, role link, privilege change or import. Then a provider process killed between two calls.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { Emulator, EmulatorState, Fault, LEAD_WRITER_SOLUTION_UNIQUE_NAME, startEmulator } from "../emulator/server";
import { buildSolutionZip } from "./solutionZip";
import {
    EngineSimulator,
    PLAIN_STACK_CONFIG,
    ProviderHost,
    providersOf,
    ResourceState,
    runMockProgram,
    stopProviderTest,
} from "./providerHost";
import { GUIDE_ROLE_PRIVILEGES } from "../../components/guide";
import { APP_ID, grantInputs, linkInputs, solutionInputs, userInputs } from "./providerInputs";

const TOKEN = "fault-matrix-bearer-token";
/**
 * Retries without waiting and a short per-request timeout, through the client settings a user on a flaky network
 * could set too (README "Environment variables").
 */
const HOST_ENV = { DATAVERSE_TOKEN: TOKEN, DATAVERSE_RETRY_DELAY_MS: "1", DATAVERSE_TIMEOUT_MS: "100" };

const FAULTS: Record<string, Fault> = {
    "429 Retry-After 0": { kind: "status", status: 429, retryAfter: "0" },
    "503": { kind: "status", status: 503 },
    reset: { kind: "reset" },
    // Longer than the client's timeout; the import start, which allows itself minutes, sees the connection drop.
    timeout: { kind: "timeout", ms: 300 },
    "lost answer": { kind: "resetAfter" },
};

let emulator: Emulator;
let host: ProviderHost;
let providers: Map<string, string>;
let zips: { v1: string; v1_1: string };

const engine = (type: string, on = host) => new EngineSimulator(on, providers.get(`pulumi-nodejs:dynamic/dataverse:${type}`)!);

/** Dataverse as a user sees it, without generated ids and times: what must match a fault-free run. */
function endState(s: EmulatorState) {
    const role = (id: string) => {
        const r = s.roles.find((x) => x.roleid === id);
        return r ? `${r.name}@${r.businessunitid}` : `missing role ${id}`;
    };
    const user = (id: string) => s.systemUsers.find((u) => u.systemuserid === id)?.applicationid ?? id;
    const privilege = (id: string) => s.privileges.find((p) => p.privilegeid === id)?.name ?? id;
    return {
        users: s.systemUsers
            .map((u) => `${u.applicationid ?? u.systemuserid} bu=${u.businessunitid} disabled=${u.isdisabled} deleted=${u.deletedstate}`)
            .sort(),
        links: s.userRoles.map((l) => `${user(l.systemuserid)} → ${role(l.roleid)}`).sort(),
        privileges: Object.entries(s.rolePrivileges)
            .map(
                ([roleId, grants]) =>
                    `${role(roleId)}: ${Object.entries(grants)
                        .map(([p, d]) => `${privilege(p)}=${d}`)
                        .sort()
                        .join(",")}`,
            )
            .sort(),
        solutions: s.solutions.map((x) => `${x.uniquename}@${x.version}`).sort(),
        roles: s.roles.map((r) => `${r.name}@${r.businessunitid}`).sort(),
        imports: s.importJobs.length,
    };
}

/** The state a resource carries in the engine, minus what a read legitimately recomputes. */
const comparable = (state: ResourceState | undefined) => state && { id: state.id, outputs: { ...state.outputs, __provider: undefined } };

interface Operation {
    name: string;
    /** Fault-free steps to the state before the operation. */
    before(): Promise<Record<string, ResourceState>>;
    /** The operation, as the engine calls it; the result is what the engine stores. */
    run(states: Record<string, ResourceState>): Promise<ResourceState | undefined>;
    /** Stores new provider code only: no request to fault. */
    requestFree?: true;
}

const OPERATIONS: Operation[] = [
    {
        name: "Solution create",
        before: async () => ({}),
        run: async () => (await engine("Solution").up(solutionInputs(zips.v1))).state,
    },
    {
        name: "Solution update (upgrade)",
        before: async () => ({ solution: (await engine("Solution").up(solutionInputs(zips.v1))).state }),
        run: async ({ solution }) => (await engine("Solution").up(solutionInputs(zips.v1_1), solution)).state,
    },
    {
        name: "Solution read",
        before: async () => ({ solution: (await engine("Solution").up(solutionInputs(zips.v1))).state }),
        run: async ({ solution }) => engine("Solution").refresh(solution),
    },
    {
        name: "Solution delete",
        before: async () => ({ solution: (await engine("Solution").up(solutionInputs(zips.v1))).state }),
        run: async ({ solution }) => {
            await engine("Solution").destroy(solution);
            return undefined;
        },
    },
    {
        name: "ApplicationUser create",
        before: async () => ({}),
        run: async () => (await engine("ApplicationUser").up(userInputs())).state,
    },
    {
        name: "ApplicationUser update (found disabled)",
        before: async () => {
            const user = (await engine("ApplicationUser").up(userInputs())).state;
            emulator.state.systemUsers.find((u) => u.systemuserid === user.id)!.isdisabled = true;
            return { user: { ...user, outputs: { ...user.outputs, isDisabled: true } } };
        },
        run: async ({ user }) => (await engine("ApplicationUser").up(userInputs(), user)).state,
    },
    {
        name: "ApplicationUser read",
        before: async () => ({ user: (await engine("ApplicationUser").up(userInputs())).state }),
        run: async ({ user }) => engine("ApplicationUser").refresh(user),
    },
    {
        name: "ApplicationUser delete",
        before: async () => ({ user: (await engine("ApplicationUser").up(userInputs())).state }),
        run: async ({ user }) => {
            await engine("ApplicationUser").destroy(user);
            return undefined;
        },
    },
    ...(["create", "update", "read", "delete"] as const).map((op): Operation => ({
        name: `RoleAssignment ${op}${op === "update" ? " (a release)" : ""}`,
        ...(op === "update" ? { requestFree: true as const } : {}),
        before: async (): Promise<Record<string, ResourceState>> => {
            await engine("Solution").up(solutionInputs(zips.v1));
            const user = (await engine("ApplicationUser").up(userInputs())).state;
            return op === "create" ? { user } : { user, link: (await engine("RoleAssignment").up(linkInputs(user.id))).state };
        },
        run: async ({ user, link }) => {
            const ra = engine("RoleAssignment");
            if (op === "create") return (await ra.up(linkInputs(user.id))).state;
            if (op === "update") return (await ra.up({ ...linkInputs(user.id), providerVersion: "9.9.9" }, link)).state;
            if (op === "read") return ra.refresh(link);
            await ra.destroy(link);
            return undefined;
        },
    })),
    ...(["create", "update", "read", "delete"] as const).map((op): Operation => ({
        name: `RolePrivileges ${op}${op === "update" ? " (a privilege dropped)" : ""}`,
        before: async (): Promise<Record<string, ResourceState>> => {
            await engine("Solution").up(solutionInputs(zips.v1));
            return op === "create" ? {} : { grants: (await engine("RolePrivileges").up(grantInputs())).state };
        },
        run: async ({ grants }) => {
            const rp = engine("RolePrivileges");
            if (op === "create") return (await rp.up(grantInputs())).state;
            if (op === "update") {
                const fewer = GUIDE_ROLE_PRIVILEGES.filter((g) => g.name !== "prvAppendToAsyncOperation");
                return (await rp.up(grantInputs(fewer), grants)).state;
            }
            if (op === "read") return rp.refresh(grants);
            await rp.destroy(grants);
            return undefined;
        },
    })),
];

/** A failure must say what failed, without `undefined` or the token. */
function expectClearError(err: unknown): void {
    const message = (err as Error).message;
    expect(message).toMatch(/\w+.{20,}/);
    expect(message).not.toMatch(/undefined|\[object Object\]/);
    expect(message).not.toContain(TOKEN);
}

let scratch: string | undefined;
const summary: string[] = [];
let cases = 0;
let matrixMs = 0;

function reset(to?: EmulatorState): void {
    emulator.reset(to);
    emulator.registerApplication(APP_ID);
}

/** The resource types whose operations a test file puts through the matrix. */
export type MatrixResource = "Solution" | "ApplicationUser" | "RoleAssignment" | "RolePrivileges";

/**
 * Registers the matrix in the calling test file: its own emulator and provider host, every operation of
 * `resources` with each fault at each of its requests, and, with `killedProcess`, a provider process killed between
 * two calls. The matrix is split across files so that jest runs its parts side by side.
 */
export function faultMatrix(resources: readonly MatrixResource[], options: { killedProcess?: boolean } = {}): void {
    beforeAll(async () => {
        const dir = (scratch = fs.mkdtempSync(path.join(os.tmpdir(), "fault-matrix-")));
        const write = (version: string) => {
            const file = path.join(dir, `lead-writer-${version}.zip`);
            fs.writeFileSync(file, buildSolutionZip({ uniqueName: LEAD_WRITER_SOLUTION_UNIQUE_NAME, version, managed: true }));
            return file;
        };
        zips = { v1: write("1.0.0.0"), v1_1: write("1.0.0.1") };
        const report = await runMockProgram(PLAIN_STACK_CONFIG);
        expect(report.error).toBeUndefined();
        providers = providersOf(report);
        // Imports finish with the first request after their start: polling never waits, so request counts are exact.
        emulator = await startEmulator({ importPolls: 0 });
        host = await ProviderHost.start({ DATAVERSE_ENDPOINT: emulator.origin, ...HOST_ENV });
    }, 120_000);

    afterAll(() => stopProviderTest({ host, emulator, scratch }));

    describe.each(OPERATIONS.filter((o) => resources.some((r) => o.name.startsWith(`${r} `))))("$name", (operation) => {
        let start: EmulatorState;
        let states: Record<string, ResourceState>;
        let expected: ReturnType<typeof endState>;
        let expectedResult: ReturnType<typeof comparable>;
        let requestCount = 0;

        beforeAll(async () => {
            reset();
            states = await operation.before();
            start = structuredClone(emulator.state);
            emulator.requests.length = 0;
            expectedResult = comparable(await operation.run(states));
            requestCount = emulator.requests.length;
            expected = endState(emulator.state);
            summary.push(`${operation.name}: ${requestCount} requests`);
        }, 30_000);

        it(operation.requestFree ? "makes no request at all" : "makes its requests fault-free", () => {
            if (operation.requestFree) expect(requestCount).toBe(0);
            else expect(requestCount).toBeGreaterThan(0);
        });

        // A request-free operation has nothing to fault: the test above is all there is to it.
        const itWithFaults = operation.requestFree ? () => undefined : it;
        itWithFaults(
            "converges after one fault at each request",
            async () => {
                const outcomes: string[] = [];
                const started = Date.now();
                for (let k = 1; k <= requestCount; k++) {
                    for (const [label, fault] of Object.entries(FAULTS)) {
                        cases++;
                        reset(start);
                        emulator.injectFault({ path: /./ }, k, fault);
                        let result: ReturnType<typeof comparable>;
                        try {
                            result = comparable(await operation.run(states));
                            outcomes.push(`request ${k} ${label}: ok`);
                        } catch (err) {
                            expectClearError(err);
                            outcomes.push(`request ${k} ${label}: ${(err as Error).message.slice(0, 60)}`);
                            // The engine stored nothing new: the re-run starts from the same state.
                            emulator.clearFaults();
                            result = comparable(await operation.run(states));
                        }
                        const context = `${operation.name}, request ${k} (${emulator.requests[k - 1]?.method} ${emulator.requests[k - 1]?.path.split("?")[0]}), ${label}`;
                        expect({ context, state: endState(emulator.state) }).toEqual({ context, state: expected });
                        if (operation.name.endsWith("create")) {
                            // A new id each run: it must name what the re-run left in Dataverse.
                            const ids = result!.id.split("/");
                            expect({ context, known: ids.map((id) => JSON.stringify(emulator.state).includes(id)) }).toEqual({
                                context,
                                known: ids.map(() => true),
                            });
                        } else {
                            expect({ context, result }).toEqual({ context, result: expectedResult });
                        }
                    }
                }
                expect(host.output).not.toContain(TOKEN);
                matrixMs += Date.now() - started;
                summary.push(`  ${outcomes.filter((o) => !o.endsWith(": ok")).length} of ${outcomes.length} failed first, all converged`);
            },
            60_000,
        );
    });

    if (options.killedProcess) killedProcessTests();

    afterAll(() => {
        // The matrix's size and time, in the test log.
        console.log(`${summary.join("\n")}\n${cases} cases in ${(matrixMs / 1000).toFixed(1)} s`);
    });
}

function killedProcessTests(): void {
    describe("a provider process killed between two calls", () => {
        const stack = async (on: ProviderHost) => {
            const solution = await engine("Solution", on).up(solutionInputs(zips.v1));
            const user = await engine("ApplicationUser", on).up(userInputs());
            const link = await engine("RoleAssignment", on).up(linkInputs(user.state.id));
            const grants = await engine("RolePrivileges", on).up(grantInputs());
            return [solution, user, link, grants].map((r) => r.state);
        };

        it.each([1, 3])(
            "after call %i, a re-run with a new process and no saved state converges",
            async (calls) => {
                reset();
                await stack(host);
                const expectedStack = endState(emulator.state);

                reset();
                const doomed = await ProviderHost.start({ DATAVERSE_ENDPOINT: emulator.origin, ...HOST_ENV });
                await engine("Solution", doomed).up(solutionInputs(zips.v1));
                if (calls >= 2) {
                    const user = await engine("ApplicationUser", doomed).up(userInputs());
                    if (calls >= 3) await engine("RoleAssignment", doomed).up(linkInputs(user.state.id));
                }
                await doomed.stop();

                const states = await stack(host);
                expect(endState(emulator.state)).toEqual(expectedStack);
                expect(states[0].outputs.adopted).toBe(false);
            },
            30_000,
        );
    });
}
