import axios, { AxiosInstance, AxiosResponse } from "axios";
import { AccessToken, DefaultAzureCredential, TokenCredential } from "@azure/identity";

/**
 * The request core every Microsoft API client of the project is built on (Dataverse Web API, Microsoft Graph):
 * bearer tokens from `@azure/identity` fetched once and reused, `429` with `Retry-After`, 5xx and connection resets
 * with bounded exponential backoff, a cap on requests in flight, and typed errors that never carry the token.
 * Both services answer errors as `{"error":{"code":"…","message":"…"}}`.
 */

/** A failed call to a Microsoft API. Carries what is needed to diagnose it and never the bearer token. */
export class ServiceError extends Error {
    /** HTTP status; 0 when no response arrived. */
    readonly status: number;
    /** The service's error code (`0x8004F511`, `Request_ResourceNotFound`) or a transport code (`ECONNRESET`); may be empty. */
    readonly code: string;
    readonly method: string;
    /** Request path below the API root, without the query. */
    readonly path: string;
    /** The service's request id of the failed response, for Microsoft support. */
    readonly requestId?: string;
    /** True when the request may have been carried out although no answer arrived (a POST cut off mid-flight). */
    readonly ambiguous: boolean;

    constructor(message: string, status: number, code: string, method: string, path: string, requestId?: string, ambiguous = false) {
        super(message);
        // Closure serialization turns `super(message)` into `Error.call(this, message)`, which sets no message;
        // fields are assigned here rather than as parameter properties for the same reason.
        this.message = message;
        this.name = "ServiceError";
        this.status = status;
        this.code = code;
        this.method = method;
        this.path = path;
        this.requestId = requestId;
        this.ambiguous = ambiguous;
    }

    /** Services report codes in varying case and, for Dataverse, sometimes without the 0x prefix. */
    hasCode(code: string): boolean {
        return this.code.toLowerCase().replace(/^0x/, "") === code.toLowerCase().replace(/^0x/, "");
    }
}

/** The fields of a {@link ServiceError}, for the factory that builds a service's own error class. */
export interface ServiceErrorInit {
    message: string;
    status: number;
    code: string;
    method: string;
    path: string;
    requestId?: string;
    ambiguous?: boolean;
}

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
    // Dataverse service protection asks for waits of up to five minutes.
    maxDelayMs: 5 * 60_000,
};

/** What a retry notice tells the caller. */
export interface RetryInfo {
    method: string;
    path: string;
    attempt: number;
    delayMs: number;
    reason: string;
}

/** The tuning a user may give any client built on the core. */
export interface RequestCoreOptions {
    /** Where bearer tokens come from; `DefaultAzureCredential` by default. */
    credential?: TokenCredential;
    retry?: Partial<RetryPolicy>;
    /** Per-request timeout. */
    timeoutMs?: number;
    /** Requests in flight at once. */
    maxConcurrency?: number;
    /** Told about each wait before a retry, e.g. to log it. */
    onRetry?: (info: RetryInfo) => void;
}

/** What distinguishes one service from another for the core. */
export interface ServiceProfile {
    /** The service's name at the start of error messages: "Dataverse", "Microsoft Graph". */
    service: string;
    /** API root the request paths are relative to, ending in `/`. */
    baseUrl: string;
    /** Token scope, `<resource>/.default`. */
    scope: string;
    /** What the token is for, as error messages name it (the instance, the Graph origin). */
    audience: string;
    /** Headers sent with every request besides `Authorization`. */
    headers: Record<string, string>;
    /** Response header holding the service's request id. */
    requestIdHeader: string;
    /** Builds the service's own error class, so callers keep `instanceof DataverseError` and the like. */
    errorOf: (init: ServiceErrorInit) => ServiceError;
}

export interface CoreRequest {
    /** Query options, already formatted. */
    query?: Record<string, string>;
    body?: unknown;
    /** Extra headers for this request (never `Authorization`). */
    headers?: Record<string, string>;
    /**
     * For a POST whose replay is harmless: allows retrying it after an ambiguous failure. Other POSTs are retried
     * only when the service certainly did not run them (429).
     */
    idempotent?: boolean;
    timeoutMs?: number;
}

export interface CoreResponse<T> {
    status: number;
    /** The decoded body; undefined for an empty one. */
    data: T;
    /** Response headers, names in lower case. */
    headers: Record<string, string | undefined>;
}

export type HttpMethod = "GET" | "POST" | "PATCH" | "DELETE";

/** A credential that hands out one fixed token, e.g. from `DATAVERSE_TOKEN` or `az account get-access-token`. */
export function staticTokenCredential(token: string): TokenCredential {
    return {
        async getToken(): Promise<AccessToken> {
            return { token, expiresOnTimestamp: Date.now() + 60 * 60_000 };
        },
    };
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
export const RETRYABLE_STATUS: readonly number[] = [429, 502, 503, 504];
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

export function sleep(ms: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, ms));
}

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

