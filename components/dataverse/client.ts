import axios, { AxiosInstance, AxiosResponse } from "axios";
import { AccessToken, DefaultAzureCredential, TokenCredential } from "@azure/identity";

/**
 * The only HTTP code of the project: every Dataverse Web API call of every provider goes through here, so
 * authentication, OData errors, retries and throttling are handled once.
 */

const API_PATH = "/api/data/v9.2/";

/** A failed Dataverse call. Carries what is needed to diagnose it and never the bearer token. */
export class DataverseError extends Error {
    constructor(
        message: string,
        /** HTTP status; 0 when no response arrived. */
        public readonly status: number,
        /** Dataverse error code such as `0x8004F511`, or a transport code such as `ECONNRESET`; may be empty. */
        public readonly code: string,
        public readonly method: string,
        /** Request path below `/api/data/v9.2/`, without the query. */
        public readonly path: string,
        /** `x-ms-service-request-id` of the failed response, for Microsoft support. */
        public readonly requestId?: string,
        /** True when the request may have been carried out although no answer arrived (a POST cut off mid-flight). */
        public readonly ambiguous = false,
    ) {
        super(message);
        // Closure serialization turns `super(message)` into `Error.call(this, message)`, which sets no message.
        this.message = message;
        this.name = "DataverseError";
    }

    /** Dataverse reports codes in varying case and sometimes without the 0x prefix. */
    hasCode(code: string): boolean {
        return this.code.toLowerCase().replace(/^0x/, "") === code.toLowerCase().replace(/^0x/, "");
    }
}

/** Well-known Dataverse error codes the providers react to (contract: "Requests and errors", per-step sections). */
export const ErrorCodes = {
    objectDoesNotExist: "0x80040217",
    duplicateApplicationUser: "0x8004F511",
    azureApplicationIdNotFound: "0x8004F510",
    userInWrongBusiness: "0x80041409",
    anotherImportRunning: "0x80071151",
} as const;

