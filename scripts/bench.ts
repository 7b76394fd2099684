/**
 * `npm run bench [-- --readme]`
 *
 * Runs the Dataverse layer the way `pulumi up`, `refresh` and `destroy` run it, and measures what each costs in
 * requests and in round trips. The providers are the serialized `__provider` strings of a mock run of index.ts,
 * loaded by Pulumi's own dynamic-provider host (test/support/providerHost.ts); the engine's order is taken from
 * the mock run's dependencies: a resource starts when the resources it depends on are done, independent ones run
 * at once, and destroy runs the graph backwards. The emulator adds a fixed round trip L to every request.
 *
 * Round trips are counted from the emulator's request log, not from the clock: a request's depth is one more than
 * the deepest request answered before it was sent, and the critical path is the deepest request. This is what the
 * wall time divided by L approaches when L dwarfs the CPU time, and unlike wall time it does not move when other
 * work shares the machine; wall / L is printed beside it. Polls answered "still running" are the import job's own
 * time and are left out of the create's critical path.
 *
 * Writes bench/results.json and bench/results.md; `--readme` also replaces the README's Performance block with
 * the table of this run. Exits 1, naming each goal, when a goal is missed.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { LEAD_WRITER_SOLUTION_UNIQUE_NAME, startEmulator, type Emulator, type RequestLogEntry } from "../test/emulator/server";
import type { Registration } from "../test/support/mockProgram";
import { EngineSimulator, ProviderHost, runMockProgram, type Operation, type ResourceState } from "../test/support/providerHost";
import { buildSolutionZip } from "../test/support/solutionZip";

const ROOT = path.join(__dirname, "..");
const INSTANCE = "https://contoso.crm.dynamics.com";
const API_PATH = "/api/data/v9.2/";
/** The round trips injected; the larger one is where CPU noise matters least. */
const LATENCIES_MS = [20, 100];
/** How long the import job of the whole-stack create runs. */
const CREATE_IMPORT_MS = 1_000;
/** Further import jobs, Solution resource only: how soon the provider notices the end of jobs of several lengths, each ending at another point between two polls. */
const NOTICE_IMPORTS_MS = [100, 350, 700, 1_500, 4_000];
/** The 429 storm: every request in the window is answered 429 with this Retry-After. */
const STORM = { retryAfterSeconds: 1, windowMs: 500 };

const GOALS = {
    createRoundTrips: 6,
    destroyRoundTrips: 4,
    noopRequests: 0,
    refreshRequestsPerResource: 1,
    noticeFloorMs: 250,
    noticeShare: 0.2,
    stormOverheadShare: 0.1,
};

/** Which output of a dependency feeds an input, as components/leadManagement.ts wires them. */
const FED_BY: Record<string, string> = { systemUserId: "systemUserId", solutionVersion: "installedVersion" };

interface Resource {
    /** `Solution`, `ApplicationUser`, … */
    name: string;
    urn: string;
    provider: string;
    inputs: Record<string, unknown>;
    /** Dataverse resources this one waits for. */
    needs: string[];
    /** Input name → URN of the resource whose output feeds it. */
    fed: Record<string, string>;
}

interface Sample {
    wallMs: number;
    requests: RequestLogEntry[];
}

interface ImportTiming {
    /** How long the job ran, from ImportSolutionAsync being carried out to its due time. */
    jobMs: number;
    /** From the job's end to the answer that showed it done reaching the provider. */
    noticeLagMs: number;
    /** Time between the start's answer and the poll that saw the job done. */
    waitMs: number;
    polls: number;
    /** The polls (and reads alongside them) that found the job still running. */
    waiting: Set<RequestLogEntry>;
    /**
     * The poll that saw the job done and the read sent with it, each mapped to the moment the start was answered:
     * had the job taken no time, that is when they would have gone out. Without this, whatever other resources did
     * during the job would count as coming before them.
     */
    seenAsIfAtStart: Map<RequestLogEntry, number>;
}

// -----------------------------------------------------------------------------------------------------------------
// The program's Dataverse resources, as the engine sees them

