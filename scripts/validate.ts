/**
 * `npm run validate -- --stack-outputs <file|-> [--instance-url <url>] [--app-id <guid>] [--tenant-id <guid>]
 *  [--keep] [--json]`
 *
 * Does what Partner Center's "Validate" button does: signs in as the lead-writing app and writes a test lead into
 * the instance, then deletes it with the deploying identity (DefaultAzureCredential or DATAVERSE_TOKEN) unless
 * --keep. The client secret comes only from the stack outputs (`pulumi stack output --json --show-secrets`) or
 * from LEAD_WRITER_CLIENT_SECRET, never from a flag, which would leave it in shell history and process lists.
 *
 * Exit codes: 0 the lead landed; 2 usage; one per failure class (see EXIT_CODES in components/validation/leadCheck.ts).
 */
import * as fs from "fs";
import { isGuid, normaliseInstanceUrl } from "../components/config";
import { clientFromEnvironment } from "../components/dataverse/client";
import { EXIT_CODES, LeadCheckError, LeadCheckTarget, runLeadCheck, summaryLine } from "../components/validation/leadCheck";

const USAGE =
    "usage: npm run validate -- --stack-outputs <file|-> [--instance-url <url>] [--app-id <guid>] [--tenant-id <guid>] [--keep] [--json]\n" +
    "       the client secret comes from the stack outputs (clientSecret) or LEAD_WRITER_CLIENT_SECRET";

const USAGE_EXIT_CODE = 2;

class UsageError extends Error {}

interface Arguments {
    stackOutputs?: string;
    instanceUrl?: string;
    appId?: string;
    tenantId?: string;
    keep: boolean;
    json: boolean;
}

function parseArguments(argv: string[]): Arguments {
    const args: Arguments = { keep: false, json: false };
    const valued: Record<string, "stackOutputs" | "instanceUrl" | "appId" | "tenantId"> = {
        "--stack-outputs": "stackOutputs",
        "--instance-url": "instanceUrl",
        "--app-id": "appId",
        "--tenant-id": "tenantId",
    };
    for (let i = 0; i < argv.length; i++) {
        const [flag, inline] = argv[i].startsWith("--") && argv[i].includes("=") ? argv[i].split(/=(.*)/s, 2) : [argv[i], undefined];
        if (/^--(client-?secret|secret)$/i.test(flag)) {
            throw new UsageError(
                `${flag} is not accepted: a secret on the command line ends up in shell history and process lists. ` +
                    "Pass the stack outputs (pulumi stack output --json --show-secrets | npm run validate -- --stack-outputs -) " +
                    "or set LEAD_WRITER_CLIENT_SECRET.",
            );
        }
        if (flag === "--keep") args.keep = true;
        else if (flag === "--json") args.json = true;
        else if (flag in valued) {
            const value = inline ?? argv[++i];
            if (value === undefined || value === "" || (inline === undefined && value.startsWith("--"))) {
                throw new UsageError(`${flag} needs a value`);
            }
            args[valued[flag]] = value;
        } else {
            throw new UsageError(`unknown argument ${argv[i]}`);
        }
    }
    return args;
}

/** Where the script reads and writes: the process's own streams when run as `npm run validate`. */
export interface ValidateIO {
    stdout: { write(text: string): unknown };
    stderr: { write(text: string): unknown };
    /** All of standard input, for `--stack-outputs -`. */
    readStdin(): string;
}

/** Reads the JSON `pulumi stack output --json --show-secrets` prints, from a file or stdin. */
function readStackOutputs(source: string, readStdin: () => string): Record<string, unknown> {
    let text: string;
    try {
        text = source === "-" ? readStdin() : fs.readFileSync(source, "utf8");
    } catch (err) {
        throw new UsageError(`--stack-outputs ${source}: ${(err as Error).message}`);
    }
    let parsed: unknown;
    try {
        parsed = JSON.parse(text);
    } catch {
        throw new UsageError(`--stack-outputs ${source} is not JSON; expected what 'pulumi stack output --json --show-secrets' prints`);
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
        throw new UsageError(`--stack-outputs ${source} is not a JSON object of stack outputs`);
    }
    return parsed as Record<string, unknown>;
}

