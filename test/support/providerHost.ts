import { ChildProcess, execFile, spawn } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { isDeepStrictEqual, promisify } from "util";
import * as grpc from "@grpc/grpc-js";
import { ResourceProviderClient } from "@pulumi/pulumi/proto/provider_grpc_pb";
import * as providerProto from "@pulumi/pulumi/proto/provider_pb";
import { BinaryReader, BinaryWriter } from "google-protobuf";
import { Struct } from "google-protobuf/google/protobuf/struct_pb";
import type { MockProgramReport, MockProgramSpec } from "./mockProgram";
import { MOCK_PROGRAM_SOCKET_VARIABLE, mockProgramCommand, requestMockRun } from "./mockProgramServer";

const ROOT = path.join(__dirname, "..", "..");

/**
 * The simulated engine's protobuf strings go through Node's native UTF-8 instead of google-protobuf's JavaScript
 * loop. The real engine is Go, with native protobuf; here every call carries the serialized provider (50–70 KB) in
 * both directions, and the loop made the simulated engine, not the provider host, most of a provider test's CPU.
 * The bytes are the same (a string and bytes are both length-delimited UTF-8 on the wire); only this process's
 * copy of google-protobuf is changed: the provider host runs Pulumi's own, untouched.
 */
function encodeStringsNatively(): void {
    BinaryWriter.prototype.writeString = function (this: BinaryWriter, field: number, value?: string): void {
        if (value !== undefined && value !== null) this.writeBytes(field, Buffer.from(value, "utf8"));
    };
    BinaryReader.prototype.readString = function (this: BinaryReader): string {
        const bytes = this.readBytes();
        return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8");
    };
}
encodeStringsNatively();
/** Pulumi's own dynamic-provider host, the program the CLI starts for `pulumi-nodejs:dynamic:*` resources. */
const DYNAMIC_PROVIDER_HOST = path.join(
    path.dirname(require.resolve("@pulumi/pulumi/package.json")),
    "cmd",
    "dynamic-provider",
    "index.js",
);
/** What the engine sends for a value a preview does not know yet. */
export const UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";

/** A mock run's report, with what the program printed. */
export type MockProgramRun = MockProgramReport;

/**
 * Runs index.ts under mocks in a ts-node process (see mockProgram.ts) and returns its report, with what the program
 * printed (without an engine, `pulumi.log` writes to the console). `secretKeys` are the config keys stored as secrets.
 *
 * Under jest the run's mock program server (see mockProgramServer.ts) runs each spec once per test run for every
 * file and worker that asks for it: the program is deterministic for a spec, and each run costs a second of CPU.
 * Elsewhere (e.g. `npm run docs:preview`) a process of its own runs the spec.
 */
export async function runMockProgram(
    config: Record<string, string>,
    preview = false,
    secretKeys: string[] = [],
    mockOutputs: Record<string, Record<string, unknown>> = {},
    options: Pick<MockProgramSpec, "freshModules"> = {},
): Promise<MockProgramRun> {
    const spec: MockProgramSpec = { config, preview, secretKeys, mockOutputs, ...options };
    const socket = process.env[MOCK_PROGRAM_SOCKET_VARIABLE];
    return socket ? requestMockRun(socket, spec) : spawnMockProgram(spec);
}

async function spawnMockProgram(spec: MockProgramSpec): Promise<MockProgramRun> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mock-program-"));
    const specPath = path.join(dir, "spec.json");
    const reportPath = path.join(dir, "report.json");
    try {
        fs.writeFileSync(specPath, JSON.stringify(spec));
        const command = mockProgramCommand(specPath, reportPath);
        await promisify(execFile)(command.file, command.args, { cwd: ROOT, env: command.env });
        return JSON.parse(fs.readFileSync(reportPath, "utf8")) as MockProgramReport;
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
}

/**
 * The plainest stack (instance and contact only, the default solution source). The providers' serialized code does
 * not depend on the config, so files that need only the providers run the program with this config and share one run.
 */
export const PLAIN_STACK_CONFIG: Readonly<Record<string, string>> = {
    instanceUrl: "https://contoso.crm.dynamics.com",
    contactEmails: "leads@contoso.com",
};

/** The serialized `__provider` of each dynamic resource type in a mock run, keyed by type token. */
export function providersOf(report: MockProgramReport): Map<string, string> {
    const providers = new Map<string, string>();
    for (const registration of report.registrations) {
        const provider = registration.inputs.__provider;
        if (typeof provider === "string") providers.set(registration.type, provider);
    }
    return providers;
}