function dataverseResources(registrations: Registration[]): Resource[] {
    const dynamic = registrations.filter((r) => r.type.startsWith("pulumi-nodejs:dynamic/dataverse:"));
    const urns = new Set(dynamic.map((r) => r.urn));
    return dynamic.map((r) => {
        const { __provider: provider, ...inputs } = r.inputs;
        if (typeof provider !== "string") throw new Error(`${r.urn} has no serialized provider`);
        const fed: Record<string, string> = {};
        for (const [input, sources] of Object.entries(r.propertyDependencies)) {
            const source = sources.find((u) => urns.has(u));
            if (source === undefined) continue;
            if (!(input in FED_BY)) throw new Error(`${r.name}.${input} comes from ${source}; add the output that feeds it to FED_BY`);
            fed[input] = source;
        }
        const needs = [...new Set([...r.dependencies, ...Object.values(r.propertyDependencies).flat()])].filter((u) => urns.has(u));
        return { name: r.type.split(":").pop()!, urn: r.urn, provider, inputs, needs, fed };
    });
}

/** One stack's state and the engine's walk over the resource graph. */
class Stack {
    readonly states = new Map<string, ResourceState>();

    constructor(
        private readonly host: ProviderHost,
        readonly resources: Resource[],
    ) {}

    private engine(r: Resource): EngineSimulator {
        return new EngineSimulator(this.host, r.provider);
    }

    private inputsOf(r: Resource): Record<string, unknown> {
        const inputs = { ...r.inputs };
        for (const [input, urn] of Object.entries(r.fed)) inputs[input] = this.states.get(urn)!.outputs[FED_BY[input]];
        return inputs;
    }

    /** Each resource once the ones it needs are done (forward) or once the ones needing it are gone (backward). */
    private async walk(direction: "forward" | "backward", step: (r: Resource) => Promise<void>): Promise<void> {
        const started = new Map<string, Promise<void>>();
        const before = (r: Resource): Resource[] =>
            direction === "forward"
                ? r.needs.map((u) => this.resources.find((x) => x.urn === u)!)
                : this.resources.filter((x) => x.needs.includes(r.urn));
        const run = (r: Resource): Promise<void> => {
            let promise = started.get(r.urn);
            if (promise === undefined) {
                promise = Promise.all(before(r).map(run)).then(() => step(r));
                started.set(r.urn, promise);
            }
            return promise;
        };
        await Promise.all(this.resources.map(run));
    }

    /** `pulumi up`: the operation the engine chose for each resource. */
    async up(): Promise<Record<string, Operation>> {
        const ops: Record<string, Operation> = {};
        await this.walk("forward", async (r) => {
            const { op, state } = await this.engine(r).up(this.inputsOf(r), this.states.get(r.urn));
            ops[r.name] = op;
            this.states.set(r.urn, state);
        });
        return ops;
    }

    /** `pulumi refresh` of one resource. */
    async refresh(r: Resource): Promise<void> {
        const state = await this.engine(r).refresh(this.states.get(r.urn)!);
        if (state === undefined) throw new Error(`refresh found ${r.name} gone`);
        this.states.set(r.urn, state);
    }

    async destroy(): Promise<void> {
        await this.walk("backward", async (r) => {
            await this.engine(r).destroy(this.states.get(r.urn)!);
            this.states.delete(r.urn);
        });
    }

    /** Loads every provider in the host (the engine's check does this too), so no scenario pays for it. */
    async warmUp(): Promise<void> {
        for (const r of this.resources) await this.engine(r).preview(r.inputs);
    }
}

// -----------------------------------------------------------------------------------------------------------------
// Measuring

async function measure(emulator: Emulator, run: () => Promise<unknown>): Promise<Sample> {
    const mark = emulator.requests.length;
    const started = Date.now();
    await run();
    return { wallMs: Date.now() - started, requests: emulator.requests.slice(mark) };
}

/**
 * Depth of the deepest request: one more than the deepest request answered before it was sent. `sentAt` moves a
 * request's send time back, so that what ran meanwhile does not count as coming before it (see importTiming).
 */
