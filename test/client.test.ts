/**
 * Pins the behaviour of the Dataverse Web API client (components/dataverse/client.ts) against the loopback
 * emulator. Where the emulator cannot show what the server saw (request headers, requests in flight, a
 * response header it never sends), a capture proxy or a stub server on 127.0.0.1 stands in front of it.
 */
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import type { AddressInfo } from "node:net";
import { inspect } from "node:util";
import type { AccessToken, TokenCredential } from "@azure/identity";
import {
    DataverseClient,
    DEFAULT_POLLING_POLICY,
    DataverseError,
    ErrorCodes,
    clientFromEnvironment,
    entityIdFromHeader,
    odataGuid,
    nextPollDelay,
    odataString,
    parseRetryAfter,
    poll,
    staticTokenCredential,
    type DataverseClientOptions,
} from "../components/dataverse/client";
import {
    ADMIN_USER_ID,
    CHILD_BUSINESS_UNIT_ID,
    ROOT_BUSINESS_UNIT_ID,
    ROOT_BUSINESS_UNIT_NAME,
    SYSTEM_ADMINISTRATOR_ROLE_ID,
    startEmulator,
    type Emulator,
    type EmulatorOptions,
    LEAD_WRITER_SOLUTION_UNIQUE_NAME,
} from "./emulator/server";
import { solutionProvider } from "../components/dataverse/solution";
import { buildSolutionZip } from "./support/solutionZip";

const INSTANCE_URL = "https://contoso.crm.dynamics.com";
const SCOPE = `${INSTANCE_URL}/.default`;
// Distinctive, so a leak into any error text is found by a plain substring search.
const TOKEN = "eyJ0eXAi.secret-bearer-7f3a9c";
const APP_ID = "11111111-2222-4333-8444-555555555555";
const MISSING_ID = "0badc0de-0000-4000-8000-000000000001";
/** An application user in the root business unit, as the contract creates one. */
const APP_USER = { applicationid: APP_ID, accessmode: 4, "businessunitid@odata.bind": `/businessunits(${ROOT_BUSINESS_UNIT_ID})` };
const LEAD = { subject: "MSFT_TEST_638000000000000000", lastname: "MSFT_TEST", firstname: "Test", leadsourcecode: 8 };

type Row = Record<string, unknown>;
interface RetryNotice {
    method: string;
    path: string;
    attempt: number;
    delayMs: number;
    reason: string;
}

let emu: Emulator;
/** Servers a test started besides the emulator; closed after each test even when it fails. */
let closers: (() => Promise<void>)[] = [];

beforeEach(async () => {
    emu = await startEmulator();
});

afterEach(async () => {
    await Promise.all(closers.map((close) => close()));
    closers = [];
    await emu.close();
});

/** Replaces the default emulator when a test needs its token map. */
async function restartEmulator(options: EmulatorOptions): Promise<void> {
    await emu.close();
    emu = await startEmulator(options);
}

function newClient(options: Partial<DataverseClientOptions> = {}): DataverseClient {
    return new DataverseClient({
        instanceUrl: INSTANCE_URL,
        endpoint: emu.origin,
        credential: staticTokenCredential(TOKEN),
        ...options,
        retry: { baseDelayMs: 10, maxDelayMs: 2000, ...options.retry },
    });
}

/** A client whose waits before retries are recorded. */
function retryingClient(options: Partial<DataverseClientOptions> = {}): { client: DataverseClient; retries: RetryNotice[] } {
    const retries: RetryNotice[] = [];
    return { client: newClient({ ...options, onRetry: (info) => retries.push(info) }), retries };
}

/** Awaits an expected failure and insists it is a DataverseError, so no raw axios error escapes unnoticed. */
async function failureOf(promise: Promise<unknown>): Promise<DataverseError> {
    try {
        await promise;
    } catch (err) {
        expect(err).toBeInstanceOf(DataverseError);
        return err as DataverseError;
    }
    throw new Error("expected the call to fail, and it succeeded");
}

/** A credential that hands out the given tokens in turn (the last one repeats) and records each scope asked for. */
function scriptedCredential(...issued: { token: string; expiresInMs: number }[]): {
    credential: TokenCredential;
    scopes: (string | string[])[];
} {
    const scopes: (string | string[])[] = [];
    const credential: TokenCredential = {
        async getToken(scope: string | string[]): Promise<AccessToken> {
            scopes.push(scope);
            const next = issued[Math.min(scopes.length, issued.length) - 1];
            return { token: next.token, expiresOnTimestamp: Date.now() + next.expiresInMs };
        },
    };
    return { credential, scopes };
}

function expectNoToken(err: DataverseError, token = TOKEN): void {
    expect(err.message).not.toContain(token);
    expect(JSON.stringify(err)).not.toContain(token);
    expect(inspect(err, { depth: 5 })).not.toContain(token);
    expect(String(err.stack)).not.toContain(token);
}

function apiRequests(method?: string): { method: string; path: string; status: number }[] {
    return emu.requests
        .filter((r) => method === undefined || r.method === method)
        .map((r) => ({ method: r.method, path: r.path, status: r.status }));
}

async function listen(server: http.Server): Promise<string> {
    await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(0, "127.0.0.1", () => resolve());
    });
    closers.push(
        () =>
            new Promise<void>((resolve) => {
                server.close(() => resolve());
                // Keep-alive sockets of Node's global agent would otherwise hold close() open.
                server.closeAllConnections();
            }),
    );
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

interface SeenRequest {
    method: string;
    url: string;
    headers: http.IncomingHttpHeaders;
}

interface CaptureProxy {
    origin: string;
    seen: SeenRequest[];
    /** The most requests the proxy held open at once. */
    peakInFlight(): number;
}

/**
 * Forwards to `target` and records what arrived, as the server saw it. `extraResponseHeaders` are added to every
 * answer, for headers Dataverse sends and the emulator does not.
 */
async function startCaptureProxy(target: string, extraResponseHeaders: Record<string, string> = {}): Promise<CaptureProxy> {
    const upstream = new URL(target);
    const seen: SeenRequest[] = [];
    let inFlight = 0;
    let peak = 0;
    const server = http.createServer((req, res) => {
        seen.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers });
        inFlight++;
        peak = Math.max(peak, inFlight);
        res.on("close", () => inFlight--);
        const forward = http.request(
            // A fresh connection each time: pooled sockets to the emulator would outlive the test.
            { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers, agent: false },
            (answer) => {
                res.writeHead(answer.statusCode ?? 502, { ...answer.headers, ...extraResponseHeaders });
                answer.pipe(res);
            },
        );
        forward.on("error", () => req.socket.destroy());
        req.pipe(forward);
    });
    return { origin: await listen(server), seen, peakInFlight: () => peak };
}

/** A server that answers with `handler`, for shapes the emulator never produces (paging, non-JSON errors, files). */
async function startStub(
    handler: (req: http.IncomingMessage, res: http.ServerResponse) => void,
): Promise<{ origin: string; urls: string[] }> {
    const urls: string[] = [];
    const server = http.createServer((req, res) => {
        urls.push(req.url ?? "");
        handler(req, res);
    });
    return { origin: await listen(server), urls };
}

