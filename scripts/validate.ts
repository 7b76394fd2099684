/**
 * `npm run validate -- --stack-outputs <file|-> [--instance-url <url>] [--app-id <guid>] [--tenant-id <guid>]
 *  [--user-name <upn>] [--client-id <guid>] [--keep] [--json]`
 *
 * Does what Partner Center's "Validate" button does: signs in as the lead service would (the lead-writing app, or on
 * the Office 365 method the service account with its password) and writes a test lead into the instance, then
 * deletes it with the deploying identity (DefaultAzureCredential or DATAVERSE_TOKEN) unless --keep. The method is the
 * stack outputs' `authenticationMethod` ("Office 365" or "Azure Active Directory"); without one, --user-name picks the
 * Office 365 method. The client secret comes only from the stack outputs (`pulumi stack output --json --show-secrets`)
 * or LEAD_WRITER_CLIENT_SECRET, the password only from the stack outputs or LEAD_WRITER_PASSWORD, never from a flag,
 * which would leave it in shell history and process lists.
 *
 * Exit codes: 0 the lead landed; 2 usage; one per failure class (see EXIT_CODES in components/validation/leadCheck.ts).
 */
import * as fs from "fs";
import { isGuid, normaliseInstanceUrl } from "../components/guide";
import { clientFromEnvironment } from "../components/dataverse/client";
import {
    DATAVERSE_PUBLIC_CLIENT_ID,
    EXIT_CODES,
    LeadCheckError,
    LeadCheckTarget,
    runLeadCheck,
    summaryLine,
} from "../components/validation/leadCheck";

const USAGE =
    "usage: npm run validate -- --stack-outputs <file|-> [--instance-url <url>] [--app-id <guid>] [--tenant-id <guid>]\n" +
    "                           [--user-name <upn>] [--client-id <guid>] [--keep] [--json]\n" +
    "       the client secret comes from the stack outputs (clientSecret) or LEAD_WRITER_CLIENT_SECRET,\n" +
    "       the Office 365 service account's password from the stack outputs (password) or LEAD_WRITER_PASSWORD";

// Partner Center's names for the two methods, as the stack outputs carry them (authenticationMethod).
const AZURE_AD_METHOD = "Azure Active Directory";
const OFFICE_365_METHOD = "Office 365";

const USAGE_EXIT_CODE = 2;

class UsageError extends Error {}

interface Arguments {
    stackOutputs?: string;
    instanceUrl?: string;
    appId?: string;
    tenantId?: string;
    userName?: string;
    clientId?: string;
    keep: boolean;
    json: boolean;
}