export function criticalPath(
    requests: RequestLogEntry[],
    leaveOut: Set<RequestLogEntry> = new Set(),
    sentAt = new Map<RequestLogEntry, number>(),
): number {
    const counted = requests.filter((r) => r.answered !== undefined && !leaveOut.has(r)).sort((a, b) => a.time - b.time);
    const depths: number[] = [];
    counted.forEach((request, i) => {
        const sent = sentAt.get(request) ?? request.time;
        let deepest = 0;
        for (let j = 0; j < i; j++) if (counted[j].answered! <= sent) deepest = Math.max(deepest, depths[j]);
        depths.push(deepest + 1);
    });
    return Math.max(0, ...depths);
}

const apiPath = (r: RequestLogEntry) => r.path.replace(API_PATH, "");

/** With `--trace`, each request of a scenario on stderr: sent and answered (ms from the first), method, path. */
function trace(title: string, sample: Sample, leftOut: Set<RequestLogEntry> = new Set()): void {
    if (!process.argv.includes("--trace")) return;
    const t0 = sample.requests[0]?.time ?? 0;
    const lines = sample.requests.map(
        (r) =>
            `${String(r.time - t0).padStart(6)} ${String((r.answered ?? Number.NaN) - t0).padStart(6)} ${leftOut.has(r) ? "(job)" : "     "} ${r.status} ${r.method} ${apiPath(r).split("?")[0]}`,
    );
    process.stderr.write(`${title}\n${lines.join("\n")}\n`);
}

/** When the import in these requests ran, and when the provider saw it done. */
function importTiming(emulator: Emulator, requests: RequestLogEntry[]): ImportTiming {
    const start = requests.find((r) => r.method === "POST" && apiPath(r).startsWith("ImportSolutionAsync"));
    // Each emulator sees one import: the create's.
    const op = emulator.state.asyncOperations.find((o) => o.name === "ImportSolutionAsync");
    if (!start || !op || op.dueAt === undefined) throw new Error("no timed import job in this run");
    const polls = requests.filter((r) => r.method === "GET" && apiPath(r).startsWith(`asyncoperations(${op.asyncoperationid})`));
    const seen = polls.find((r) => r.carriedOut! >= op.dueAt!);
    if (!seen || seen.answered === undefined) throw new Error("no poll saw the import job done");
    // The job's own time: polls that found it running, and the solutions reads that went out with them.
    const waiting = new Set(
        requests.filter(
            (r) =>
                r.time >= start.answered! &&
                r.time < seen.time &&
                r.method === "GET" &&
                (polls.includes(r) || apiPath(r).startsWith("solutions?")),
        ),
    );
    const seenTick = requests.filter(
        (r) => r === seen || (r.method === "GET" && apiPath(r).startsWith("solutions?") && r.time >= seen.time && r.time < seen.answered!),
    );
    return {
        seenAsIfAtStart: new Map(seenTick.map((r) => [r, start.answered!])),
        jobMs: op.dueAt - start.carriedOut!,
        noticeLagMs: seen.answered - op.dueAt,
        waitMs: seen.time - start.answered!,
        polls: polls.filter((r) => r.carriedOut! <= seen.carriedOut!).length,
        waiting,
    };
}

const noticeLimitMs = (jobMs: number) => Math.round(Math.max(GOALS.noticeFloorMs, GOALS.noticeShare * jobMs));

interface LatencyRun {
    latencyMs: number;
    create: {
        requests: number;
        roundTrips: number;
        wallMs: number;
        wallRoundTripsBesideImport: number;
        import: Omit<ImportTiming, "waiting" | "seenAsIfAtStart">;
    };
    noop: { requests: number; wallMs: number };
    refresh: { requests: number; requestsByResource: Record<string, number>; roundTrips: number; wallMs: number };
    storm: {
        calmWallMs: number;
        stormWallMs: number;
        addedMs: number;
        retryAfterAskedMs: number;
        throttledRoundTrips: number;
        beyondMs: number;
        overheadShare: number;
        requests: number;
        /** The longest time a throttled request waited beyond its Retry-After before it was sent again. */
        longestRetryWaitBeyondMs: number;
    };
    destroy: { requests: number; roundTrips: number; wallMs: number };
}