/** A failure the host reported: its gRPC status message, which is what the engine shows the user. */
export class ProviderCallError extends Error {
    constructor(message: string) {
        super(message);
        this.message = message;
        this.name = "ProviderCallError";
    }
}

type Props = Record<string, unknown>;
/** What a dynamic provider's method returned, as it reads after crossing the host and the engine. */
export interface CheckResult {
    inputs?: Props;
    failures?: { property: string; reason: string }[];
}
export interface DiffResult {
    /** undefined: the provider did not say (DIFF_UNKNOWN), and the engine compares the inputs itself. */
    changes?: boolean;
    replaces: string[];
    /** Present only when true: protobuf does not tell false from left out. */
    deleteBeforeReplace?: boolean;
}

const URN = "urn:pulumi:test::lead-management::pulumi-nodejs:dynamic:Resource::resource";

/**
 * The host gets the engine's address as its argument, as the CLI starts it, but never connects to it: a dynamic
 * provider is not attached to the engine's log (pulumi/pulumi#6065), so `pulumi.log` from a provider prints to the
 * host's console. No engine needs to listen there.
 */
const ENGINE_ADDRESS = "127.0.0.1:1";

/** The props the engine sends always carry the serialized provider; the host loads the provider from there. */
function toStruct(props: Props, providerString: string): Struct {
    // The engine moves values as protobuf Structs: JSON is the same model (no undefined, no functions).
    const plain = JSON.parse(JSON.stringify({ __provider: providerString, ...props })) as Record<string, never>;
    return Struct.fromJavaScript(plain);
}

function fromStruct(struct: Struct | undefined): Props | undefined {
    return struct === undefined ? undefined : (struct.toJavaScript() as Props);
}

/**
 * Pulumi's own dynamic-provider host (`@pulumi/pulumi/cmd/dynamic-provider`) in its own process, started as the CLI
 * starts it and driven over its gRPC interface with the stubs that ship in `@pulumi/pulumi/proto`.
 */
export class ProviderHost {
    /** Everything the host printed after its port: provider logs (`pulumi.log` has no engine here) and its error lines. */
    output = "";
    private readonly exited: Promise<void>;
    private readonly listening: Promise<number>;
    private client: ResourceProviderClient | undefined;

    private constructor(private readonly child: ChildProcess) {
        this.exited = new Promise((resolve) => child.once("exit", () => resolve()));
        this.listening = new Promise((resolve, reject) => {
            let firstLine = "";
            const onData = (chunk: Buffer): void => {
                if (this.client !== undefined || firstLine.includes("\n")) {
                    this.output += chunk.toString();
                    return;
                }
                firstLine += chunk.toString();
                const newline = firstLine.indexOf("\n");
                if (newline < 0) return;
                this.output += firstLine.slice(newline + 1);
                resolve(Number(firstLine.slice(0, newline).trim()));
            };
            child.stdout?.on("data", onData);
            void this.exited.then(() => reject(new Error(`the provider host exited before listening: ${this.output}`)));
        });
        child.stderr?.on("data", (chunk: Buffer) => {
            this.output += chunk.toString();
        });
    }

