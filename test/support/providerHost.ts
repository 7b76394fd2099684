import { ChildProcess, fork } from "child_process";
import { execFile } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { promisify } from "util";
import type { MockProgramReport } from "./mockProgram";

const ROOT = path.join(__dirname, "..", "..");

/**
 * Runs index.ts under mocks in a fresh ts-node process (see mockProgram.ts) and returns its report, with what the
 * program printed (without an engine, `pulumi.log` writes to the console). `secretKeys` are the config keys stored
 * as secrets.
 */
export async function runMockProgram(
    config: Record<string, string>,
    preview = false,
    secretKeys: string[] = [],
): Promise<MockProgramReport & { console: string }> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mock-program-"));
    const specPath = path.join(dir, "spec.json");
    const reportPath = path.join(dir, "report.json");
    fs.writeFileSync(specPath, JSON.stringify({ config, preview, secretKeys }));
    const { stdout, stderr } = await promisify(execFile)(
        process.execPath,
        [require.resolve("ts-node/dist/bin.js"), "--transpile-only", path.join(__dirname, "mockProgram.ts"), specPath, reportPath],
        { cwd: ROOT, env: { ...process.env, TS_NODE_PROJECT: path.join(ROOT, "tsconfig.json") } },
    );
    const report = JSON.parse(fs.readFileSync(reportPath, "utf8")) as MockProgramReport;
    fs.rmSync(dir, { recursive: true, force: true });
    return { ...report, console: stdout + stderr };
}

/** The serialized `__provider` of each dynamic resource type in a mock run, keyed by type token. */
export function providersOf(report: MockProgramReport): Map<string, string> {
    const providers = new Map<string, string>();
    for (const registration of report.registrations) {
        const provider = registration.inputs.__provider;
        if (typeof provider === "string") providers.set(registration.type, provider);
    }
    return providers;
}

export class ProviderCallError extends Error {}

/** A fresh process that loads serialized providers the way the engine's dynamic-provider host does. */
export class ProviderHost {
    private nextId = 1;
    private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
    /** Everything the providers printed: without an engine, `pulumi.log` writes to the console. */
    output = "";

    private constructor(private readonly child: ChildProcess) {
        child.on("message", (msg: { id?: number; result?: unknown; error?: { message: string } }) => {
            if (msg.id === undefined) return;
            const waiter = this.pending.get(msg.id);
            this.pending.delete(msg.id);
            if (msg.error) waiter?.reject(new ProviderCallError(msg.error.message || String((msg.error as { stack?: string }).stack)));
            else waiter?.resolve(msg.result);
        });
        child.stdout?.on("data", (chunk: Buffer) => {
            this.output += chunk.toString();
        });
        child.stderr?.on("data", (chunk: Buffer) => {
            this.output += chunk.toString();
        });
        child.on("exit", () => {
            for (const waiter of this.pending.values()) waiter.reject(new Error("provider host exited"));
            this.pending.clear();
        });
    }

    /** Starts the host with its environment fixed before it starts, as a real provider process has it. */
    static async start(env: Record<string, string>): Promise<ProviderHost> {
        const child = fork(path.join(__dirname, "providerHostChild.js"), [], {
            cwd: ROOT,
            env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...env },
            stdio: ["ignore", "pipe", "pipe", "ipc"],
        });
        await new Promise<void>((resolve, reject) => {
            child.once("message", () => resolve());
            child.once("error", reject);
        });
        return new ProviderHost(child);
    }

    call<T>(providerString: string, method: string, ...args: unknown[]): Promise<T> {
        const id = this.nextId++;
        return new Promise<T>((resolve, reject) => {
            this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
            this.child.send({ id, providerString, method, args });
        });
    }

    async stop(): Promise<void> {
        if (this.child.exitCode !== null) return;
        const exited = new Promise((resolve) => this.child.once("exit", resolve));
        this.child.kill();
        await exited;
    }
}

/** A resource as the engine keeps it in state. */
export interface ResourceState {
    id: string;
    inputs: Record<string, unknown>;
    outputs: Record<string, unknown>;
}

export type Operation = "create" | "update" | "replace" | "same";

/** Drives one serialized provider through the engine's sequence of calls for up, refresh and destroy. */
export class EngineSimulator {
    constructor(
        private readonly host: ProviderHost,
        private readonly provider: string,
    ) {}

    private withProvider(props: Record<string, unknown>): Record<string, unknown> {
        return { ...props, __provider: this.provider };
    }

    private async check(news: Record<string, unknown>, prior?: ResourceState): Promise<Record<string, unknown>> {
        const result = await this.host.call<{ inputs?: Record<string, unknown>; failures?: { property: string; reason: string }[] }>(
            this.provider,
            "check",
            prior ? prior.inputs : {},
            this.withProvider(news),
        );
        if (result.failures && result.failures.length > 0) {
            throw new ProviderCallError(`check failed: ${result.failures.map((f) => f.reason).join("; ")}`);
        }
        return { ...(result.inputs ?? news), __provider: this.provider };
    }

    /** `pulumi preview` for one resource: check and diff only. */
    async preview(news: Record<string, unknown>, prior?: ResourceState): Promise<{ op: Operation; replaces: string[] }> {
        const inputs = await this.check(news, prior);
        if (!prior) return { op: "create", replaces: [] };
        const diff = await this.host.call<{ changes?: boolean; replaces?: string[] }>(
            this.provider,
            "diff",
            prior.id,
            prior.outputs,
            inputs,
        );
        const replaces = diff.replaces ?? [];
        return { op: replaces.length > 0 ? "replace" : diff.changes ? "update" : "same", replaces };
    }

    /** `pulumi up` for one resource. */
    async up(news: Record<string, unknown>, prior?: ResourceState): Promise<{ op: Operation; state: ResourceState }> {
        const inputs = await this.check(news, prior);
        const create = async () => {
            const result = await this.host.call<{ id: string; outs?: Record<string, unknown> }>(this.provider, "create", inputs);
            return { id: result.id, inputs, outputs: this.withProvider(result.outs ?? {}) };
        };
        if (!prior) return { op: "create", state: await create() };
        const diff = await this.host.call<{ changes?: boolean; replaces?: string[]; deleteBeforeReplace?: boolean }>(
            this.provider,
            "diff",
            prior.id,
            prior.outputs,
            inputs,
        );
        if (diff.replaces && diff.replaces.length > 0) {
            if (diff.deleteBeforeReplace) {
                await this.destroy(prior);
                return { op: "replace", state: await create() };
            }
            const state = await create();
            await this.destroy(prior);
            return { op: "replace", state };
        }
        if (diff.changes) {
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
        const result = await this.host.call<{ id?: string; props?: Record<string, unknown> }>(
            this.provider,
            "read",
            state.id,
            state.outputs,
        );
        if (!result.id) return undefined;
        return { id: result.id, inputs: state.inputs, outputs: this.withProvider(result.props ?? {}) };
    }

    /** `pulumi destroy`: runs the provider stored in the state, not the current one. */
    async destroy(state: ResourceState): Promise<void> {
        const stored = state.outputs.__provider;
        await this.host.call(typeof stored === "string" ? stored : this.provider, "delete", state.id, state.outputs);
    }
}