async function withEmulatorAndHost<T>(
    options: { latencyMs: number; importDurationMs: number },
    applicationIds: string[],
    run: (emulator: Emulator, host: ProviderHost) => Promise<T>,
): Promise<T> {
    const emulator = await startEmulator(options);
    for (const id of applicationIds) emulator.registerApplication(id);
    const host = await ProviderHost.start({ DATAVERSE_ENDPOINT: emulator.origin, DATAVERSE_TOKEN: "bench-token" });
    try {
        return await run(emulator, host);
    } catch (err) {
        throw new Error(`${(err as Error).message}\nprovider host output:\n${host.output}`, { cause: err });
    } finally {
        await host.stop();
        await emulator.close();
    }
}

function expectOps(what: string, ops: Record<string, Operation>, expected: Operation): void {
    const wrong = Object.entries(ops).filter(([, op]) => op !== expected);
    if (wrong.length > 0) throw new Error(`${what}: expected every resource to ${expected}, got ${JSON.stringify(ops)}`);
}

async function benchAtLatency(resources: Resource[], applicationIds: string[], latencyMs: number): Promise<LatencyRun> {
    return withEmulatorAndHost({ latencyMs, importDurationMs: CREATE_IMPORT_MS }, applicationIds, async (emulator, host) => {
        const stack = new Stack(host, resources);
        await stack.warmUp();

        let ops: Record<string, Operation> = {};
        const create = await measure(emulator, async () => (ops = await stack.up()));
        expectOps("fresh create", ops, "create");
        const { waiting, seenAsIfAtStart, ...timing } = importTiming(emulator, create.requests);
        trace(`create at L = ${latencyMs} ms`, create, waiting);

        const noop = await measure(emulator, async () => (ops = await stack.up()));
        expectOps("re-run", ops, "same");

        // One resource at a time to see what each read costs, then all at once (as refresh runs them) for the path.
        const requestsByResource: Record<string, number> = {};
        for (const r of resources) requestsByResource[r.name] = (await measure(emulator, () => stack.refresh(r))).requests.length;
        const refresh = await measure(emulator, () => Promise.all(resources.map((r) => stack.refresh(r))));

        emulator.injectFault({ path: /./ }, "every", { kind: "status", status: 429, retryAfter: String(STORM.retryAfterSeconds) });
        const calmAfter = setTimeout(() => emulator.clearFaults(), STORM.windowMs);
        const storm = await measure(emulator, () => Promise.all(resources.map((r) => stack.refresh(r))));
        clearTimeout(calmAfter);
        emulator.clearFaults();
        // The path waited Retry-After once per 429 its longest chain of one request got.
        const throttledPerRequest = new Map<string, number>();
        for (const r of storm.requests.filter((q) => q.status === 429)) {
            throttledPerRequest.set(`${r.method} ${r.path}`, (throttledPerRequest.get(`${r.method} ${r.path}`) ?? 0) + 1);
        }
        const throttledRoundTrips = Math.max(0, ...throttledPerRequest.values());
        const retryAfterAskedMs = throttledRoundTrips * STORM.retryAfterSeconds * 1000;
        const addedMs = storm.wallMs - refresh.wallMs;
        // The client's own part: from each 429 answer leaving to the retry of that request arriving, beyond Retry-After.
        const retryWaitsBeyondMs = storm.requests
            .filter((q) => q.status === 429)
            .map((q) => {
                const retry = storm.requests.find((r) => r.time > q.time && r.method === q.method && r.path === q.path);
                return retry ? retry.time - q.answered! - STORM.retryAfterSeconds * 1000 : Number.NaN;
            });
        const beyondMs = addedMs - retryAfterAskedMs - throttledRoundTrips * latencyMs;

        const destroy = await measure(emulator, () => stack.destroy());
        trace(`destroy at L = ${latencyMs} ms`, destroy);
        if (emulator.state.solutions.some((s) => s.uniquename === LEAD_WRITER_SOLUTION_UNIQUE_NAME)) {
            throw new Error("destroy left the solution installed");
        }

        return {
            latencyMs,
            create: {
                requests: create.requests.length,
                roundTrips: criticalPath(create.requests, waiting, seenAsIfAtStart),
                wallMs: create.wallMs,
                wallRoundTripsBesideImport: (create.wallMs - timing.waitMs) / latencyMs,
                import: timing,
            },
            noop: { requests: noop.requests.length, wallMs: noop.wallMs },
            refresh: {
                requests: refresh.requests.length,
                requestsByResource,
                roundTrips: criticalPath(refresh.requests),
                wallMs: refresh.wallMs,
            },
            storm: {
                calmWallMs: refresh.wallMs,
                stormWallMs: storm.wallMs,
                addedMs,
                retryAfterAskedMs,
                throttledRoundTrips,
                beyondMs,
                overheadShare: retryAfterAskedMs > 0 ? beyondMs / retryAfterAskedMs : Number.NaN,
                requests: storm.requests.length,
                longestRetryWaitBeyondMs: Math.max(...retryWaitsBeyondMs),
            },
            destroy: { requests: destroy.requests.length, roundTrips: criticalPath(destroy.requests), wallMs: destroy.wallMs },
        };
    });
}

