/**
 * Runs index.ts under Pulumi's mock runtime in a plain Node process (ts-node), as `pulumi up` runs it, and reports
 * what the engine would have received: every registration (type, name, parent, dependencies, additional secret
 * outputs, inputs — the serialized `__provider` of each dynamic resource included), the stack outputs with their
 * secretness, and what the program printed (without an engine, `pulumi.log` writes to the console).
 *
 * Jest cannot do this in-process: closure serialization finds packages through `require.cache`, which jest
 * replaces, so a provider serialized under jest is not the one production stores.
 *
 * Two ways to run it:
 * - `ts-node --transpile-only test/support/mockProgram.ts <spec.json> <report.json>`: one spec, then exit.
 * - `ts-node --transpile-only test/support/mockProgram.ts --serve <socket>`: a server on a Unix socket that runs
 *   each spec POSTed to it, one at a time, and answers with its report (see mockProgramServer.ts). Packages and the
 *   components load once; index.ts runs afresh for every spec. Pulumi serializes each dynamic provider once per
 *   process, as in a `pulumi up` where many resources share a provider, so later specs reuse that code: the
 *   providers capture nothing that depends on the config, which a test checks with `freshModules` (every project
 *   module evaluated and every provider serialized afresh). A spec already run is answered from memory.
 *
 * A spec: { "config": { "<key>": "<value>" }, "preview"?: boolean, "secretKeys"?: ["<key>"],
 *           "mockOutputs"?: { "<type token>": { "<output>": <value> } }, "freshModules"?: boolean }
 * `secretKeys` are marked secret as `pulumi config set --secret` marks them (the engine's PULUMI_CONFIG_SECRET_KEYS).
 */
import * as fs from "fs";
import * as http from "http";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { UNKNOWN_OUTPUT } from "./mockValues";
import { installMocks } from "./pulumiMocks";

const ROOT = path.join(__dirname, "..", "..");

export interface MockProgramSpec {
    config: Record<string, string>;
    preview?: boolean;
    secretKeys?: string[];
    mockOutputs?: Record<string, Record<string, unknown>>;
    /** Evaluate the project's modules afresh, as a new process would, instead of only index.ts. */
    freshModules?: boolean;
}

export interface Registration {
    urn: string;
    type: string;
    name: string;
    custom: boolean;
    parent: string;
    dependencies: string[];
    /** Input name → URNs its value came from. */
    propertyDependencies: Record<string, string[]>;
    additionalSecretOutputs: string[];
    /** Inputs as sent to the engine; secrets keep their `4dabf18193072939515e22adb298388d` wrapper. */
    inputs: Record<string, unknown>;
}

export interface MockProgramReport {
    registrations: Registration[];
    outputs: Record<string, { value: unknown; secret: boolean }>;
    /** What the program wrote to stdout and stderr while it ran. */
    console: string;
    error?: string;
}

interface RegisterRequest {
    getType(): string;
    getName(): string;
    getCustom(): boolean;
    getParent(): string;
    getDependenciesList(): string[];
    getAdditionalsecretoutputsList(): string[];
    getPropertydependenciesMap(): { forEach(cb: (deps: { getUrnsList(): string[] }, key: string) => void): void };
    getObject(): { toJavaScript(): Record<string, unknown> } | undefined;
}

/** Runs the program once for `spec`. Runs must not overlap: Pulumi's runtime state is per process. */
export async function runProgram(spec: MockProgramSpec): Promise<MockProgramReport> {
    const report: MockProgramReport = { registrations: [], outputs: {}, console: "" };
    const restoreConsole = captureConsole((text) => {
        report.console += text;
    });
    try {
        installMocks({ preview: spec.preview, outputs: spec.mockOutputs });
        recordRegistrations(report);
        pulumi.runtime.setAllConfig(
            Object.fromEntries(Object.entries(spec.config).map(([k, v]) => [`lead-management:${k}`, v])),
            (spec.secretKeys ?? []).map((k) => `lead-management:${k}`),
        );
        try {
            forgetProjectModules(spec.freshModules ? "all" : "program");
            // eslint-disable-next-line @typescript-eslint/no-require-imports -- loads the program as the runtime does
            const program = require(path.join(ROOT, "index")) as Record<string, unknown>;
            for (const [name, value] of Object.entries(program)) {
                if (pulumi.Output.isInstance(value)) report.outputs[name] = await settleOutput(value as pulumi.Output<unknown>);
            }
        } catch (err) {
            report.error = (err as Error).message;
        }
        // Every registration holds Pulumi's RPC keep-alive from the moment its resource is constructed, so this
        // waits for all of them, including dynamic resources whose providers are still being serialized.
        await pulumi.runtime.disconnect();
    } finally {
        restoreConsole();
    }
    return report;
}

