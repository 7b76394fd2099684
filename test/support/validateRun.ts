/**
 * Runs `npm run validate` for the validate tests, with only the environment a case gives it:
 * - `validateInProcess`: in this jest worker, through the script's own entry (`runValidate`), with the real
 *   `@azure/identity` flow. Workers trust the emulated identity platform from their start (globalSetup puts the
 *   run's certificate in NODE_EXTRA_CA_CERTS, which Node reads only when a process starts; see testRun.ts).
 * - `validateProcess`: as `npm run validate` runs it, in a child process, for the cases that cross the process
 *   boundary on purpose (exit codes, argv, the script end to end).
 * The client announces DATAVERSE_ENDPOINT once per process on stderr: it is counted and taken out of stderr.
 */
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import https from "node:https";
import * as path from "node:path";
import { format } from "node:util";
import { runValidate } from "../../scripts/validate";
import { IdentityPlatform, startIdentityPlatform } from "../emulator/identityPlatform";
import { Emulator, startEmulator } from "../emulator/server";
import { trustedTestCertificate, tsNodeTestEnvironment } from "./testRun";

const ROOT = path.join(__dirname, "..", "..");

export interface ValidateRun {
    code: number;
    stdout: string;
    stderr: string;
    /** How often the DATAVERSE_ENDPOINT warning was printed (removed from stderr). */
    announced: number;
}

export interface ValidateInput {
    args: string[];
    /** The run's whole environment (besides PATH and HOME). */
    env: Record<string, string>;
    stdin?: string;
}

const ANNOUNCEMENT =
    /^warning: DATAVERSE_ENDPOINT is set: requests meant for the instance, with their bearer tokens, go to \S+ instead\.\n/gm;

function announcementsRemoved(code: number, stdout: string, stderr: string): ValidateRun {
    const announced = (stderr.match(ANNOUNCEMENT) ?? []).length;
    return { code, stdout, stderr: stderr.replace(ANNOUNCEMENT, ""), announced };
}

/** What `npm run validate` talks to in the tests: Dataverse, and an identity platform whose tokens act as its users. */
export interface ValidateEmulators {
    dataverse: Emulator;
    identity: IdentityPlatform;
}

/** Starts both emulators, the identity platform with the run's certificate, which this worker trusts. */
export async function startValidateEmulators(): Promise<ValidateEmulators> {
    const dataverse = await startEmulator();
    const identity = await startIdentityPlatform({
        certificate: trustedTestCertificate(),
        onTokenIssued: (token, claims) => dataverse.acceptToken(token, claims),
    });
    await expectTrustedIdentityPlatform(identity.authorityHost);
    return { dataverse, identity };
}

export async function stopValidateEmulators({ dataverse, identity }: Partial<ValidateEmulators>): Promise<void> {
    await identity?.close();
    await dataverse?.close();
}

/** Dataverse as a new instance has it, the request logs empty and nobody registered with the identity platform. */
export function resetValidateEmulators({ dataverse, identity }: ValidateEmulators): void {
    dataverse.reset();
    identity.requests.length = 0;
    identity.reset();
}

/**
 * Fails clearly when this process cannot reach the identity platform over TLS: jest ran the file in its own process
 * (`--runInBand`), which started before the run's certificate existed.
 */
export async function expectTrustedIdentityPlatform(authorityHost: string): Promise<void> {
    const problem = await new Promise<string | undefined>((resolve) => {
        https
            .get(new URL("/common/discovery/instance", authorityHost), { agent: false }, (res) => {
                res.resume();
                resolve(undefined);
            })
            .on("error", (err) => resolve(err.message));
    });
    if (problem !== undefined) {
        throw new Error(`this process does not trust the emulated identity platform (${problem}): run jest without --runInBand`);
    }
}

/** Runs `body` with `process.env` replaced by `env` (besides PATH and HOME), as a process started with it would see it. */
export async function withEnvironment<T>(env: Record<string, string>, body: () => Promise<T>): Promise<T> {
    const saved = process.env;
    process.env = { PATH: saved.PATH ?? "", HOME: saved.HOME ?? "", ...env };
    try {
        return await body();
    } finally {
        process.env = saved;
    }
}