/** The Solution resource alone, with a job of the given length: how soon its end is noticed. */
async function benchNotice(
    resources: Resource[],
    latencyMs: number,
    jobMs: number,
): Promise<Omit<ImportTiming, "waiting" | "seenAsIfAtStart">> {
    const solution = resources.filter((r) => r.name === "Solution");
    return withEmulatorAndHost({ latencyMs, importDurationMs: jobMs }, [], async (emulator, host) => {
        const stack = new Stack(host, solution);
        await stack.warmUp();
        const create = await measure(emulator, () => stack.up());
        const timing = importTiming(emulator, create.requests);
        await stack.destroy();
        return { jobMs: timing.jobMs, noticeLagMs: timing.noticeLagMs, waitMs: timing.waitMs, polls: timing.polls };
    });
}

// -----------------------------------------------------------------------------------------------------------------
// Goals and report

interface GoalCheck {
    goal: string;
    measured: string;
    met: boolean;
}

function checkGoals(
    runs: LatencyRun[],
    notices: { latencyMs: number; timing: Omit<ImportTiming, "waiting" | "seenAsIfAtStart"> }[],
): GoalCheck[] {
    const checks: GoalCheck[] = [];
    // Round trips are judged where L dwarfs the CPU time: at a small L on a busy machine, the host's own work
    // between two requests can make requests that went out together look sequential.
    const judgedLatency = Math.max(...runs.map((r) => r.latencyMs));
    for (const run of runs) {
        const at = `L = ${run.latencyMs} ms`;
        if (run.latencyMs === judgedLatency)
            checks.push({
                goal: `fresh create ≤ ${GOALS.createRoundTrips} round trips besides the import job (${at})`,
                measured: `${run.create.roundTrips}`,
                met: run.create.roundTrips <= GOALS.createRoundTrips,
            });
        if (run.latencyMs === judgedLatency)
            checks.push({
                goal: `destroy ≤ ${GOALS.destroyRoundTrips} round trips (${at})`,
                measured: `${run.destroy.roundTrips}`,
                met: run.destroy.roundTrips <= GOALS.destroyRoundTrips,
            });
        checks.push({
            goal: `no-op re-run sends ${GOALS.noopRequests} requests (${at})`,
            measured: `${run.noop.requests}`,
            met: run.noop.requests <= GOALS.noopRequests,
        });
        const worst = Math.max(...Object.values(run.refresh.requestsByResource));
        checks.push({
            goal: `refresh ≤ ${GOALS.refreshRequestsPerResource} request per resource (${at})`,
            measured: Object.entries(run.refresh.requestsByResource)
                .map(([name, n]) => `${name} ${n}`)
                .join(", "),
            met: worst <= GOALS.refreshRequestsPerResource,
        });
        checks.push({
            goal: `a 429 storm adds ≤ ${GOALS.stormOverheadShare * 100} % over the Retry-After asked (${at})`,
            measured: `${(run.storm.overheadShare * 100).toFixed(1)} % (${run.storm.beyondMs} ms beyond ${run.storm.retryAfterAskedMs} ms)`,
            met: run.storm.overheadShare <= GOALS.stormOverheadShare,
        });
    }
    for (const { latencyMs, timing } of [...runs.map((r) => ({ latencyMs: r.latencyMs, timing: r.create.import })), ...notices]) {
        const limit = noticeLimitMs(timing.jobMs);
        checks.push({
            goal: `a ${timing.jobMs} ms import noticed within ${limit} ms (L = ${latencyMs} ms)`,
            measured: `${timing.noticeLagMs} ms`,
            met: timing.noticeLagMs <= limit,
        });
    }
    return checks;
}