/** The target from flags, stack outputs and the environment, each field checked before any network call. */
function resolveTarget(args: Arguments, env: NodeJS.ProcessEnv, io: Pick<ValidateIO, "readStdin">): LeadCheckTarget {
    const outputs = args.stackOutputs ? readStackOutputs(args.stackOutputs, io.readStdin) : {};
    const field = (flag: string | undefined, output: string, flagName: string): string => {
        const value = flag ?? outputs[output];
        if (typeof value !== "string" || value.trim() === "") {
            throw new UsageError(`no ${output}: pass ${flagName} or --stack-outputs with an "${output}" output`);
        }
        return value.trim();
    };
    const problems: string[] = [];
    const checked = (what: string, value: () => string, check: (v: string) => string): string => {
        try {
            return check(value());
        } catch (err) {
            problems.push(`${what}: ${(err as Error).message}`);
            return "";
        }
    };
    const guid = (v: string): string => {
        if (!isGuid(v)) throw new Error(`"${v}" is not a GUID`);
        return v.toLowerCase();
    };
    const target: LeadCheckTarget = {
        instanceUrl: checked("instanceUrl", () => field(args.instanceUrl, "instanceUrl", "--instance-url"), normaliseInstanceUrl),
        applicationId: checked("applicationId", () => field(args.appId, "applicationId", "--app-id"), guid),
        tenantId: checked("directoryId", () => field(args.tenantId, "directoryId", "--tenant-id"), guid),
        clientSecret: "",
    };
    const secret = outputs.clientSecret ?? env.LEAD_WRITER_CLIENT_SECRET;
    if (secret === "[secret]") {
        // What `pulumi stack output --json` prints without --show-secrets: signing in with it could only fail.
        problems.push(
            "clientSecret: the stack outputs hold the masked value \"[secret]\"; run 'pulumi stack output --json --show-secrets'",
        );
    } else if (typeof secret !== "string" || secret.trim() === "") {
        problems.push(
            "clientSecret: not in the stack outputs (add --show-secrets to 'pulumi stack output --json') and LEAD_WRITER_CLIENT_SECRET is not set",
        );
    } else {
        target.clientSecret = secret.trim();
    }
    if (problems.length > 0) throw new UsageError(problems.join("\n"));
    return target;
}

/**
 * The script with its arguments, environment and streams given: resolves to the exit code. The Dataverse client and
 * the app's sign-in read their settings (DATAVERSE_ENDPOINT, DATAVERSE_TOKEN, AZURE_AUTHORITY_HOST) from
 * `process.env`, as they do in a deployment.
 */
export async function runValidate(argv: string[], env: NodeJS.ProcessEnv, io: ValidateIO): Promise<number> {
    const line = (stream: ValidateIO["stdout"], text: string): unknown => stream.write(`${text}\n`);
    let args: Arguments;
    let target: LeadCheckTarget;
    try {
        args = parseArguments(argv);
        target = resolveTarget(args, env, io);
    } catch (err) {
        if (!(err instanceof UsageError)) throw err;
        line(io.stderr, err.message);
        line(io.stderr, USAGE);
        return USAGE_EXIT_CODE;
    }
    try {
        const result = await runLeadCheck(target, {
            keep: args.keep,
            cleanupClient: args.keep ? undefined : clientFromEnvironment(target.instanceUrl, { retry: { maxAttempts: 3 } }),
            // A check, not a deployment: an unreachable instance is reported in seconds, not after minutes of backoff.
            clientOptions: { retry: { maxAttempts: 3, maxElapsedMs: 20_000 }, timeoutMs: 30_000 },
        });
        for (const warning of result.warnings) line(io.stderr, `warning: ${warning}`);
        line(io.stdout, args.json ? JSON.stringify({ ok: true, ...result }) : summaryLine(result));
        return 0;
    } catch (err) {
        const failure = err instanceof LeadCheckError ? err : new LeadCheckError("unexpected", (err as Error).message);
        if (args.json) {
            line(io.stdout, JSON.stringify({ ok: false, failure: failure.failure, exitCode: failure.exitCode, message: failure.message }));
        }
        line(io.stderr, `FAILED (${failure.failure}): ${failure.message}`);
        return failure.exitCode;
    }
}

if (require.main === module) {
    const io: ValidateIO = { stdout: process.stdout, stderr: process.stderr, readStdin: () => fs.readFileSync(0, "utf8") };
    runValidate(process.argv.slice(2), process.env, io).then(
        (code) => process.exit(code),
        (err: unknown) => {
            console.error(`FAILED (unexpected): ${(err as Error).message}`);
            process.exit(EXIT_CODES.unexpected);
        },
    );
}