/** An origin on which nothing listens, for ECONNREFUSED. */
async function closedOrigin(): Promise<string> {
    const server = http.createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
    const { port } = server.address() as AddressInfo;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    return `http://127.0.0.1:${port}`;
}

const API = "/api/data/v9.2/";

describe("request shape", () => {
    test("a GET carries the OData headers and the bearer token, and neither Content-Type nor Prefer", async () => {
        const proxy = await startCaptureProxy(emu.origin);
        const client = newClient({ endpoint: proxy.origin });

        const me = await client.get<Row>("WhoAmI");

        expect(me.UserId).toBe(ADMIN_USER_ID);
        expect(proxy.seen).toHaveLength(1);
        const { method, url, headers } = proxy.seen[0];
        expect({ method, url }).toEqual({ method: "GET", url: `${API}WhoAmI` });
        expect(headers.accept).toBe("application/json");
        expect(headers["odata-maxversion"]).toBe("4.0");
        expect(headers["odata-version"]).toBe("4.0");
        expect(headers.authorization).toBe(`Bearer ${TOKEN}`);
        expect(headers["content-type"]).toBeUndefined();
        expect(headers.prefer).toBeUndefined();
    });

    test("a body brings Content-Type: application/json; Prefer: return=representation only when asked", async () => {
        const proxy = await startCaptureProxy(emu.origin);
        const client = newClient({ endpoint: proxy.origin });

        const represented = await client.request<Row>("POST", "leads", { body: LEAD, returnRepresentation: true });
        const bare = await client.request<Row>("POST", "leads", { body: { ...LEAD, subject: "second" } });
        const secondId = emu.state.leads.find((l) => l.subject === "second")?.leadid;
        await client.remove("leads", bare.entityId ?? "");

        expect(represented.status).toBe(201);
        expect(represented.data.subject).toBe(LEAD.subject);
        expect(bare.status).toBe(204);
        expect(bare.data).toBeUndefined();
        expect(bare.entityId).toBe(secondId);
        const [withPrefer, withoutPrefer, deletion] = proxy.seen;
        expect(withPrefer.headers["content-type"]).toBe("application/json");
        expect(withPrefer.headers.prefer).toBe("return=representation");
        expect(withoutPrefer.headers["content-type"]).toBe("application/json");
        expect(withoutPrefer.headers.prefer).toBeUndefined();
        expect({ method: deletion.method, url: deletion.url }).toEqual({ method: "DELETE", url: `${API}leads(${bare.entityId})` });
        expect(deletion.headers["content-type"]).toBeUndefined();
        // Every request, not just the first, is authenticated and versioned.
        for (const { headers } of proxy.seen) {
            expect(headers.authorization).toBe(`Bearer ${TOKEN}`);
            expect(headers["odata-version"]).toBe("4.0");
            expect(headers["odata-maxversion"]).toBe("4.0");
            expect(headers.accept).toBe("application/json");
        }
        expect(emu.state.leads.map((l) => l.subject)).toEqual([LEAD.subject]);
    });

    test("requests go to <endpoint>/api/data/v9.2/ while the instance stays the token audience", () => {
        const client = new DataverseClient({
            instanceUrl: `${INSTANCE_URL}//`,
            endpoint: `${emu.origin}/`,
            credential: staticTokenCredential(TOKEN),
        });

        expect(client.instanceUrl).toBe(INSTANCE_URL);
        expect(client.baseUrl).toBe(`${emu.origin}${API}`);
        expect(client.reference("roles", SYSTEM_ADMINISTRATOR_ROLE_ID.toUpperCase())).toBe(
            `${emu.origin}${API}roles(${SYSTEM_ADMINISTRATOR_ROLE_ID})`,
        );
        expect(new DataverseClient({ instanceUrl: INSTANCE_URL, credential: staticTokenCredential(TOKEN) }).baseUrl).toBe(
            `${INSTANCE_URL}${API}`,
        );
    });
});