function markdownTable(
    runs: LatencyRun[],
    notices: { latencyMs: number; timing: Omit<ImportTiming, "waiting" | "seenAsIfAtStart"> }[],
): string {
    const header = [
        "Scenario",
        ...runs.map((r) => `requests (L = ${r.latencyMs} ms)`),
        ...runs.map((r) => `round trips (wall / L) at ${r.latencyMs} ms`),
    ];
    const cell = (rt: number, wallRt: number) => `${rt} (${wallRt.toFixed(1)})`;
    const rows: string[][] = [
        [
            "fresh create (besides the import job)",
            ...runs.map((r) => `${r.create.requests}`),
            ...runs.map((r) => cell(r.create.roundTrips, r.create.wallRoundTripsBesideImport)),
        ],
        ["no-op re-run", ...runs.map((r) => `${r.noop.requests}`), ...runs.map((r) => `0 (${(r.noop.wallMs / r.latencyMs).toFixed(1)})`)],
        [
            "refresh (4 resources)",
            ...runs.map((r) => `${r.refresh.requests}`),
            ...runs.map((r) => cell(r.refresh.roundTrips, r.refresh.wallMs / r.latencyMs)),
        ],
        [
            "destroy",
            ...runs.map((r) => `${r.destroy.requests}`),
            ...runs.map((r) => cell(r.destroy.roundTrips, r.destroy.wallMs / r.latencyMs)),
        ],
    ];
    const table = [header, header.map(() => "---"), ...rows].map((r) => `| ${r.join(" | ")} |`).join("\n");
    const storm = runs
        .map(
            (r) =>
                `| ${r.latencyMs} ms | ${r.storm.calmWallMs} ms | ${r.storm.stormWallMs} ms | ${r.storm.retryAfterAskedMs} ms | ${r.storm.throttledRoundTrips} | ${r.storm.beyondMs} ms (${(r.storm.overheadShare * 100).toFixed(1)} %) | ${r.storm.longestRetryWaitBeyondMs} ms |`,
        )
        .join("\n");
    const imports = [
        ...runs.map((r) => ({ latencyMs: r.latencyMs, timing: r.create.import })),
        ...notices.map((n) => ({ latencyMs: n.latencyMs, timing: n.timing })),
    ]
        .map(
            ({ latencyMs, timing }) =>
                `| ${timing.jobMs} ms | ${latencyMs} ms | ${timing.polls} | ${timing.noticeLagMs} ms | ${noticeLimitMs(timing.jobMs)} ms |`,
        )
        .join("\n");
    return [
        table,
        "",
        "| 429 storm on refresh, L | calm | storm | Retry-After asked | 429 round trips | beyond Retry-After and the 429 round trips | longest client wait beyond Retry-After |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        storm,
        "",
        "| Import job | L | polls | noticed after its end | goal |",
        "| --- | --- | --- | --- | --- |",
        imports,
    ].join("\n");
}

/** Writes a file the way `npm run lint` wants it: through Prettier with the project's settings. */
async function writeFormatted(file: string, text: string): Promise<void> {
    // Loaded here, not at the top: Prettier's module cannot load under jest, which imports this file for its tests.
    const prettier = await import("prettier");
    const options = (await prettier.resolveConfig(file)) ?? {};
    fs.writeFileSync(file, await prettier.format(text, { ...options, filepath: file }));
}