function parseArguments(argv: string[]): Arguments {
    const args: Arguments = { keep: false, json: false };
    const valued: Record<string, "stackOutputs" | "instanceUrl" | "appId" | "tenantId" | "userName" | "clientId"> = {
        "--stack-outputs": "stackOutputs",
        "--instance-url": "instanceUrl",
        "--app-id": "appId",
        "--tenant-id": "tenantId",
        "--user-name": "userName",
        "--client-id": "clientId",
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
        if (/^--(password|passwd|pwd|pass)$/i.test(flag)) {
            throw new UsageError(
                `${flag} is not accepted: a password on the command line ends up in shell history and process lists. ` +
                    "Pass the stack outputs (pulumi stack output --json --show-secrets | npm run validate -- --stack-outputs -) " +
                    "or set LEAD_WRITER_PASSWORD.",
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

/** The sign-in method: the stack outputs' `authenticationMethod`, or without one, Office 365 when --user-name is given. */
function signInMethod(args: Arguments, outputs: Record<string, unknown>): typeof AZURE_AD_METHOD | typeof OFFICE_365_METHOD {
    const method = outputs.authenticationMethod;
    if (method === undefined) return args.userName !== undefined ? OFFICE_365_METHOD : AZURE_AD_METHOD;
    if (method !== AZURE_AD_METHOD && method !== OFFICE_365_METHOD) {
        throw new UsageError(`authenticationMethod: ${JSON.stringify(method)} is neither "${AZURE_AD_METHOD}" nor "${OFFICE_365_METHOD}"`);
    }
    return method;
}

/** Refuses a flag of the other method, which would otherwise be silently ignored. */
function refuseOtherMethodsFlags(args: Arguments, method: string): void {
    const otherMethods: [string, string | undefined][] =
        method === OFFICE_365_METHOD
            ? [["--app-id", args.appId]]
            : [
                  ["--user-name", args.userName],
                  ["--client-id", args.clientId],
              ];
    const misplaced = otherMethods.find(([, value]) => value !== undefined);
    if (misplaced) throw new UsageError(`${misplaced[0]} does not apply to the "${method}" sign-in method`);
}

/** The target from flags, stack outputs and the environment, each field checked before any network call. */
function resolveTarget(args: Arguments, env: NodeJS.ProcessEnv, io: Pick<ValidateIO, "readStdin">): LeadCheckTarget {
    const outputs = args.stackOutputs ? readStackOutputs(args.stackOutputs, io.readStdin) : {};
    const method = signInMethod(args, outputs);
    refuseOtherMethodsFlags(args, method);
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
    const secretOf = (output: string, variable: string): string => {
        const secret = outputs[output] ?? env[variable];
        if (secret === "[secret]") {
            // What `pulumi stack output --json` prints without --show-secrets: signing in with it could only fail.
            problems.push(`${output}: the stack outputs hold the masked value "[secret]"; run 'pulumi stack output --json --show-secrets'`);
        } else if (typeof secret !== "string" || secret.trim() === "") {
            problems.push(
                `${output}: not in the stack outputs (add --show-secrets to 'pulumi stack output --json') and ${variable} is not set`,
            );
        } else {
            return secret.trim();
        }
        return "";
    };
    if (method === OFFICE_365_METHOD) {
        const userName = checked("userName", () => field(args.userName, "userName", "--user-name"), userPrincipalName);
        const target: LeadCheckTarget = {
            kind: "serviceAccount",
            instanceUrl: checked("instanceUrl", () => field(args.instanceUrl, "instanceUrl", "--instance-url"), normaliseInstanceUrl),
            userName,
            // The UPN's domain names the account's tenant; a password sign-in cannot go to "common".
            tenantId:
                args.tenantId !== undefined || userName !== ""
                    ? checked("tenantId", () => args.tenantId ?? userName.split("@")[1], passwordSignInTenant)
                    : "",
            clientId: checked("clientId", () => args.clientId ?? DATAVERSE_PUBLIC_CLIENT_ID, guid),
            password: secretOf("password", "LEAD_WRITER_PASSWORD"),
        };
        if (problems.length > 0) throw new UsageError(problems.join("\n"));
        return target;
    }
    const target: LeadCheckTarget = {
        instanceUrl: checked("instanceUrl", () => field(args.instanceUrl, "instanceUrl", "--instance-url"), normaliseInstanceUrl),
        applicationId: checked("applicationId", () => field(args.appId, "applicationId", "--app-id"), guid),
        tenantId: checked("directoryId", () => field(args.tenantId, "directoryId", "--tenant-id"), guid),
        clientSecret: "",
    };
    target.clientSecret = secretOf("clientSecret", "LEAD_WRITER_CLIENT_SECRET");
    if (problems.length > 0) throw new UsageError(problems.join("\n"));
    return target;
}

/** `name@domain`, as Partner Center's "User name" and a password sign-in expect. */
function userPrincipalName(value: string): string {
    if (!/^[^@\s]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$/.test(value)) throw new Error(`"${value}" is not a user principal name (name@domain)`);
    return value;
}

/** A tenant id, a domain or "organizations": what a password sign-in takes (not "common" or "consumers"). */
function passwordSignInTenant(value: string): string {
    if (value === "") throw new Error("no tenant: pass --tenant-id");
    if (/^(common|consumers)$/i.test(value)) {
        throw new Error(`"${value}" takes no password sign-in; pass the directory id, a domain of the tenant or "organizations"`);
    }
    if (isGuid(value)) return value.toLowerCase();
    if (!/^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*$/.test(value)) throw new Error(`"${value}" is neither a GUID nor a domain name`);
    return value.toLowerCase();
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