    /** Starts the host with its environment fixed before it starts, as a real provider process has it. */
    static async start(env: Record<string, string>): Promise<ProviderHost> {
        const child = spawn(process.execPath, [DYNAMIC_PROVIDER_HOST, ENGINE_ADDRESS], {
            cwd: ROOT,
            env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...env },
            stdio: ["ignore", "pipe", "pipe"],
        });
        const host = new ProviderHost(child);
        const port = await host.listening;
        host.client = new ResourceProviderClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
        // The engine configures every provider before its first resource call.
        const configure = new providerProto.ConfigureRequest();
        configure.setArgs(Struct.fromJavaScript({}));
        configure.setAcceptsecrets(true);
        configure.setAcceptresources(true);
        const configured = await host.rpc<providerProto.ConfigureResponse>((client, done) => client.configure(configure, done));
        // The dynamic-provider host takes no secrets, so the engine sends secret values to it in plain form.
        if (configured.getAcceptsecrets()) throw new Error("the dynamic-provider host unexpectedly accepts secrets");
        return host;
    }

    private rpc<T>(
        invoke: (client: ResourceProviderClient, done: (err: grpc.ServiceError | null, response: T) => void) => void,
    ): Promise<T> {
        const client = this.client;
        if (client === undefined) return Promise.reject(new Error("the provider host is not listening"));
        return new Promise<T>((resolve, reject) => {
            invoke(client, (err, response) => {
                if (!err) {
                    resolve(response);
                    return;
                }
                if (err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.CANCELLED) {
                    // A dropped connection to a loopback host means its process is going away: report that.
                    void this.exited.then(() => reject(new Error("provider host exited")));
                    return;
                }
                reject(new ProviderCallError(err.details || err.message));
            });
        });
    }

    /**
     * One provider method through the host's gRPC interface, with the dynamic-provider signature
     * (`check(olds, news)`, `diff(id, olds, news)`, `create(inputs)`, `read(id, props)`, `update(id, olds, news)`,
     * `delete(id, props)`). Props without a `__provider` get `providerString`.
     */
    async call<T>(providerString: string, method: string, ...args: unknown[]): Promise<T> {
        const props = (i: number): Struct => toStruct((args[i] ?? {}) as Props, providerString);
        const id = (i: number): string => String(args[i]);
        switch (method) {
            case "check": {
                const request = new providerProto.CheckRequest();
                request.setUrn(URN);
                request.setOlds(props(0));
                request.setNews(props(1));
                const response = await this.rpc<providerProto.CheckResponse>((c, done) => c.check(request, done));
                const failures = response.getFailuresList().map((f) => ({ property: f.getProperty(), reason: f.getReason() }));
                return { inputs: fromStruct(response.getInputs()), failures } satisfies CheckResult as T;
            }
            case "diff": {
                const request = new providerProto.DiffRequest();
                request.setUrn(URN);
                request.setId(id(0));
                request.setOlds(props(1));
                request.setNews(props(2));
                const response = await this.rpc<providerProto.DiffResponse>((c, done) => c.diff(request, done));
                const kinds = providerProto.DiffResponse.DiffChanges;
                const changes = response.getChanges();
                const result: DiffResult = {
                    changes: changes === kinds.DIFF_SOME ? true : changes === kinds.DIFF_NONE ? false : undefined,
                    replaces: response.getReplacesList(),
                };
                if (response.getDeletebeforereplace()) result.deleteBeforeReplace = true;
                return result as T;
            }
            case "create": {
                const request = new providerProto.CreateRequest();
                request.setUrn(URN);
                request.setProperties(props(0));
                const response = await this.rpc<providerProto.CreateResponse>((c, done) => c.create(request, done));
                return { id: response.getId(), outs: fromStruct(response.getProperties()) } as T;
            }
            case "read": {
                const request = new providerProto.ReadRequest();
                request.setUrn(URN);
                request.setId(id(0));
                request.setProperties(props(1));
                const response = await this.rpc<providerProto.ReadResponse>((c, done) => c.read(request, done));
                // An empty id is how a provider says the resource is gone.
                return {
                    id: response.getId() || undefined,
                    props: fromStruct(response.getProperties()),
                    inputs: fromStruct(response.getInputs()),
                } as T;
            }
            case "update": {
                const request = new providerProto.UpdateRequest();
                request.setUrn(URN);
                request.setId(id(0));
                request.setOlds(props(1));
                request.setNews(props(2));
                const response = await this.rpc<providerProto.UpdateResponse>((c, done) => c.update(request, done));
                return { outs: fromStruct(response.getProperties()) } as T;
            }
            case "delete": {
                const request = new providerProto.DeleteRequest();
                request.setUrn(URN);
                request.setId(id(0));
                request.setProperties(props(1));
                await this.rpc((c, done) => c.delete(request, done));
                return undefined as T;
            }
            default:
                throw new Error(`the dynamic-provider host has no ${method} call`);
        }
    }

    async stop(): Promise<void> {
        this.client?.close();
        if (this.child.exitCode !== null || this.child.signalCode !== null) return;
        this.child.kill();
        await this.exited;
    }
}

/** Stops what a provider test file started, each part if it got that far: its host, its emulator, its scratch folder. */
export async function stopProviderTest(parts: {
    host?: ProviderHost;
    emulator?: { close(): Promise<void> };
    scratch?: string;
}): Promise<void> {
    await parts.host?.stop();
    await parts.emulator?.close();
    if (parts.scratch) fs.rmSync(parts.scratch, { recursive: true, force: true });
}

/** A resource as the engine keeps it in state. */
export interface ResourceState {
    id: string;
    inputs: Record<string, unknown>;
    outputs: Record<string, unknown>;
}

export type Operation = "create" | "update" | "replace" | "same";

/** What a preview shows for one resource, and the outputs its dependents see during that preview. */
export interface PreviewResult {
    op: Operation;
    replaces: string[];
    /** The id dependents see: unknown for a create or replace. */
    id: string;
    /**
     * The outputs dependents see: the stored ones when nothing changes; otherwise every output is unknown, since a
     * provider without preview support is not asked what an update or create will produce.
     */
    outputs: Record<string, unknown>;
}