function replaceReadmeBlock(block: string): void {
    const readme = path.join(ROOT, "README.md");
    const text = fs.readFileSync(readme, "utf8");
    const start = "<!-- bench:start (generated by npm run bench -- --readme) -->";
    const end = "<!-- bench:end -->";
    const from = text.indexOf(start);
    const to = text.indexOf(end);
    if (from < 0 || to < from) throw new Error(`README.md has no ${start} … ${end} block`);
    // README.md is kept out of Prettier (.prettierignore): only the block changes.
    fs.writeFileSync(readme, `${text.slice(0, from + start.length)}\n${block}\n${text.slice(to)}`);
}

async function main(): Promise<void> {
    const writeReadme = process.argv.includes("--readme");
    const began = Date.now();
    const loadBefore = os.loadavg();

    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bench-"));
    const zip = path.join(dir, "lead-writer.zip");
    fs.writeFileSync(zip, buildSolutionZip({ uniqueName: LEAD_WRITER_SOLUTION_UNIQUE_NAME, version: "1.0.0.0", managed: true }));
    const report = await runMockProgram({ instanceUrl: INSTANCE, contactEmails: "leads@contoso.com", solutionSource: zip });
    if (report.error) throw new Error(`the mock run of index.ts failed: ${report.error}`);
    const resources = dataverseResources(report.registrations);
    // The app's client id comes from the Azure AD resources, mocked: the emulator must know that app.
    const applicationIds = resources.flatMap((r) => (typeof r.inputs.applicationId === "string" ? [r.inputs.applicationId] : []));

    const runs: LatencyRun[] = [];
    for (const latencyMs of LATENCIES_MS) {
        process.stderr.write(`bench: L = ${latencyMs} ms …\n`);
        runs.push(await benchAtLatency(resources, applicationIds, latencyMs));
    }
    const noticeLatency = Math.max(...LATENCIES_MS);
    const notices: { latencyMs: number; timing: Omit<ImportTiming, "waiting" | "seenAsIfAtStart"> }[] = [];
    for (const jobMs of NOTICE_IMPORTS_MS) {
        process.stderr.write(`bench: a ${jobMs} ms import at L = ${noticeLatency} ms …\n`);
        notices.push({ latencyMs: noticeLatency, timing: await benchNotice(resources, noticeLatency, jobMs) });
    }
    fs.rmSync(dir, { recursive: true, force: true });

    const goals = checkGoals(runs, notices);
    const loadAfter = os.loadavg();
    const machine = {
        cpus: os.cpus().length,
        cpuModel: os.cpus()[0]?.model ?? "unknown",
        node: process.version,
        loadAverage1mBefore: Number(loadBefore[0].toFixed(2)),
        loadAverage1mAfter: Number(loadAfter[0].toFixed(2)),
    };
    const results = {
        date: new Date().toISOString(),
        durationSeconds: Math.round((Date.now() - began) / 1000),
        machine,
        settings: { latenciesMs: LATENCIES_MS, createImportMs: CREATE_IMPORT_MS, noticeImportsMs: NOTICE_IMPORTS_MS, storm: STORM },
        runs,
        notices,
        goals,
    };
    const table = markdownTable(runs, notices);
    const summary = [
        `Measured ${results.date.slice(0, 16).replace("T", " ")} UTC on ${machine.cpus} cores (${machine.cpuModel}), Node ${machine.node}, load average ${machine.loadAverage1mBefore} → ${machine.loadAverage1mAfter}; the run took ${results.durationSeconds} s.`,
        "",
        table,
        "",
        ...goals.map((g) => `- ${g.met ? "met" : "**missed**"}: ${g.goal} — ${g.measured}`),
    ].join("\n");

    fs.mkdirSync(path.join(ROOT, "bench"), { recursive: true });
    await writeFormatted(path.join(ROOT, "bench", "results.json"), JSON.stringify(results));
    await writeFormatted(path.join(ROOT, "bench", "results.md"), summary);
    if (writeReadme) replaceReadmeBlock(summary);
    console.log(summary);

    const missed = goals.filter((g) => !g.met);
    if (missed.length > 0) {
        console.error(`\n${missed.length} goal(s) missed:\n${missed.map((g) => `  ${g.goal}: ${g.measured}`).join("\n")}`);
        process.exitCode = 1;
    }
}

if (require.main === module) {
    main().catch((err: unknown) => {
        console.error(err);
        process.exit(2);
    });
}