function errorFromResponse(profile: ServiceProfile, method: string, path: string, response: AxiosResponse): ServiceError {
    const body = response.data as { error?: { code?: string; message?: string } } | string | undefined;
    const error = typeof body === "object" && body !== null ? body.error : undefined;
    const code = error?.code ?? "";
    const detail = error?.message ?? (typeof body === "string" && body.length > 0 ? body.slice(0, 500) : response.statusText);
    const requestId = response.headers[profile.requestIdHeader] as string | undefined;
    return profile.errorOf({
        message: `${profile.service} ${method} ${path} failed: ${response.status}${code ? ` ${code}` : ""} ${detail}${requestId ? ` (request id ${requestId})` : ""}`,
        status: response.status,
        code,
        method,
        path,
        requestId,
    });
}

/** One service's authenticated, throttled, retrying HTTP channel. */
export class RequestCore {
    private readonly profile: ServiceProfile;
    private readonly http: AxiosInstance;
    private readonly credential: TokenCredential;
    private readonly retry: RetryPolicy;
    private readonly gate: Semaphore;
    private readonly onRetry: RequestCoreOptions["onRetry"];
    private cachedToken: AccessToken | undefined;
    private pendingToken: Promise<AccessToken> | undefined;

    constructor(profile: ServiceProfile, options: RequestCoreOptions = {}) {
        this.profile = profile;
        this.credential = options.credential ?? new DefaultAzureCredential();
        this.retry = { ...DEFAULT_RETRY_POLICY, ...options.retry };
        this.gate = new Semaphore(options.maxConcurrency ?? 8);
        this.onRetry = options.onRetry;
        this.cachedToken = undefined;
        this.pendingToken = undefined;
        this.http = axios.create({
            baseURL: profile.baseUrl,
            timeout: options.timeoutMs ?? 120_000,
            // Statuses are judged below, so that no axios error (whose config holds the Authorization header) escapes.
            validateStatus: () => true,
            maxRedirects: 0,
            headers: profile.headers,
        });
    }

    /**
     * The wait before retry number `attempt` (1 = the first retry): exponential from the policy's base, with full
     * jitter. Providers that retry a whole step themselves use it too, so one setting paces every retry.
     */
    backoffDelay(attempt: number): number {
        return Math.random() * Math.min(this.retry.maxDelayMs, this.retry.baseDelayMs * 2 ** (attempt - 1));
    }

    private failure(init: ServiceErrorInit): ServiceError {
        return this.profile.errorOf(init);
    }

    /** Bearer token for the service, reused until two minutes before it expires. */
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
            token = await this.credential.getToken(this.profile.scope);
        } catch (err) {
            throw this.failure({
                message: `Could not get a token for ${this.profile.audience}: ${(err as Error).message}. Sign in with 'az login' or configure workload identity.`,
                status: 0,
                code: "CredentialUnavailable",
                method: "TOKEN",
                path: "",
            });
        }
        if (!token) {
            throw this.failure({
                message: `The credential returned no token for ${this.profile.audience}`,
                status: 0,
                code: "CredentialUnavailable",
                method: "TOKEN",
                path: "",
            });
        }
        this.cachedToken = token;
        return token;
    }

    /** One request with authentication, throttling, retries and error decoding. */
    async send<T>(method: HttpMethod, path: string, options: CoreRequest = {}): Promise<CoreResponse<T>> {
        const started = Date.now();
        const replayable = method !== "POST" || options.idempotent === true;
        const service = this.profile.service;
        let refreshedToken = false;
        for (let attempt = 1; ; attempt++) {
            let failure: ServiceError;
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
                            ...options.headers,
                            Authorization: `Bearer ${await this.token()}`,
                            ...(options.body !== undefined ? { "Content-Type": "application/json" } : {}),
                        },
                    }),
                );
                if (response.status < 300) {
                    return {
                        status: response.status,
                        data: (response.data === "" ? undefined : response.data) as T,
                        headers: { ...(response.headers as Record<string, string | undefined>) },
                    };
                }
                failure = errorFromResponse(this.profile, method, path, response);
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
                if (err instanceof ServiceError) throw err;
                const code = (err as { code?: string }).code ?? "";
                const sent = !NEVER_SENT.includes(code);
                failure = this.failure({
                    message: `${service} ${method} ${path} failed: ${code || "network error"} ${(err as Error).message}`,
                    status: 0,
                    code,
                    method,
                    path,
                    ambiguous: !replayable && sent,
                });
                if (!RETRYABLE_TRANSPORT.includes(code) || (!replayable && sent)) {
                    throw failure;
                }
            }
            const delayMs = Math.min(this.retry.maxDelayMs, retryAfterMs ?? this.backoffDelay(attempt));
            if (attempt >= this.retry.maxAttempts || Date.now() - started + delayMs > this.retry.maxElapsedMs) {
                throw failure;
            }
            this.onRetry?.({ method, path, attempt, delayMs, reason: failure.message });
            await sleep(delayMs);
        }
    }
}