/** Drives one serialized provider through the engine's sequence of calls for preview, up, refresh and destroy. */
export class EngineSimulator {
    constructor(
        private readonly host: ProviderHost,
        private readonly provider: string,
    ) {}

    private withProvider(props: Record<string, unknown>): Record<string, unknown> {
        return { ...props, __provider: this.provider };
    }

    private async check(news: Record<string, unknown>, prior?: ResourceState): Promise<Record<string, unknown>> {
        const result = await this.host.call<CheckResult>(this.provider, "check", prior ? prior.inputs : {}, this.withProvider(news));
        if (result.failures && result.failures.length > 0) {
            throw new ProviderCallError(`check failed: ${result.failures.map((f) => f.reason).join("; ")}`);
        }
        return { ...(result.inputs ?? news), __provider: this.provider };
    }

    /** The engine's step for an existing resource: the provider's diff, or its own comparison of inputs when the provider does not say. */
    private async diff(prior: ResourceState, inputs: Record<string, unknown>): Promise<{ op: Operation; diff: DiffResult }> {
        const diff = await this.host.call<DiffResult>(this.provider, "diff", prior.id, prior.outputs, inputs);
        if (diff.replaces.length > 0) return { op: "replace", diff };
        const changed = diff.changes ?? !isDeepStrictEqual(prior.inputs, inputs);
        return { op: changed ? "update" : "same", diff };
    }

    /** `pulumi preview` for one resource: check and diff only. */
    async preview(news: Record<string, unknown>, prior?: ResourceState): Promise<{ op: Operation; replaces: string[] }> {
        const { op, replaces } = await this.plan(news, prior);
        return { op, replaces };
    }

    /**
     * `preview`, plus the id and outputs this resource's dependents see during that preview. Put them (or `UNKNOWN`)
     * into a dependent's inputs to see what its diff makes of values the preview does not know yet.
     */
    async plan(news: Record<string, unknown>, prior?: ResourceState): Promise<PreviewResult> {
        const inputs = await this.check(news, prior);
        const unknownOutputs = (): Record<string, unknown> =>
            Object.fromEntries(
                [...new Set([...Object.keys(prior?.outputs ?? {}), ...Object.keys(inputs)])]
                    .filter((key) => key !== "__provider")
                    .map((key) => [key, UNKNOWN]),
            );
        if (!prior) return { op: "create", replaces: [], id: UNKNOWN, outputs: unknownOutputs() };
        const { op, diff } = await this.diff(prior, inputs);
        if (op === "same") return { op, replaces: [], id: prior.id, outputs: prior.outputs };
        return { op, replaces: diff.replaces, id: op === "replace" ? UNKNOWN : prior.id, outputs: unknownOutputs() };
    }

    /** `pulumi up` for one resource. */
    async up(news: Record<string, unknown>, prior?: ResourceState): Promise<{ op: Operation; state: ResourceState }> {
        const inputs = await this.check(news, prior);
        const create = async () => {
            const result = await this.host.call<{ id: string; outs?: Record<string, unknown> }>(this.provider, "create", inputs);
            return { id: result.id, inputs, outputs: this.withProvider(result.outs ?? {}) };
        };
        if (!prior) return { op: "create", state: await create() };
        const { op, diff } = await this.diff(prior, inputs);
        if (op === "replace") {
            if (diff.deleteBeforeReplace) {
                await this.destroy(prior);
                return { op: "replace", state: await create() };
            }
            const state = await create();
            await this.destroy(prior);
            return { op: "replace", state };
        }
        if (op === "update") {
            const result = await this.host.call<{ outs?: Record<string, unknown> }>(
                this.provider,
                "update",
                prior.id,
                prior.outputs,
                inputs,
            );
            return { op: "update", state: { id: prior.id, inputs, outputs: this.withProvider(result?.outs ?? {}) } };
        }
        return { op: "same", state: prior };
    }

    /** `pulumi refresh`: undefined when the provider reports the resource gone. */
    async refresh(state: ResourceState): Promise<ResourceState | undefined> {
        const result = await this.host.call<{ id?: string; props?: Record<string, unknown>; inputs?: Record<string, unknown> }>(
            this.provider,
            "read",
            state.id,
            state.outputs,
        );
        if (!result.id) return undefined;
        return { id: result.id, inputs: result.inputs ?? state.inputs, outputs: this.withProvider(result.props ?? {}) };
    }

    /** `pulumi destroy`: runs the provider stored in the state, not the current one. */
    async destroy(state: ResourceState): Promise<void> {
        const stored = state.outputs.__provider;
        await this.host.call(typeof stored === "string" ? stored : this.provider, "delete", state.id, state.outputs);
    }
}