describe("tokens", () => {
    test("the credential is asked for <instance>/.default", async () => {
        const { credential, scopes } = scriptedCredential({ token: TOKEN, expiresInMs: 3_600_000 });
        const client = newClient({ instanceUrl: `${INSTANCE_URL}/`, credential });

        await client.get("WhoAmI");

        expect(scopes).toEqual([SCOPE]);
    });

    test("one token serves many requests", async () => {
        const proxy = await startCaptureProxy(emu.origin);
        const { credential, scopes } = scriptedCredential(
            { token: "first", expiresInMs: 3_600_000 },
            { token: "second", expiresInMs: 3_600_000 },
        );
        const client = newClient({ endpoint: proxy.origin, credential });

        for (let i = 0; i < 5; i++) await client.get("WhoAmI");

        expect(scopes).toHaveLength(1);
        expect(proxy.seen.map((r) => r.headers.authorization)).toEqual(Array(5).fill("Bearer first"));
    });

    test("a token within two minutes of expiry is replaced before use", async () => {
        const proxy = await startCaptureProxy(emu.origin);
        const { credential, scopes } = scriptedCredential(
            { token: "expiring", expiresInMs: 90_000 },
            { token: "fresh", expiresInMs: 3_600_000 },
            { token: "unexpected", expiresInMs: 3_600_000 },
        );
        const client = newClient({ endpoint: proxy.origin, credential });

        for (let i = 0; i < 3; i++) await client.get("WhoAmI");

        expect(scopes).toHaveLength(2);
        expect(proxy.seen.map((r) => r.headers.authorization)).toEqual(["Bearer expiring", "Bearer fresh", "Bearer fresh"]);
    });

    test("a 401 gets exactly one fresh token and one replay", async () => {
        await restartEmulator({ tokens: { fresh: "admin" } });
        const { credential, scopes } = scriptedCredential(
            { token: "revoked", expiresInMs: 3_600_000 },
            { token: "fresh", expiresInMs: 3_600_000 },
        );
        const { client, retries } = retryingClient({ credential });

        const me = await client.get<Row>("WhoAmI");

        expect(me.UserId).toBe(ADMIN_USER_ID);
        expect(scopes).toEqual([SCOPE, SCOPE]);
        expect(apiRequests().map((r) => r.status)).toEqual([401, 200]);
        // The replay is immediate: a 401 is not a service under load.
        expect(retries).toEqual([]);
    });

    test("a second 401 is final, and the rejected token is nowhere in the error", async () => {
        await restartEmulator({ tokens: { "only-this-one": "admin" } });
        const { credential, scopes } = scriptedCredential({ token: TOKEN, expiresInMs: 3_600_000 });
        const client = newClient({ credential });

        const err = await failureOf(client.get("WhoAmI"));

        expect(scopes).toHaveLength(2);
        expect(apiRequests().map((r) => r.status)).toEqual([401, 401]);
        expect({ status: err.status, code: err.code, method: err.method, path: err.path }).toEqual({
            status: 401,
            code: "0x8005F101",
            method: "GET",
            path: "WhoAmI",
        });
        expect(err.message).toContain("The requested resource requires authentication.");
        expectNoToken(err);
    });

    test("requests that start together share one token fetch", async () => {
        let calls = 0;
        const credential: TokenCredential = {
            async getToken(): Promise<AccessToken> {
                calls++;
                await new Promise((r) => setTimeout(r, 50));
                return { token: TOKEN, expiresOnTimestamp: Date.now() + 3_600_000 };
            },
        };
        const client = newClient({ credential });

        await Promise.all(Array.from({ length: 5 }, () => client.get("WhoAmI")));

        expect(calls).toBe(1);
        expect(apiRequests().map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
    });

    test("the replay after a 401 does not use up one of the retries", async () => {
        await restartEmulator({ tokens: { fresh: "admin" } });
        emu.injectFault({ path: /WhoAmI/ }, 2, { kind: "status", status: 503 });
        const { credential } = scriptedCredential({ token: "stale", expiresInMs: 3_600_000 }, { token: "fresh", expiresInMs: 3_600_000 });
        const client = newClient({ credential, retry: { maxAttempts: 2, baseDelayMs: 10 } });

        const me = await client.get<Row>("WhoAmI");

        expect(me.UserId).toBe(ADMIN_USER_ID);
        expect(apiRequests().map((r) => r.status)).toEqual([401, 503, 200]);
    });

    test("a 401 replay also applies to a POST, since the service did not run it", async () => {
        await restartEmulator({ tokens: { fresh: "admin" } });
        const { credential } = scriptedCredential({ token: "revoked", expiresInMs: 3_600_000 }, { token: "fresh", expiresInMs: 3_600_000 });
        const client = newClient({ credential });

        const id = await client.create("leads", LEAD);

        expect(apiRequests("POST").map((r) => r.status)).toEqual([401, 204]);
        expect(emu.state.leads.map((l) => l.leadid)).toEqual([id]);
    });

    test("a credential that throws gives CredentialUnavailable with sign-in advice, and nothing is sent", async () => {
        const credential: TokenCredential = {
            async getToken(): Promise<AccessToken> {
                throw new Error("AzureCliCredential: Please run 'az login' to set up an account");
            },
        };
        const client = newClient({ credential });

        const err = await failureOf(client.get("WhoAmI"));

        expect({ status: err.status, code: err.code, method: err.method, path: err.path }).toEqual({
            status: 0,
            code: "CredentialUnavailable",
            method: "TOKEN",
            path: "",
        });
        expect(err.hasCode("CredentialUnavailable")).toBe(true);
        expect(err.message).toContain(`Could not get a token for ${INSTANCE_URL}`);
        expect(err.message).toContain("AzureCliCredential: Please run 'az login'");
        expect(err.message).toContain("Sign in with 'az login' or configure workload identity.");
        expect(emu.requests).toHaveLength(0);
    });

    test("a credential that returns no token gives CredentialUnavailable", async () => {
        const credential: TokenCredential = { getToken: async () => null };
        const client = newClient({ credential });

        const err = await failureOf(client.get("WhoAmI"));

        expect(err.code).toBe("CredentialUnavailable");
        expect(err.message).toBe(`The credential returned no token for ${INSTANCE_URL}`);
        expect(emu.requests).toHaveLength(0);
    });

    test("the bearer token appears in no error: OData, retried, transport, timeout", async () => {
        const client = newClient({ retry: { maxAttempts: 2 }, timeoutMs: 100 });
        const errors: DataverseError[] = [];

        errors.push(await failureOf(client.get(`roles(${MISSING_ID})`)));
        emu.injectFault({ path: /WhoAmI/ }, "every", { kind: "status", status: 503 });
        errors.push(await failureOf(client.get("WhoAmI")));
        emu.clearFaults();
        emu.injectFault({ method: "POST", path: /leads/ }, 1, { kind: "reset" });
        errors.push(await failureOf(client.create("leads", LEAD)));
        emu.injectFault({ path: /businessunits/ }, "every", { kind: "delay", ms: 300 });
        errors.push(await failureOf(client.get("businessunits")));

        expect(errors.map((e) => e.status)).toEqual([404, 503, 0, 0]);
        for (const err of errors) expectNoToken(err);
    });
});

describe("OData errors", () => {
    test("a missing record is a DataverseError with status, code, the service's message, method and path", async () => {
        const client = newClient();

        const err = await failureOf(client.get(`roles(${MISSING_ID})`, { $select: "name" }));

        expect(err).toBeInstanceOf(Error);
        expect(err.name).toBe("DataverseError");
        expect(err.status).toBe(404);
        expect(err.code).toBe(ErrorCodes.objectDoesNotExist);
        expect(err.method).toBe("GET");
        // The query stays out of the path: it is noise in a diagnosis and may hold filter values.
        expect(err.path).toBe(`roles(${MISSING_ID})`);
        expect(err.requestId).toBeUndefined();
        expect(err.ambiguous).toBe(false);
        expect(err.message).toBe(
            `Dataverse GET roles(${MISSING_ID}) failed: 404 0x80040217 Entity 'role' With Id = ${MISSING_ID} Does Not Exist`,
        );
        expect(apiRequests()).toHaveLength(1);
    });

    test("hasCode ignores case and the 0x prefix, on either side", async () => {
        const client = newClient();
        const notFound = await failureOf(client.get(`roles(${MISSING_ID})`));
        emu.injectFault({ method: "POST", path: /systemusers/ }, 1, {
            kind: "status",
            status: 412,
            code: "8004f511",
            message: "duplicate",
        });
        const duplicate = await failureOf(client.create("systemusers", { applicationid: APP_ID }));

        expect(notFound.hasCode("0x80040217")).toBe(true);
        expect(notFound.hasCode("80040217")).toBe(true);
        expect(notFound.hasCode("0X80040217")).toBe(true);
        expect(notFound.hasCode("0x80040218")).toBe(false);
        expect(duplicate.code).toBe("8004f511");
        expect(duplicate.hasCode(ErrorCodes.duplicateApplicationUser)).toBe(true);
        expect(duplicate.hasCode("0x8004F510")).toBe(false);
    });

    test("x-ms-service-request-id lands in requestId and the message", async () => {
        const requestId = "7d2b6e1c-5f8a-4e3b-9c1d-2a4b6c8d0e1f";
        const proxy = await startCaptureProxy(emu.origin, { "x-ms-service-request-id": requestId });
        const client = newClient({ endpoint: proxy.origin });

        const err = await failureOf(client.get(`systemusers(${MISSING_ID})`));

        expect(err.requestId).toBe(requestId);
        expect(err.status).toBe(404);
        expect(err.message).toBe(
            `Dataverse GET systemusers(${MISSING_ID}) failed: 404 0x80040217 Entity 'systemuser' With Id = ${MISSING_ID} Does Not Exist (request id ${requestId})`,
        );
    });

    test("a bad segment answers 0x80060888 with the service's text", async () => {
        const client = newClient();

        const err = await failureOf(client.get("nosuchset", { $select: "name" }));

        expect({ status: err.status, code: err.code, path: err.path }).toEqual({ status: 404, code: "0x80060888", path: "nosuchset" });
        expect(err.message).toContain("Resource not found for the segment 'nosuchset'.");
    });

    test("a non-OData error body (a gateway's text) still gives status and text", async () => {
        const stub = await startStub((_req, res) => {
            res.writeHead(502, { "Content-Type": "text/plain" });
            res.end("upstream connect error");
        });
        const client = newClient({ endpoint: stub.origin, retry: { maxAttempts: 1 } });

        const err = await failureOf(client.get("WhoAmI"));

        expect({ status: err.status, code: err.code }).toEqual({ status: 502, code: "" });
        expect(err.message).toBe("Dataverse GET WhoAmI failed: 502 upstream connect error");
        expect(stub.urls).toEqual([`${API}WhoAmI`]);
    });
});

describe("retries", () => {
    test("a GET throttled with 429 waits Retry-After seconds, then succeeds", async () => {
        emu.injectFault({ method: "GET", path: /WhoAmI/ }, 1, { kind: "status", status: 429, retryAfter: "1" });
        const { client, retries } = retryingClient();

        const started = Date.now();
        const me = await client.get<Row>("WhoAmI");
        const elapsed = Date.now() - started;

        expect(me.UserId).toBe(ADMIN_USER_ID);
        expect(apiRequests().map((r) => r.status)).toEqual([429, 200]);
        expect(retries).toHaveLength(1);
        expect(retries[0]).toMatchObject({ method: "GET", path: "WhoAmI", attempt: 1, delayMs: 1000 });
        expect(retries[0].reason).toContain("429 0x80072322 Number of requests exceeded the limit of 6000");
        expect(elapsed).toBeGreaterThanOrEqual(990);
        const [first, second] = emu.requests;
        expect(second.time - first.time).toBeGreaterThanOrEqual(990);
    });

    test("a Retry-After given as an HTTP date is honoured", async () => {
        // HTTP dates have whole seconds: two seconds ahead leaves a wait of one to two seconds.
        const retryAt = new Date(Date.now() + 2000);
        emu.injectFault({ method: "GET", path: /WhoAmI/ }, 1, { kind: "status", status: 429, retryAfter: retryAt.toUTCString() });
        const { client, retries } = retryingClient();

        await client.get("WhoAmI");

        expect(retries).toHaveLength(1);
        expect(retries[0].delayMs).toBeGreaterThan(900);
        expect(retries[0].delayMs).toBeLessThanOrEqual(2000);
        const [first, second] = emu.requests;
        expect(second.time).toBeGreaterThanOrEqual(Math.floor(retryAt.getTime() / 1000) * 1000 - 20);
        expect(second.time - first.time).toBeGreaterThanOrEqual(retries[0].delayMs - 20);
    });

    test("a Retry-After above maxDelayMs is capped to it", async () => {
        emu.injectFault({ method: "GET", path: /WhoAmI/ }, 1, { kind: "status", status: 429, retryAfter: "300" });
        const { client, retries } = retryingClient({ retry: { maxDelayMs: 50 } });

        await client.get("WhoAmI");

        expect(retries.map((r) => r.delayMs)).toEqual([50]);
        expect(apiRequests().map((r) => r.status)).toEqual([429, 200]);
    });

    test("502, 503 and 504 are retried with exponential full-jitter backoff", async () => {
        emu.injectFault({ path: /WhoAmI/ }, 1, { kind: "status", status: 503 });
        emu.injectFault({ path: /WhoAmI/ }, 2, { kind: "status", status: 502 });
        emu.injectFault({ path: /WhoAmI/ }, 3, { kind: "status", status: 504 });
        const { client, retries } = retryingClient({ retry: { baseDelayMs: 20 } });

        const me = await client.get<Row>("WhoAmI");

        expect(me.UserId).toBe(ADMIN_USER_ID);
        expect(apiRequests().map((r) => r.status)).toEqual([503, 502, 504, 200]);
        expect(retries.map((r) => r.attempt)).toEqual([1, 2, 3]);
        expect(retries.map((r) => r.reason.match(/failed: (\d{3})/)?.[1])).toEqual(["503", "502", "504"]);
        // Full jitter: each wait lies in [0, base·2^(attempt-1)).
        retries.forEach((r, i) => {
            expect(r.delayMs).toBeGreaterThanOrEqual(0);
            expect(r.delayMs).toBeLessThan(20 * 2 ** i);
            // The wait reported is the wait taken (timer granularity aside).
            expect(emu.requests[i + 1].time - emu.requests[i].time).toBeGreaterThanOrEqual(Math.floor(r.delayMs) - 2);
        });
    });

    test("a connection reset on a GET is retried", async () => {
        emu.injectFault({ method: "GET", path: /WhoAmI/ }, 1, { kind: "reset" });
        const { client, retries } = retryingClient();

        const me = await client.get<Row>("WhoAmI");

        expect(me.UserId).toBe(ADMIN_USER_ID);
        expect(apiRequests()).toHaveLength(2);
        expect(apiRequests()[1].status).toBe(200);
        expect(retries).toHaveLength(1);
        expect(retries[0].reason).toContain("ECONNRESET");
    });

    test("gives up after maxAttempts with the last error", async () => {
        emu.injectFault({ path: /WhoAmI/ }, 1, { kind: "status", status: 502, message: "first" });
        emu.injectFault({ path: /WhoAmI/ }, 2, { kind: "status", status: 504, message: "second" });
        emu.injectFault({ path: /WhoAmI/ }, "every", { kind: "status", status: 503, code: "0x80040216", message: "third" });
        const { client, retries } = retryingClient({ retry: { maxAttempts: 3 } });

        const err = await failureOf(client.get("WhoAmI"));

        expect(apiRequests().map((r) => r.status)).toEqual([502, 504, 503]);
        expect({ status: err.status, code: err.code }).toEqual({ status: 503, code: "0x80040216" });
        expect(err.message).toBe("Dataverse GET WhoAmI failed: 503 0x80040216 third");
        expect(retries.map((r) => r.attempt)).toEqual([1, 2]);
    });

    test("a Retry-After that would overrun maxElapsedMs fails at once instead of sleeping", async () => {
        emu.injectFault({ path: /WhoAmI/ }, "every", { kind: "status", status: 429, retryAfter: "30" });
        const { client, retries } = retryingClient({ retry: { maxElapsedMs: 5000, maxDelayMs: 60_000 } });

        const started = Date.now();
        const err = await failureOf(client.get("WhoAmI"));

        expect(Date.now() - started).toBeLessThan(1000);
        expect(err.status).toBe(429);
        expect(err.hasCode("0x80072322")).toBe(true);
        expect(apiRequests()).toHaveLength(1);
        expect(retries).toEqual([]);
    });

    test("maxElapsedMs bounds the total time of backoff retries", async () => {
        emu.injectFault({ path: /WhoAmI/ }, "every", { kind: "status", status: 503 });
        const { client, retries } = retryingClient({ retry: { maxAttempts: 1000, baseDelayMs: 40, maxDelayMs: 40, maxElapsedMs: 400 } });

        const started = Date.now();
        const err = await failureOf(client.get("WhoAmI"));
        const elapsed = Date.now() - started;

        expect(err.status).toBe(503);
        expect(elapsed).toBeLessThan(400 + 150);
        expect(apiRequests().length).toBeGreaterThan(3);
        expect(apiRequests().length).toBe(retries.length + 1);
        const waited = retries.reduce((sum, r) => sum + r.delayMs, 0);
        expect(waited).toBeLessThanOrEqual(400);
    });

    test("a POST throttled with 429 is retried: the service did not run it", async () => {
        emu.injectFault({ method: "POST", path: /leads/ }, 1, { kind: "status", status: 429 });
        const { client, retries } = retryingClient();

        const id = await client.create("leads", LEAD);

        expect(apiRequests("POST").map((r) => r.status)).toEqual([429, 204]);
        expect(retries).toHaveLength(1);
        expect(emu.state.leads.map((l) => l.leadid)).toEqual([id]);
    });

    test("a POST answered 503 is not replayed", async () => {
        emu.injectFault({ method: "POST", path: /leads/ }, 1, { kind: "status", status: 503 });
        const { client, retries } = retryingClient();

        const err = await failureOf(client.create("leads", LEAD));

        expect(apiRequests("POST")).toHaveLength(1);
        expect({ status: err.status, method: err.method, path: err.path }).toEqual({ status: 503, method: "POST", path: "leads" });
        expect(retries).toEqual([]);
    });

    test("a POST cut off by a connection reset is not replayed and is flagged ambiguous", async () => {
        emu.injectFault({ method: "POST", path: /leads/ }, 1, { kind: "reset" });
        const { client, retries } = retryingClient();

        const err = await failureOf(client.create("leads", LEAD));

        expect(apiRequests("POST")).toHaveLength(1);
        expect({ status: err.status, code: err.code, ambiguous: err.ambiguous }).toEqual({
            status: 0,
            code: "ECONNRESET",
            ambiguous: true,
        });
        expect(err.message).toMatch(/^Dataverse POST leads failed: ECONNRESET /);
        expect(retries).toEqual([]);
    });

    test("an idempotent POST is replayed after a 503 and after a reset", async () => {
        emu.injectFault({ method: "POST", path: /leads/ }, 1, { kind: "status", status: 503 });
        emu.injectFault({ method: "POST", path: /leads/ }, 3, { kind: "reset" });
        const { client, retries } = retryingClient();

        const afterStatus = await client.request("POST", "leads", { body: LEAD, idempotent: true });
        const afterReset = await client.request("POST", "leads", { body: LEAD, idempotent: true });

        expect(afterStatus.status).toBe(204);
        expect(afterReset.status).toBe(204);
        expect(apiRequests("POST").map((r) => r.status)).toEqual([503, 204, 0, 204]);
        expect(retries).toHaveLength(2);
        expect(emu.state.leads).toHaveLength(2);
    });

    test("an ECONNREFUSED is retried even for a POST, and is not ambiguous", async () => {
        const { client, retries } = retryingClient({ endpoint: await closedOrigin(), retry: { maxAttempts: 3 } });

        const err = await failureOf(client.create("leads", LEAD));

        expect({ status: err.status, code: err.code, ambiguous: err.ambiguous }).toEqual({
            status: 0,
            code: "ECONNREFUSED",
            ambiguous: false,
        });
        expect(retries.map((r) => r.attempt)).toEqual([1, 2]);
    });

    test("PATCH and DELETE are replayed after a 503", async () => {
        emu.injectFault({ method: "PATCH", path: /leads/ }, 1, { kind: "status", status: 503 });
        emu.injectFault({ method: "DELETE", path: /leads/ }, 1, { kind: "status", status: 503 });
        const client = newClient();
        const id = await client.create("leads", LEAD);

        // The emulator routes no PATCH on leads: the second answer proves the replay, whatever it is.
        const patchErr = await failureOf(client.update("leads", id, { subject: "x" }));
        await client.remove("leads", id);

        expect(patchErr.status).toBe(405);
        expect(apiRequests("PATCH").map((r) => r.status)).toEqual([503, 405]);
        expect(apiRequests("DELETE").map((r) => r.status)).toEqual([503, 204]);
        expect(emu.state.leads).toHaveLength(0);
    });

    test("4xx answers other than 429 are never retried", async () => {
        const { client, retries } = retryingClient();

        for (const status of [400, 403, 404, 405, 409, 412]) {
            emu.clearFaults();
            emu.injectFault({ path: /WhoAmI/ }, "every", { kind: "status", status, code: "0x80040203" });
            const before = emu.requests.length;

            const err = await failureOf(client.get("WhoAmI"));

            expect({ status: err.status, sent: emu.requests.length - before }).toEqual({ status, sent: 1 });
        }
        expect(retries).toEqual([]);
    });
});

describe("timeouts", () => {
    test("a GET slower than timeoutMs is retried and then succeeds", async () => {
        emu.injectFault({ method: "GET", path: /WhoAmI/ }, 1, { kind: "delay", ms: 600 });
        const { client, retries } = retryingClient({ timeoutMs: 150 });

        const started = Date.now();
        const me = await client.get<Row>("WhoAmI");

        expect(me.UserId).toBe(ADMIN_USER_ID);
        expect(Date.now() - started).toBeLessThan(600);
        expect(apiRequests()).toHaveLength(2);
        expect(retries).toHaveLength(1);
        expect(retries[0].reason).toMatch(/^Dataverse GET WhoAmI failed: (ECONNABORTED|ETIMEDOUT) timeout of 150ms exceeded/);
    });

    test("a POST that times out is not replayed, is ambiguous, and may have been carried out", async () => {
        emu.injectFault({ method: "POST", path: /leads/ }, 1, { kind: "delay", ms: 300 });
        const { client, retries } = retryingClient();

        const err = await failureOf(client.request("POST", "leads", { body: LEAD, timeoutMs: 100 }));

        expect({ status: err.status, ambiguous: err.ambiguous }).toEqual({ status: 0, ambiguous: true });
        expect(err.code).toMatch(/^(ECONNABORTED|ETIMEDOUT)$/);
        expect(retries).toEqual([]);
        // The reason a blind replay is unsafe: the service finishes the create after the client gave up.
        await new Promise((resolve) => setTimeout(resolve, 400));
        expect(apiRequests("POST")).toHaveLength(1);
        expect(emu.state.leads).toHaveLength(1);
    });
});

describe("polling pace", () => {
    test("work of any length is noticed within max(250 ms, 20 % of its duration), at most one read per 5 s later on", () => {
        for (const durationMs of [1, 100, 249, 250, 900, 1_250, 3_000, 10_000, 60_000, 30 * 60_000]) {
            // Reads happen at 0, then after each wait the schedule gives; the work is noticed at the first read after it ends.
            let readAt = 0;
            let reads = 1;
            while (readAt < durationMs) {
                readAt += nextPollDelay(DEFAULT_POLLING_POLICY, readAt);
                reads++;
            }
            expect(readAt - durationMs).toBeLessThanOrEqual(Math.max(250, durationMs / 5));
            expect(nextPollDelay(DEFAULT_POLLING_POLICY, durationMs)).toBeLessThanOrEqual(5_000);
            if (durationMs >= 60_000) expect(reads).toBeLessThan(durationMs / 4_000 + 30);
        }
    });

    test("the pace comes from the client's options", () => {
        const client = newClient({ polling: { initialIntervalMs: 5, maxIntervalMs: 20 } });
        expect(client.polling).toEqual({ initialIntervalMs: 5, maxIntervalMs: 20 });
        expect(nextPollDelay(client.polling, 0)).toBe(5);
        expect(nextPollDelay(client.polling, 60_000)).toBe(20);
        expect(newClient().polling).toEqual(DEFAULT_POLLING_POLICY);
    });

    test("reads once even when the deadline has already passed, and stops at the deadline after a last read", async () => {
        const policy = { initialIntervalMs: 1, maxIntervalMs: 2 };
        let reads = 0;
        expect(await poll(policy, Date.now() - 1_000, async () => (++reads === 1 ? "done" : undefined))).toBe("done");
        expect(reads).toBe(1);

        reads = 0;
        const deadline = Date.now() + 30;
        expect(await poll(policy, deadline, async () => (reads++, undefined))).toBeUndefined();
        expect(Date.now()).toBeGreaterThanOrEqual(deadline);
        expect(reads).toBeGreaterThan(1);
    });
});

describe("waiting for something made elsewhere to reach Dataverse", () => {
    const servicePrincipal = { firstDelayMs: 5_000, maxDelayMs: 60_000 };

    test("doubles the caller's first wait up to its longest, unless the client sets its own first wait", () => {
        const delays = (client: DataverseClient) => [1, 2, 3, 4, 5, 6].map((attempt) => client.propagationDelay(attempt, servicePrincipal));
        expect(delays(newClient())).toEqual([5_000, 10_000, 20_000, 40_000, 60_000, 60_000]);
        expect(delays(newClient({ propagationFirstDelayMs: 10 }))).toEqual([10, 20, 40, 80, 160, 320]);
        expect(delays(newClient({ propagationFirstDelayMs: 90_000 }))).toEqual([90_000, 90_000, 90_000, 90_000, 90_000, 90_000]);
    });
});

describe("polling a solution import", () => {
    const saved = { endpoint: process.env.DATAVERSE_ENDPOINT, token: process.env.DATAVERSE_TOKEN };
    let dir: string;
    beforeEach(() => {
        dir = fs.mkdtempSync(path.join(os.tmpdir(), "lead-solution-"));
        process.env.DATAVERSE_ENDPOINT = emu.origin;
        process.env.DATAVERSE_TOKEN = "poll-token";
    });
    afterEach(() => {
        jest.restoreAllMocks();
        fs.rmSync(dir, { recursive: true, force: true });
        for (const [key, value] of [
            ["DATAVERSE_ENDPOINT", saved.endpoint],
            ["DATAVERSE_TOKEN", saved.token],
        ] as const) {
            if (value === undefined) delete process.env[key];
            else process.env[key] = value;
        }
    });

    async function createSolution(): Promise<Record<string, unknown>> {
        const source = path.join(dir, "lead-writer.zip");
        fs.writeFileSync(source, buildSolutionZip({ uniqueName: LEAD_WRITER_SOLUTION_UNIQUE_NAME, version: "1.0.0.0", managed: true }));
        const news = { instanceUrl: INSTANCE_URL, source, importTimeoutMinutes: 30, retainOnDelete: false, providerVersion: "test" };
        const checked = await solutionProvider.check!({}, news);
        expect(checked.failures ?? []).toEqual([]);
        const created = await solutionProvider.create!(checked.inputs);
        return created.outs as Record<string, unknown>;
    }

    test("an import that succeeded is installed even when the clock moves on between two reads (a busy machine)", async () => {
        // Every reading of the clock is 5 ms later than the one before, as on a machine busy with other work.
        const realNow = Date.now.bind(Date);
        let skew = 0;
        jest.spyOn(Date, "now").mockImplementation(() => realNow() + (skew += 5));

        const outs = await createSolution();

        expect(outs).toMatchObject({ uniqueName: LEAD_WRITER_SOLUTION_UNIQUE_NAME, installedVersion: "1.0.0.0", adopted: false });
        expect(emu.state.importJobs).toHaveLength(1);
    });
});

describe("concurrency", () => {
    test("maxConcurrency: 2 keeps at most two requests in flight at the server", async () => {
        emu.injectFault({ path: /WhoAmI/ }, "every", { kind: "delay", ms: 150 });
        const proxy = await startCaptureProxy(emu.origin);
        const client = newClient({ endpoint: proxy.origin, maxConcurrency: 2 });

        const started = Date.now();
        const answers = await Promise.all(Array.from({ length: 6 }, () => client.get<Row>("WhoAmI")));

        expect(answers.map((a) => a.UserId)).toEqual(Array(6).fill(ADMIN_USER_ID));
        expect(proxy.seen).toHaveLength(6);
        expect(proxy.peakInFlight()).toBe(2);
        // Three waves of two.
        expect(Date.now() - started).toBeGreaterThanOrEqual(3 * 150 - 20);
    });

    test("the measurement sees more in flight when the limit allows it", async () => {
        emu.injectFault({ path: /WhoAmI/ }, "every", { kind: "delay", ms: 150 });
        const proxy = await startCaptureProxy(emu.origin);
        const client = newClient({ endpoint: proxy.origin, maxConcurrency: 6 });

        await Promise.all(Array.from({ length: 6 }, () => client.get("WhoAmI")));

        expect(proxy.peakInFlight()).toBe(6);
    });
});

describe("pure helpers", () => {
    test("odataString single-quotes and doubles inner quotes", () => {
        expect(odataString("O'Neil")).toBe("'O''Neil'");
        expect(odataString("")).toBe("''");
        expect(odataString("''")).toBe("''''''");
        expect(odataString("Microsoft Marketplace Lead Writer")).toBe("'Microsoft Marketplace Lead Writer'");
    });

    test("odataGuid lower-cases a GUID and refuses anything else", () => {
        expect(odataGuid("6F1C2A9E-0D4B-4C1E-9A57-3B8E2F40B001")).toBe("6f1c2a9e-0d4b-4c1e-9a57-3b8e2f40b001");
        for (const bad of [
            "",
            "not-a-guid",
            `{${ROOT_BUSINESS_UNIT_ID}}`,
            `${ROOT_BUSINESS_UNIT_ID})/roles(x`,
            `${ROOT_BUSINESS_UNIT_ID} `,
            "6f1c2a9e0d4b4c1e9a573b8e2f40b001",
        ]) {
            expect(() => odataGuid(bad)).toThrow(`"${bad}" is not a GUID`);
        }
    });

    test("entityIdFromHeader takes the trailing key, lower-cased", () => {
        expect(entityIdFromHeader(`${INSTANCE_URL}/api/data/v9.2/systemusers(6F1C2A9E-0D4B-4C1E-9A57-3B8E2F40A001)`)).toBe(ADMIN_USER_ID);
        expect(entityIdFromHeader(`${INSTANCE_URL}/api/data/v9.2/leads(${MISSING_ID})  `)).toBe(MISSING_ID);
        expect(entityIdFromHeader(undefined)).toBeUndefined();
        expect(entityIdFromHeader("")).toBeUndefined();
        expect(entityIdFromHeader(`${INSTANCE_URL}/api/data/v9.2/systemusers`)).toBeUndefined();
        expect(entityIdFromHeader(`${INSTANCE_URL}/api/data/v9.2/contacts(emailaddress1='a@b.c')`)).toBeUndefined();
    });

    test("parseRetryAfter reads delta-seconds, fractional seconds and HTTP dates, and ignores garbage", () => {
        const now = Date.UTC(2024, 0, 1, 12, 0, 0);
        expect(parseRetryAfter("1", now)).toBe(1000);
        expect(parseRetryAfter(" 30 ", now)).toBe(30_000);
        expect(parseRetryAfter("0", now)).toBe(0);
        expect(parseRetryAfter("0.5", now)).toBe(500);
        expect(parseRetryAfter("2.25", now)).toBe(2250);
        expect(parseRetryAfter("Mon, 01 Jan 2024 12:00:05 GMT", now)).toBe(5000);
        // A date already past means "now", never a negative wait.
        expect(parseRetryAfter("Mon, 01 Jan 2024 11:59:00 GMT", now)).toBe(0);
        expect(parseRetryAfter(undefined, now)).toBeUndefined();
        expect(parseRetryAfter("", now)).toBeUndefined();
        expect(parseRetryAfter("soon", now)).toBeUndefined();
        expect(parseRetryAfter("120 seconds", now)).toBeUndefined();
        // Date.parse would read these as dates in the past, i.e. "retry at once".
        for (const loose of ["-1", "1.", ".5", "+5", "Model 3", "abc 12", "2024-01-01T12:00:05Z"]) {
            expect([loose, parseRetryAfter(loose, now)]).toEqual([loose, undefined]);
        }
    });
});

describe("entity operations against the emulator", () => {
    test("create() returns the id from OData-EntityId; update() and remove() reach the same row", async () => {
        emu.registerApplication(APP_ID);
        const client = newClient();

        const id = await client.create("systemusers", APP_USER);

        const row = emu.state.systemUsers.find((u) => u.applicationid === APP_ID);
        expect(id).toBe(row?.systemuserid);
        expect(row?.businessunitid).toBe(ROOT_BUSINESS_UNIT_ID);
        const read = await client.get<Row>(`systemusers(${id})`, { $select: "applicationid,accessmode,isdisabled" });
        expect(read).toMatchObject({ applicationid: APP_ID, accessmode: 4, isdisabled: false });

        await client.update("systemusers", id.toUpperCase(), { isdisabled: true });
        await client.remove("systemusers", id);

        expect(row).toMatchObject({ isdisabled: true, deletedstate: 1 });
        expect(apiRequests().map((r) => `${r.method} ${r.path} ${r.status}`)).toEqual([
            `POST ${API}systemusers 204`,
            `GET ${API}systemusers(${id})?$select=applicationid,accessmode,isdisabled 200`,
            `PATCH ${API}systemusers(${id}) 204`,
            `DELETE ${API}systemusers(${id}) 204`,
        ]);
    });

    test("a service error on create() is the service's, not a missing-header error", async () => {
        const client = newClient();

        const err = await failureOf(client.create("systemusers", APP_USER));

        expect(err.status).toBe(400);
        expect(err.hasCode(ErrorCodes.azureApplicationIdNotFound)).toBe(true);
        expect(err.message).toContain(`We didn't find that application ID ${APP_ID}`);
    });

    test("associate and disassociate round-trip through systemuserroles_association", async () => {
        emu.registerApplication(APP_ID);
        const client = newClient();
        const userId = await client.create("systemusers", APP_USER);
        const roles = async (): Promise<string[]> => {
            const user = await client.get<{ systemuserroles_association: { roleid: string; name: string }[] }>(`systemusers(${userId})`, {
                $select: "fullname",
                $expand: "systemuserroles_association($select=roleid,name)",
            });
            return user.systemuserroles_association.map((r) => `${r.roleid} ${r.name}`);
        };

        await client.associate("systemusers", userId, "systemuserroles_association", "roles", SYSTEM_ADMINISTRATOR_ROLE_ID);
        const afterAssociate = await roles();
        await client.disassociate("systemusers", userId, "systemuserroles_association", SYSTEM_ADMINISTRATOR_ROLE_ID);
        const afterDisassociate = await roles();

        expect(afterAssociate).toEqual([`${SYSTEM_ADMINISTRATOR_ROLE_ID} System Administrator`]);
        expect(afterDisassociate).toEqual([]);
        const link = emu.requests.find((r) => r.method === "POST" && r.path.endsWith("/$ref"));
        expect(link?.path).toBe(`${API}systemusers(${userId})/systemuserroles_association/$ref`);
        expect(link?.body).toEqual({ "@odata.id": `${emu.origin}${API}roles(${SYSTEM_ADMINISTRATOR_ROLE_ID})` });
        expect(apiRequests("DELETE").map((r) => r.path)).toEqual([
            `${API}systemusers(${userId})/systemuserroles_association(${SYSTEM_ADMINISTRATOR_ROLE_ID})/$ref`,
        ]);
    });

    test("associate() is replayed after a connection reset, leaving one link", async () => {
        emu.registerApplication(APP_ID);
        const client = newClient();
        const userId = await client.create("systemusers", APP_USER);
        emu.injectFault({ method: "POST", path: /\/\$ref$/ }, 1, { kind: "reset" });

        await client.associate("systemusers", userId, "systemuserroles_association", "roles", SYSTEM_ADMINISTRATOR_ROLE_ID);

        expect(
            apiRequests("POST")
                .filter((r) => r.path.endsWith("$ref"))
                .map((r) => r.status),
        ).toEqual([0, 204]);
        expect(emu.state.userRoles.filter((l) => l.systemuserid === userId)).toEqual([
            { systemuserid: userId, roleid: SYSTEM_ADMINISTRATOR_ROLE_ID },
        ]);
    });

    test("a role of another business unit is refused with UserInWrongBusiness", async () => {
        emu.registerApplication(APP_ID);
        const client = newClient();
        const userId = await client.create("systemusers", {
            applicationid: APP_ID,
            accessmode: 4,
            "businessunitid@odata.bind": `/businessunits(${CHILD_BUSINESS_UNIT_ID})`,
        });

        const err = await failureOf(
            client.associate("systemusers", userId, "systemuserroles_association", "roles", SYSTEM_ADMINISTRATOR_ROLE_ID),
        );

        expect(err.status).toBe(400);
        expect(err.hasCode(ErrorCodes.userInWrongBusiness)).toBe(true);
        // Not retried: one attempt, though associate() is idempotent.
        expect(apiRequests("POST").filter((r) => r.path.endsWith("$ref"))).toHaveLength(1);
    });

    test("boundAction changes a role's privileges and callFunction reads them back", async () => {
        const client = newClient();
        const [privilege] = await client.list<{ privilegeid: string; name: string }>("privileges", {
            $select: "privilegeid,name",
            $filter: `name eq ${odataString("prvReadLead")}`,
        });
        type RolePrivileges = { RolePrivileges: { PrivilegeId: string; PrivilegeName: string; Depth: string }[] };
        const readLead = async (): Promise<string | undefined> => {
            const result = await client.callFunction<RolePrivileges>("RetrieveRolePrivilegesRole", {
                RoleId: odataGuid(SYSTEM_ADMINISTRATOR_ROLE_ID),
            });
            return result.RolePrivileges.find((p) => p.PrivilegeId === privilege.privilegeid)?.Depth;
        };

        const before = await readLead();
        await client.boundAction("roles", SYSTEM_ADMINISTRATOR_ROLE_ID, "RemovePrivilegeRole", {
            Privilege: { "@odata.type": "Microsoft.Dynamics.CRM.privilege", privilegeid: privilege.privilegeid },
        });
        const removed = await readLead();
        const answer = await client.boundAction<unknown>(
            "roles",
            SYSTEM_ADMINISTRATOR_ROLE_ID,
            "AddPrivilegesRole",
            {
                Privileges: [
                    {
                        Depth: "Local",
                        PrivilegeId: privilege.privilegeid,
                        BusinessUnitId: ROOT_BUSINESS_UNIT_ID,
                        PrivilegeName: "prvReadLead",
                    },
                ],
            },
            { idempotent: true },
        );
        const added = await readLead();

        expect(privilege.name).toBe("prvReadLead");
        expect([before, removed, added]).toEqual(["Global", undefined, "Local"]);
        expect(answer).toBeUndefined();
        expect(apiRequests("POST").map((r) => r.path)).toEqual([
            `${API}roles(${SYSTEM_ADMINISTRATOR_ROLE_ID})/Microsoft.Dynamics.CRM.RemovePrivilegeRole`,
            `${API}roles(${SYSTEM_ADMINISTRATOR_ROLE_ID})/Microsoft.Dynamics.CRM.AddPrivilegesRole`,
        ]);
        expect(apiRequests("GET").filter((r) => r.path.includes("RetrieveRolePrivilegesRole"))[0].path).toBe(
            `${API}RetrieveRolePrivilegesRole(RoleId=${SYSTEM_ADMINISTRATOR_ROLE_ID})`,
        );
    });

    test("list() of business units with no parent gives the one root", async () => {
        const client = newClient();

        const rows = await client.list<Row>("businessunits", {
            $select: "businessunitid,name",
            $filter: "_parentbusinessunitid_value eq null",
        });

        expect(rows).toEqual([expect.objectContaining({ businessunitid: ROOT_BUSINESS_UNIT_ID, name: ROOT_BUSINESS_UNIT_NAME })]);
        expect(apiRequests().map((r) => r.path)).toEqual([
            `${API}businessunits?$select=businessunitid,name&$filter=_parentbusinessunitid_value eq null`,
        ]);
    });

    test("list() follows @odata.nextLink to the endpoint, with the paging cookie intact", async () => {
        // A Dataverse skiptoken: an XML cookie whose inner cookie is itself percent-encoded.
        const skiptoken =
            '<cookie pagenumber="2" pagingcookie="%3ccookie%20page%3d%221%22%3e%3caccountid%20last%3d%22%7bA%7d%22%20%2f%3e%3c%2fcookie%3e" istracking="False" />';
        const next = new URL(`${INSTANCE_URL}${API}accounts`);
        next.searchParams.set("$select", "name");
        next.searchParams.set("$skiptoken", skiptoken);
        const received: URLSearchParams[] = [];
        const stub = await startStub((req, res) => {
            const params = new URL(req.url ?? "/", "http://stub").searchParams;
            received.push(params);
            res.writeHead(200, { "Content-Type": "application/json" });
            const firstPage = !params.has("$skiptoken");
            res.end(
                JSON.stringify(
                    firstPage ? { value: [{ name: "a" }, { name: "b" }], "@odata.nextLink": next.toString() } : { value: [{ name: "c" }] },
                ),
            );
        });
        const client = newClient({ endpoint: stub.origin });

        const rows = await client.list<{ name: string }>("accounts", { $select: "name" });

        expect(rows.map((r) => r.name)).toEqual(["a", "b", "c"]);
        expect(stub.urls.map((u) => u.split("?")[0])).toEqual([`${API}accounts`, `${API}accounts`]);
        expect(received[1].get("$skiptoken")).toBe(skiptoken);
        expect(received[1].get("$select")).toBe("name");
    });
});

describe("clientFromEnvironment", () => {
    const saved = { endpoint: process.env.DATAVERSE_ENDPOINT, token: process.env.DATAVERSE_TOKEN };
    afterEach(() => {
        for (const [key, value] of [
            ["DATAVERSE_ENDPOINT", saved.endpoint],
            ["DATAVERSE_TOKEN", saved.token],
        ] as const) {
            if (value === undefined) delete process.env[key];
            else process.env[key] = value;
        }
    });

    test("DATAVERSE_ENDPOINT and DATAVERSE_TOKEN send requests to the endpoint with that token", async () => {
        await restartEmulator({ tokens: { "env-token": "admin" } });
        const proxy = await startCaptureProxy(emu.origin);
        process.env.DATAVERSE_ENDPOINT = ` ${proxy.origin}/ `;
        process.env.DATAVERSE_TOKEN = " env-token\n";

        const client = clientFromEnvironment(INSTANCE_URL);
        const me = await client.get<Row>("WhoAmI");

        expect(me.UserId).toBe(ADMIN_USER_ID);
        expect(client.instanceUrl).toBe(INSTANCE_URL);
        expect(client.baseUrl).toBe(`${proxy.origin}${API}`);
        expect(proxy.seen.map((r) => r.headers.authorization)).toEqual(["Bearer env-token"]);
        expect(emu.requests.map((r) => r.principal)).toEqual([ADMIN_USER_ID]);
    });

    test("the other options reach the client", async () => {
        process.env.DATAVERSE_ENDPOINT = emu.origin;
        process.env.DATAVERSE_TOKEN = TOKEN;
        emu.injectFault({ path: /WhoAmI/ }, "every", { kind: "status", status: 503 });
        const retries: RetryNotice[] = [];

        const client = clientFromEnvironment(INSTANCE_URL, {
            retry: { maxAttempts: 2, baseDelayMs: 1 },
            onRetry: (info) => retries.push(info),
        });
        const err = await failureOf(client.get("WhoAmI"));

        expect(err.status).toBe(503);
        expect(apiRequests()).toHaveLength(2);
        expect(retries).toHaveLength(1);
    });
});