/** Records each registration request as the engine would receive it, before the mock monitor answers. */
function recordRegistrations(report: MockProgramReport): void {
    const monitor = pulumi.runtime.getMonitor() as unknown as {
        registerResource: (req: RegisterRequest, cb: unknown) => unknown;
        newUrn: (p: string, t: string, n: string) => string;
    };
    const register = monitor.registerResource.bind(monitor);
    monitor.registerResource = (req, cb) => {
        const propertyDependencies: Record<string, string[]> = {};
        req.getPropertydependenciesMap().forEach((deps, key) => {
            propertyDependencies[key] = deps.getUrnsList();
        });
        report.registrations.push({
            propertyDependencies,
            urn: monitor.newUrn(req.getParent(), req.getType(), req.getName()),
            type: req.getType(),
            name: req.getName(),
            custom: req.getCustom(),
            parent: req.getParent(),
            dependencies: req.getDependenciesList(),
            additionalSecretOutputs: req.getAdditionalsecretoutputsList(),
            inputs: req.getObject()?.toJavaScript() ?? {},
        });
        return register(req, cb);
    };
}

async function settleOutput(output: pulumi.Output<unknown>): Promise<{ value: unknown; secret: boolean }> {
    // In a preview an output the engine does not know yet never calls `apply`: report it as unknown.
    const known = await (output as unknown as { isKnown: Promise<boolean> }).isKnown;
    const value = known
        ? await new Promise((resolve) =>
              output.apply((v) => {
                  resolve(v);
                  return v;
              }),
          )
        : UNKNOWN_OUTPUT;
    return { value, secret: await pulumi.isSecret(output) };
}

/**
 * Drops index.ts (`program`), or every project module but this test support (`all`), from `require.cache`, so the
 * next `require` of index.ts runs the program again; with `all`, its components are evaluated as a new process
 * would evaluate them: module state, provider objects and their serialization start afresh.
 */
function forgetProjectModules(scope: "program" | "all"): void {
    const program = require.resolve(path.join(ROOT, "index"));
    const support = `${path.join(ROOT, "test")}${path.sep}`;
    const packages = `${path.join(ROOT, "node_modules")}${path.sep}`;
    for (const file of Object.keys(require.cache)) {
        const project = file.startsWith(ROOT + path.sep) && !file.startsWith(packages) && !file.startsWith(support);
        if (file === program || (scope === "all" && project)) delete require.cache[file];
    }
}

/** Sends everything written to stdout and stderr to `sink` instead, until the returned function is called. */
function captureConsole(sink: (text: string) => void): () => void {
    const streams = [process.stdout, process.stderr];
    const originals = streams.map((stream) => stream.write);
    for (const stream of streams) {
        stream.write = ((chunk: string | Uint8Array, ...rest: unknown[]): boolean => {
            sink(typeof chunk === "string" ? chunk : Buffer.from(chunk).toString());
            const callback = rest.find((r) => typeof r === "function") as (() => void) | undefined;
            callback?.();
            return true;
        }) as typeof stream.write;
    }
    return () => streams.forEach((stream, i) => (stream.write = originals[i]));
}

/** Serves runs on a Unix socket: POST a spec as JSON, get the report as JSON. Exits when its parent goes away. */
function serve(socket: string): void {
    const runs = new Map<string, Promise<MockProgramReport>>();
    let queue: Promise<unknown> = Promise.resolve();
    const server = http.createServer((req, res) => {
        let body = "";
        req.setEncoding("utf8");
        req.on("data", (chunk: string) => (body += chunk));
        req.on("end", () => {
            let run = runs.get(body);
            if (run === undefined) {
                // A body that is not JSON fails its own run, not the server.
                run = queue.then(() => runProgram(JSON.parse(body) as MockProgramSpec));
                queue = run.catch(() => undefined);
                runs.set(body, run);
            }
            run.then(
                (report) => res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(report)),
                (err: Error) => res.writeHead(500, { "content-type": "text/plain" }).end(err.stack ?? err.message),
            );
        });
    });
    server.listen(socket, () => process.send?.("listening"));
    process.on("disconnect", () => process.exit(0));
}

if (require.main === module) {
    const args = process.argv.slice(2);
    if (args[0] === "--serve") {
        serve(args[1]);
    } else {
        const [specPath, reportPath] = args;
        runProgram(JSON.parse(fs.readFileSync(specPath, "utf8")) as MockProgramSpec).then(
            (report) => {
                fs.writeFileSync(reportPath, JSON.stringify(report, null, 2));
                process.exit(0);
            },
            (err) => {
                console.error(err);
                process.exit(1);
            },
        );
    }
}