/** Runs the script in this process, under the run's environment. */
export async function validateInProcess({ args, env, stdin }: ValidateInput): Promise<ValidateRun> {
    let stdout = "";
    let stderr = "";
    // What the components print with console.warn goes to the process's stderr.
    const warn = console.warn;
    console.warn = (...parts: unknown[]) => {
        stderr += `${format(...parts)}\n`;
    };
    try {
        const code = await withEnvironment(env, () =>
            runValidate(args, process.env, {
                stdout: { write: (text: string) => (stdout += text) },
                stderr: { write: (text: string) => (stderr += text) },
                readStdin: () => stdin ?? "",
            }),
        );
        return announcementsRemoved(code, stdout, stderr);
    } finally {
        console.warn = warn;
    }
}

/** Runs the script as `npm run validate` does, in a child process with the environment fixed before it starts. */
export function validateProcess({ args, env, stdin }: ValidateInput): Promise<ValidateRun> {
    return new Promise((resolve) => {
        const child = execFile(
            process.execPath,
            [require.resolve("ts-node/dist/bin.js"), "--transpile-only", path.join(ROOT, "scripts", "validate.ts"), ...args],
            {
                cwd: ROOT,
                env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...tsNodeTestEnvironment(), ...env },
            },
            (err, stdout, stderr) => {
                const code = err ? (err as { code?: unknown }).code : 0;
                resolve(announcementsRemoved(typeof code === "number" ? code : 1, stdout, stderr));
            },
        );
        child.stdin?.end(stdin ?? "");
    });
}

/** What a case adds to a run: its stdin and environment variables. */
export interface CaseInput {
    stdin?: string;
    env?: Record<string, string>;
}

/**
 * The runs of a test file against its emulators (read when a run starts: they are made in `beforeAll`): every run's
 * environment names the identity platform, the Dataverse emulator and the deploying identity's token.
 */
export function validateRunsAgainst(emulators: () => { identity: IdentityPlatform; dataverse: Emulator; adminToken: string }) {
    const runEnvironment = (env: Record<string, string> = {}): Record<string, string> => {
        const { identity, dataverse, adminToken } = emulators();
        return { AZURE_AUTHORITY_HOST: identity.authorityHost, DATAVERSE_ENDPOINT: dataverse.origin, DATAVERSE_TOKEN: adminToken, ...env };
    };
    return {
        runEnvironment,
        /** The script in this worker. */
        validate: (args: string[], input: CaseInput = {}): Promise<ValidateRun> =>
            validateInProcess({ args, env: runEnvironment(input.env), stdin: input.stdin }),
        /** The script as `npm run validate` runs it, in its own process started trusting the identity platform. */
        validateEndToEnd: (args: string[], input: CaseInput = {}): Promise<ValidateRun> =>
            validateProcess({
                args,
                env: { NODE_EXTRA_CA_CERTS: emulators().identity.caCertPath, ...runEnvironment(input.env) },
                stdin: input.stdin,
            }),
    };
}

/** One HTTPS request to the identity platform, trusting its certificate explicitly rather than through the process. */
export function identityRequest(
    identity: IdentityPlatform,
    method: string,
    pathname: string,
    form?: Record<string, string>,
): Promise<{ status: number; body: Record<string, unknown> }> {
    return new Promise((resolve, reject) => {
        const url = new URL(pathname, identity.authorityHost);
        const payload = form ? new URLSearchParams(form).toString() : undefined;
        const req = https.request(
            url,
            {
                method,
                ca: fs.readFileSync(identity.caCertPath),
                headers: payload ? { "Content-Type": "application/x-www-form-urlencoded" } : {},
            },
            (res) => {
                const chunks: Buffer[] = [];
                res.on("data", (c: Buffer) => chunks.push(c));
                res.on("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString("utf8")) }));
            },
        );
        req.on("error", reject);
        req.end(payload);
    });
}

/**
 * The Dataverse side of a successful run: WhoAmI, the test lead written and read back as the lead service's user,
 * then deleted by the deploying identity (the emulator's seeded administrator), so no lead is left.
 */
export function expectTestLeadRoundTrip(dataverse: Emulator, userId: string): void {
    const calls = dataverse.requests.map(
        (r) => `${r.method} ${r.path.split("?")[0].replace("/api/data/v9.2/", "")} ${r.status} ${r.principal}`,
    );
    const leadId = dataverse.requests.find((r) => r.method === "DELETE")?.path.match(/leads\((.*)\)/)?.[1];
    expect(calls).toEqual([
        `GET WhoAmI 200 ${userId}`,
        `POST leads 204 ${userId}`,
        `GET leads(${leadId}) 200 ${userId}`,
        `DELETE leads(${leadId}) 204 ${dataverse.state.systemUsers[0].systemuserid}`,
    ]);
    expect(dataverse.state.leads).toEqual([]);
}
