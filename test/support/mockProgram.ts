/**
 * Runs index.ts under Pulumi's mock runtime in a plain Node process (ts-node), as `pulumi up` runs it, and
 * writes what the engine would have received as JSON: every registration (type, name, parent, dependencies,
 * additional secret outputs, inputs — the serialized `__provider` of each dynamic resource included) and the
 * stack outputs with their secretness.
 *
 * Jest cannot do this in-process: closure serialization finds packages through `require.cache`, which jest
 * replaces, so a provider serialized under jest is not the one production stores.
 *
 * Usage: ts-node --transpile-only test/support/mockProgram.ts <spec.json> <report.json>
 *   spec: { "config": { "<key>": "<value>" }, "preview"?: boolean, "secretKeys"?: ["<key>"],
 *           "mockOutputs"?: { "<type token>": { "<output>": <value> } } }
 * `secretKeys` are marked secret as `pulumi config set --secret` marks them (the engine's PULUMI_CONFIG_SECRET_KEYS).
 */
import * as fs from "fs";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { installMocks, UNKNOWN_OUTPUT } from "./pulumiMocks";

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

async function main(): Promise<void> {
    const [specPath, reportPath] = process.argv.slice(2);
    const spec = JSON.parse(fs.readFileSync(specPath, "utf8")) as {
        config: Record<string, string>;
        preview?: boolean;
        secretKeys?: string[];
        mockOutputs?: Record<string, Record<string, unknown>>;
    };
    const report: MockProgramReport = { registrations: [], outputs: {} };
    let lastRegistration = Date.now();

    installMocks({ preview: spec.preview, outputs: spec.mockOutputs });
    // Record the raw registration request, as the engine would receive it, before the mock monitor answers.
    const monitor = pulumi.runtime.getMonitor() as unknown as {
        registerResource: (req: RegisterRequest, cb: unknown) => unknown;
        newUrn: (p: string, t: string, n: string) => string;
    };
    const register = monitor.registerResource.bind(monitor);
    monitor.registerResource = (req, cb) => {
        lastRegistration = Date.now();
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
    pulumi.runtime.setAllConfig(
        Object.fromEntries(Object.entries(spec.config).map(([k, v]) => [`lead-management:${k}`, v])),
        (spec.secretKeys ?? []).map((k) => `lead-management:${k}`),
    );

    try {
        // eslint-disable-next-line @typescript-eslint/no-require-imports -- loads the program as the runtime does
        const program = require(path.join(__dirname, "..", "..", "index")) as Record<string, unknown>;
        for (const [name, value] of Object.entries(program)) {
            if (!pulumi.Output.isInstance(value)) continue;
            const output = value as pulumi.Output<unknown>;
            // In a preview an output the engine does not know yet never calls `apply`: report it as unknown.
            const known = await (output as unknown as { isKnown: Promise<boolean> }).isKnown;
            report.outputs[name] = {
                value: known
                    ? await new Promise((resolve) =>
                          output.apply((v) => {
                              resolve(v);
                              return v;
                          }),
                      )
                    : UNKNOWN_OUTPUT,
                secret: await pulumi.isSecret(output),
            };
        }
        // Registrations trail the outputs: wait until none has arrived for a moment.
        while (Date.now() - lastRegistration < 500) {
            await new Promise((r) => setTimeout(r, 100));
        }
        // A dynamic resource whose provider is still being serialized has not registered yet: wait for every
        // outstanding registration (a quiet moment alone lost the Solution on a busy machine).
        await pulumi.runtime.disconnect();
    } catch (err) {
        report.error = (err as Error).message;
    }
    fs.writeFileSync(reportPath, JSON.stringify(report, null, 2));
}

main().then(
    () => process.exit(0),
    (err) => {
        console.error(err);
        process.exit(1);
    },
);