export interface RetryPolicy {
    /** Attempts in all, the first one included. */
    maxAttempts: number;
    /** No retry is started once this much time has passed since the first attempt. */
    maxElapsedMs: number;
    /** First backoff step when the service gives no `Retry-After`; doubles each attempt, with full jitter. */
    baseDelayMs: number;
    /** Upper bound of one wait, `Retry-After` included. */
    maxDelayMs: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = {
    maxAttempts: 6,
    maxElapsedMs: 10 * 60_000,
    baseDelayMs: 500,
    // Service protection asks for waits of up to five minutes.
    maxDelayMs: 5 * 60_000,
};

/** How often running work (a solution import) is read while waiting for it. */
export interface PollingPolicy {
    /** Wait before the second read, and the shortest wait: short work is noticed this soon. */
    initialIntervalMs: number;
    /** Longest wait between two reads, however long the work has been running. */
    maxIntervalMs: number;
}

/**
 * Each wait is a fifth of the time waited so far, between the two bounds: work is noticed within
 * max(initialIntervalMs, 20 % of its duration), and a long import costs one read every few seconds.
 */
export const DEFAULT_POLLING_POLICY: PollingPolicy = {
    initialIntervalMs: 250,
    maxIntervalMs: 5_000,
};

/** The wait before the next read, once `elapsedMs` have passed since the first one. */
export function nextPollDelay(policy: PollingPolicy, elapsedMs: number): number {
    return Math.min(policy.maxIntervalMs, Math.max(policy.initialIntervalMs, elapsedMs / 5));
}

/**
 * Reads with `probe` until it answers or the deadline passes. The first read is unconditional and the deadline is
 * judged only after a read, so a slow clock or a busy machine can never turn finished work into a timeout.
 */
export async function poll<T>(policy: PollingPolicy, deadline: number, probe: () => Promise<T | undefined>): Promise<T | undefined> {
    const started = Date.now();
    for (;;) {
        const result = await probe();
        if (result !== undefined) return result;
        const now = Date.now();
        if (now >= deadline) return undefined;
        await sleep(Math.min(nextPollDelay(policy, now - started), deadline - now));
    }
}

export interface DataverseClientOptions {
    /** The instance, `https://<org>.crm<N>.dynamics.com`: the token audience. */
    instanceUrl: string;
    /** Origin the requests go to, if not the instance itself (an emulator or a private endpoint). */
    endpoint?: string;
    /** Where bearer tokens come from; `DefaultAzureCredential` by default. */
    credential?: TokenCredential;
    retry?: Partial<RetryPolicy>;
    /** How often running work is read while waiting for it. */
    polling?: Partial<PollingPolicy>;
    /** Per-request timeout. */
    timeoutMs?: number;
    /** Requests in flight at once; service protection allows 52 per user and server. */
    maxConcurrency?: number;
    /** Told about each wait before a retry, e.g. to log it. */
    onRetry?: (info: { method: string; path: string; attempt: number; delayMs: number; reason: string }) => void;
}

export interface RequestOptions {
    /** OData query options, already formatted (`$select`, `$filter`, `$expand`, …). */
    query?: Record<string, string>;
    body?: unknown;
    /** Adds `Prefer: return=representation` so a POST answers with the record. */
    returnRepresentation?: boolean;
    /**
     * For a POST whose replay is harmless (setting privileges, a read-only action): allows retrying it after an
     * ambiguous failure. Other POSTs are retried only when the service certainly did not run them (429).
     */
    idempotent?: boolean;
    timeoutMs?: number;
}

export interface DataverseResponse<T> {
    status: number;
    data: T;
    /** The id from `OData-EntityId` (a create answered 204). */
    entityId?: string;
}

export interface EntityCollection<T> {
    value: T[];
    "@odata.nextLink"?: string;
}

/** A credential that hands out one fixed token, e.g. from `DATAVERSE_TOKEN` or `az account get-access-token`. */
export function staticTokenCredential(token: string): TokenCredential {
    return {
        async getToken(): Promise<AccessToken> {
            return { token, expiresOnTimestamp: Date.now() + 60 * 60_000 };
        },
    };
}

/** A `$filter` string literal: single-quoted, a quote inside doubled. */
export function odataString(value: string): string {
    return `'${value.replace(/'/g, "''")}'`;
}

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A GUID for a key segment or `$filter` (unquoted); anything else is refused before it reaches a URL. */
export function odataGuid(value: string): string {
    if (!GUID.test(value)) {
        throw new Error(`"${value}" is not a GUID`);
    }
    return value.toLowerCase();
}

/** The id in an `OData-EntityId` header such as `…/systemusers(00000000-0000-0000-0000-000000000000)`. */
export function entityIdFromHeader(header: string | undefined): string | undefined {
    const match = header ? /\(([0-9a-fA-F-]{36})\)\s*$/.exec(header) : null;
    return match ? match[1].toLowerCase() : undefined;
}

/** Milliseconds to wait from a `Retry-After` header: delta-seconds or an HTTP date. */
export function parseRetryAfter(header: string | undefined, now = Date.now()): number | undefined {
    if (!header) return undefined;
    const trimmed = header.trim();
    if (/^\d+(\.\d+)?$/.test(trimmed)) {
        return Math.round(Number(trimmed) * 1000);
    }
    // Only the HTTP-date form (IMF-fixdate, "Sun, 06 Nov 1994 08:49:37 GMT"): Date.parse accepts far too much.
    if (!/^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/.test(trimmed)) return undefined;
    const date = Date.parse(trimmed);
    return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

// Arrays, not Sets: closure serialization stores a Set as a plain object, and `has` then fails in the engine.
const RETRYABLE_STATUS: readonly number[] = [429, 502, 503, 504];
// Transport failures worth another try; ECONNREFUSED alone proves the request never reached the service.
const RETRYABLE_TRANSPORT: readonly string[] = [
    "ECONNRESET",
    "ECONNREFUSED",
    "ETIMEDOUT",
    "ECONNABORTED",
    "EPIPE",
    "EAI_AGAIN",
    "ERR_SOCKET_CONNECTION_TIMEOUT",
];
const NEVER_SENT: readonly string[] = ["ECONNREFUSED", "EAI_AGAIN"];

/** Caps requests in flight; waiters are served in arrival order. */
class Semaphore {
    private available: number;
    private readonly waiting: (() => void)[];

    // Fields are set in the constructor: closure serialization keeps the constructor's body, not class fields.
    constructor(size: number) {
        this.available = size;
        this.waiting = [];
    }

    async run<T>(task: () => Promise<T>): Promise<T> {
        if (this.available > 0) {
            this.available--;
        } else {
            await new Promise<void>((resolve) => this.waiting.push(resolve));
        }
        try {
            return await task();
        } finally {
            const next = this.waiting.shift();
            if (next) next();
            else this.available++;
        }
    }
}

export function sleep(ms: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Downloads a file over https (the managed solution package), with the same bounded retries on transient failures. */
export async function downloadFile(url: string, timeoutMs = 120_000): Promise<Buffer> {
    for (let attempt = 1; ; attempt++) {
        const response = await axios
            .get<ArrayBuffer>(url, { responseType: "arraybuffer", timeout: timeoutMs, validateStatus: () => true })
            .catch((err: { code?: string; message: string }) => ({
                status: 0,
                statusText: `${err.code ?? ""} ${err.message}`,
                data: undefined,
            }));
        if (response.status === 200 && response.data) {
            return Buffer.from(response.data);
        }
        if (attempt >= 3 || (response.status !== 0 && !RETRYABLE_STATUS.includes(response.status))) {
            throw new Error(`Downloading ${url} failed: ${response.status} ${response.statusText}`);
        }
        await sleep(1000 * attempt);
    }
}

function errorFromResponse(method: string, path: string, response: AxiosResponse): DataverseError {
    const body = response.data as { error?: { code?: string; message?: string } } | string | undefined;
    const error = typeof body === "object" && body !== null ? body.error : undefined;
    const code = error?.code ?? "";
    const detail = error?.message ?? (typeof body === "string" && body.length > 0 ? body.slice(0, 500) : response.statusText);
    // Dataverse's own request id (public SDK code and captured responses read this header), what support asks for.
    const requestId = response.headers["x-ms-service-request-id"] as string | undefined;
    return new DataverseError(
        `Dataverse ${method} ${path} failed: ${response.status}${code ? ` ${code}` : ""} ${detail}${requestId ? ` (request id ${requestId})` : ""}`,
        response.status,
        code,
        method,
        path,
        requestId,
    );
}

/** A Dataverse Web API client for one instance. */
export class DataverseClient {
    /** The instance (`https://<org>.crm.dynamics.com`) this client acts on. */
    readonly instanceUrl: string;
    /** `<endpoint>/api/data/v9.2/`, where requests go; `@odata.id` references are built on it. */
    readonly baseUrl: string;
    private readonly http: AxiosInstance;
    private readonly credential: TokenCredential;
    private readonly retry: RetryPolicy;
    /** How often this client reads running work while waiting for it. */
    readonly polling: PollingPolicy;
    private readonly gate: Semaphore;
    private readonly onRetry: DataverseClientOptions["onRetry"];
    private cachedToken: AccessToken | undefined;
    private pendingToken: Promise<AccessToken> | undefined;

    constructor(options: DataverseClientOptions) {
        this.instanceUrl = options.instanceUrl.replace(/\/+$/, "");
        this.baseUrl = `${(options.endpoint ?? this.instanceUrl).replace(/\/+$/, "")}${API_PATH}`;
        this.credential = options.credential ?? new DefaultAzureCredential();
        this.retry = { ...DEFAULT_RETRY_POLICY, ...options.retry };
        this.polling = { ...DEFAULT_POLLING_POLICY, ...options.polling };
        this.gate = new Semaphore(options.maxConcurrency ?? 8);
        this.onRetry = options.onRetry;
        this.http = axios.create({
            baseURL: this.baseUrl,
            timeout: options.timeoutMs ?? 120_000,
            // Statuses are judged below, so that no axios error (whose config holds the Authorization header) escapes.
            validateStatus: () => true,
            maxRedirects: 0,
            headers: {
                Accept: "application/json",
                "OData-MaxVersion": "4.0",
                "OData-Version": "4.0",
            },
        });
    }

    /** Bearer token for the instance, reused until two minutes before it expires. */
    private async token(): Promise<string> {
        if (this.cachedToken && this.cachedToken.expiresOnTimestamp - Date.now() > 2 * 60_000) {
            return this.cachedToken.token;
        }
        // Requests that start together share one fetch instead of each starting a credential flow.
        this.pendingToken ??= this.fetchToken().finally(() => {
            this.pendingToken = undefined;
        });
        return (await this.pendingToken).token;
    }

    private async fetchToken(): Promise<AccessToken> {
        let token: AccessToken | null;
        try {
            token = await this.credential.getToken(`${this.instanceUrl}/.default`);
        } catch (err) {
            throw new DataverseError(
                `Could not get a token for ${this.instanceUrl}: ${(err as Error).message}. Sign in with 'az login' or configure workload identity.`,
                0,
                "CredentialUnavailable",
                "TOKEN",
                "",
            );
        }
        if (!token) {
            throw new DataverseError(`The credential returned no token for ${this.instanceUrl}`, 0, "CredentialUnavailable", "TOKEN", "");
        }
        this.cachedToken = token;
        return token;
    }

    /** One Web API request with authentication, throttling, retries and OData error decoding. */
    async request<T>(
        method: "GET" | "POST" | "PATCH" | "DELETE",
        path: string,
        options: RequestOptions = {},
    ): Promise<DataverseResponse<T>> {
        const started = Date.now();
        const replayable = method !== "POST" || options.idempotent === true;
        let refreshedToken = false;
        for (let attempt = 1; ; attempt++) {
            let failure: DataverseError;
            let retryAfterMs: number | undefined;
            try {
                const response = await this.gate.run(async () =>
                    this.http.request({
                        method,
                        url: path,
                        params: options.query,
                        data: options.body,
                        timeout: options.timeoutMs,
                        headers: {
                            Authorization: `Bearer ${await this.token()}`,
                            ...(options.body !== undefined ? { "Content-Type": "application/json" } : {}),
                            ...(options.returnRepresentation ? { Prefer: "return=representation" } : {}),
                        },
                    }),
                );
                if (response.status < 300) {
                    return {
                        status: response.status,
                        data: (response.data === "" ? undefined : response.data) as T,
                        entityId: entityIdFromHeader(response.headers["odata-entityid"] as string | undefined),
                    };
                }
                failure = errorFromResponse(method, path, response);
                if (response.status === 401 && !refreshedToken) {
                    // A revoked or expired token: one fresh token, then the request again (401 means it was not run).
                    refreshedToken = true;
                    this.cachedToken = undefined;
                    attempt--; // the replay with a fresh token is not one of the retries
                    continue;
                }
                if (!RETRYABLE_STATUS.includes(response.status) || (!replayable && response.status !== 429)) {
                    throw failure;
                }
                retryAfterMs = parseRetryAfter(response.headers["retry-after"] as string | undefined);
            } catch (err) {
                if (err instanceof DataverseError) throw err;
                const code = (err as { code?: string }).code ?? "";
                const sent = !NEVER_SENT.includes(code);
                failure = new DataverseError(
                    `Dataverse ${method} ${path} failed: ${code || "network error"} ${(err as Error).message}`,
                    0,
                    code,
                    method,
                    path,
                    undefined,
                    !replayable && sent,
                );
                if (!RETRYABLE_TRANSPORT.includes(code) || (!replayable && sent)) {
                    throw failure;
                }
            }
            const backoff = Math.random() * Math.min(this.retry.maxDelayMs, this.retry.baseDelayMs * 2 ** (attempt - 1));
            const delayMs = Math.min(this.retry.maxDelayMs, retryAfterMs ?? backoff);
            if (attempt >= this.retry.maxAttempts || Date.now() - started + delayMs > this.retry.maxElapsedMs) {
                throw failure;
            }
            this.onRetry?.({ method, path, attempt, delayMs, reason: failure.message });
            await sleep(delayMs);
        }
    }

    async get<T>(path: string, query?: Record<string, string>): Promise<T> {
        return (await this.request<T>("GET", path, { query })).data;
    }

    /** All rows of a query, following `@odata.nextLink` pages. */
    async list<T>(entitySet: string, query: Record<string, string>): Promise<T[]> {
        const rows: T[] = [];
        let page = await this.get<EntityCollection<T>>(entitySet, query);
        rows.push(...page.value);
        while (page["@odata.nextLink"]) {
            const next = new URL(page["@odata.nextLink"]);
            const relative = next.pathname.slice(next.pathname.indexOf(API_PATH) + API_PATH.length);
            page = await this.get<EntityCollection<T>>(relative, Object.fromEntries(next.searchParams));
            rows.push(...page.value);
        }
        return rows;
    }

    /** Creates a record and returns its id. Not replayed after an ambiguous failure: look the record up instead. */
    async create(entitySet: string, record: Record<string, unknown>): Promise<string> {
        const response = await this.request<Record<string, unknown>>("POST", entitySet, { body: record });
        if (!response.entityId) {
            throw new DataverseError(
                `Dataverse POST ${entitySet} answered without an OData-EntityId header`,
                response.status,
                "",
                "POST",
                entitySet,
            );
        }
        return response.entityId;
    }

    async update(entitySet: string, id: string, changes: Record<string, unknown>): Promise<void> {
        await this.request("PATCH", `${entitySet}(${odataGuid(id)})`, { body: changes });
    }

    async remove(entitySet: string, id: string): Promise<void> {
        await this.request("DELETE", `${entitySet}(${odataGuid(id)})`);
    }

    /** The `@odata.id` of a record, as `$ref` and `@odata.bind` bodies take it. */
    reference(entitySet: string, id: string): string {
        return `${this.baseUrl}${entitySet}(${odataGuid(id)})`;
    }

    /** Links two records through a collection-valued navigation property (`POST …/<navigation>/$ref`). */
    async associate(entitySet: string, id: string, navigation: string, targetSet: string, targetId: string): Promise<void> {
        await this.request("POST", `${entitySet}(${odataGuid(id)})/${navigation}/$ref`, {
            body: { "@odata.id": this.reference(targetSet, targetId) },
            // Linking is set-like: replaying it cannot create a second link.
            idempotent: true,
        });
    }

    /** Removes such a link (`DELETE …/<navigation>(<targetId>)/$ref`). */
    async disassociate(entitySet: string, id: string, navigation: string, targetId: string): Promise<void> {
        await this.request("DELETE", `${entitySet}(${odataGuid(id)})/${navigation}(${odataGuid(targetId)})/$ref`);
    }

    /** A bound action, `POST <set>(<id>)/Microsoft.Dynamics.CRM.<action>`. */
    async boundAction<T>(
        entitySet: string,
        id: string,
        action: string,
        body: unknown,
        options: Omit<RequestOptions, "body"> = {},
    ): Promise<T> {
        return (await this.request<T>("POST", `${entitySet}(${odataGuid(id)})/Microsoft.Dynamics.CRM.${action}`, { ...options, body }))
            .data;
    }

    /** An unbound action, `POST <action>`. */
    async action<T>(action: string, body: unknown, options: Omit<RequestOptions, "body"> = {}): Promise<T> {
        return (await this.request<T>("POST", action, { ...options, body })).data;
    }

    /** Reads with `probe` until it answers or the deadline passes, at this client's polling pace. */
    async pollUntil<T>(deadline: number, probe: () => Promise<T | undefined>): Promise<T | undefined> {
        // Not a same-named call: closure serialization would bind `pollUntil` inside this method to the method itself.
        return poll(this.polling, deadline, probe);
    }

    /** An unbound function with inline parameters, `GET <function>(Name=value,…)`; values already OData literals. */
    async callFunction<T>(name: string, parameters: Record<string, string> = {}): Promise<T> {
        const args = Object.entries(parameters)
            .map(([k, v]) => `${k}=${v}`)
            .join(",");
        return this.get<T>(`${name}(${args})`);
    }
}

/**
 * The client the providers use. Read at call time, never from state: `DATAVERSE_ENDPOINT` sends the requests to
 * another origin (the `/api/data/v9.2/` path stays) and `DATAVERSE_TOKEN` replaces the credential chain with a
 * fixed bearer token; otherwise `DefaultAzureCredential` (Azure CLI locally, workload identity in CI).
 */
export function clientFromEnvironment(
    instanceUrl: string,
    options: Omit<DataverseClientOptions, "instanceUrl" | "endpoint" | "credential"> = {},
): DataverseClient {
    const endpoint = process.env.DATAVERSE_ENDPOINT?.trim() || undefined;
    const token = process.env.DATAVERSE_TOKEN?.trim() || undefined;
    return new DataverseClient({
        ...options,
        instanceUrl,
        endpoint,
        credential: token ? staticTokenCredential(token) : undefined,
    });
}

// A plain object, not a Map: it is serialized with the providers (empty) and filled in the provider process.
const sharedClients: Record<string, DataverseClient> = {};

/**
 * The client for an instance shared by all operations of one provider process, so the engine's parallel steps share
 * one token and one concurrency cap.
 */
export function sharedClient(instanceUrl: string): DataverseClient {
    const key = [instanceUrl, process.env.DATAVERSE_ENDPOINT ?? "", process.env.DATAVERSE_TOKEN ?? ""].join("|");
    return (sharedClients[key] ??= clientFromEnvironment(instanceUrl));
}
