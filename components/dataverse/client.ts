import axios from "axios";
import { redactUrl } from "../redact";
import { checkEndpointOverride, endpointOverride } from "../http/endpoint";
import {
    HttpMethod,
    RequestCore,
    RequestCoreOptions,
    RETRYABLE_STATUS,
    ServiceError,
    sleep,
    staticTokenCredential,
} from "../http/requestCore";

export { DEFAULT_RETRY_POLICY, parseRetryAfter, sleep, staticTokenCredential } from "../http/requestCore";
export type { RetryPolicy } from "../http/requestCore";

/**
 * The Dataverse Web API client: every Dataverse call of every provider goes through here. Authentication, errors,
 * retries and throttling are the shared request core's (`components/http/requestCore.ts`), which the Microsoft
 * Graph client uses too; this adds OData: headers, entity ids, paging, references, actions. Comments cite the Web API
 * facts they rely on as `contract: <section>` of docs/dataverse-contract.md.
 */

const API_PATH = "/api/data/v9.2/";

/** A failed Dataverse call. Carries what is needed to diagnose it and never the bearer token. */
export class DataverseError extends ServiceError {
    constructor(
        message: string,
        /** HTTP status; 0 when no response arrived. */
        status: number,
        /** Dataverse error code such as `0x8004F511`, or a transport code such as `ECONNRESET`; may be empty. */
        code: string,
        method: string,
        /** Request path below `/api/data/v9.2/`, without the query. */
        path: string,
        /** `x-ms-service-request-id` of the failed response, for Microsoft support. */
        requestId?: string,
        /** True when the request may have been carried out although no answer arrived (a POST cut off mid-flight). */
        ambiguous = false,
    ) {
        super(message, status, code, method, path, requestId, ambiguous);
        // Closure serialization turns `super(...)` into a plain call that may set neither a message nor a stack; the
        // provider host prints `${err}: ${err.stack}`, so a missing stack would read ": undefined".
        this.message = message;
        this.name = "DataverseError";
        Error.captureStackTrace(this, DataverseError);
    }

    /**
     * The base class's, declared again on purpose: closure serialization links a subclass's prototype to its base
     * only when the subclass has methods of its own, and without one `hasCode` is missing in the engine.
     */
    override hasCode(code: string): boolean {
        return super.hasCode(code);
    }
}

/** Well-known Dataverse error codes the providers react to (contract: "Requests and errors", per-step sections). */
export const ErrorCodes = {
    objectDoesNotExist: "0x80040217",
    duplicateApplicationUser: "0x8004F511",
    azureApplicationIdNotFound: "0x8004F510",
    userInWrongBusiness: "0x80041409",
    anotherImportRunning: "0x80071151",
    /** "Can't delete a user which owns records"; also seen while the user's own settings row is still settling. */
    userOwnsRecords: "0x80048610",
} as const;

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
        const sent = Date.now();
        const result = await probe();
        if (result !== undefined) return result;
        const now = Date.now();
        if (now >= deadline) return undefined;
        // The pace is between reads sent, not from each answer: a slow answer does not delay the next read further.
        const wait = nextPollDelay(policy, sent - started) - (now - sent);
        await sleep(Math.max(0, Math.min(wait, deadline - now)));
    }
}

/**
 * How long to wait for something made elsewhere to reach Dataverse: a new app's service principal, a newly licensed
 * user. Each caller has its own bounds; a client can set the first wait for all of them.
 */
export interface PropagationWait {
    /** The first wait; each next one doubles, up to `maxDelayMs`. */
    firstDelayMs: number;
    maxDelayMs: number;
}

export interface DataverseClientOptions extends RequestCoreOptions {
    /** The instance, `https://<org>.crm<N>.dynamics.com`: the token audience. */
    instanceUrl: string;
    /** Origin the requests go to, if not the instance itself (an emulator or a private endpoint). */
    endpoint?: string;
    /** How often running work is read while waiting for it. */
    polling?: Partial<PollingPolicy>;
    /** The first wait for something made elsewhere to reach Dataverse, instead of each caller's own (see PropagationWait). */
    propagationFirstDelayMs?: number;
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

/** Redirects followed on the same host before a download gives up. */
export const MAX_DOWNLOAD_REDIRECTS = 5;
const REDIRECT_STATUS: readonly number[] = [301, 302, 303, 307, 308];

/** The https URL a download may fetch: anything else is refused before a request is made. */
function downloadUrl(url: string): URL {
    let parsed: URL;
    try {
        parsed = new URL(url);
    } catch {
        throw new Error(`${redactUrl(url)} is not a URL`);
    }
    if (parsed.protocol !== "https:") {
        throw new Error(`${redactUrl(url)} is not an https URL: packages are downloaded over https only`);
    }
    return parsed;
}

/**
 * Where a download may go next after a redirect from `current` (the download started at `source`): only to https
 * on the same host, and at most {@link MAX_DOWNLOAD_REDIRECTS} times. A redirect to another host is refused, since
 * the package would then come from somewhere the configuration never named.
 */
export function redirectTarget(source: string, current: string, location: string | undefined, redirectsSoFar: number): string {
    const quoted = redactUrl(source);
    if (redirectsSoFar >= MAX_DOWNLOAD_REDIRECTS) {
        throw new Error(`Downloading ${quoted} failed: more than ${MAX_DOWNLOAD_REDIRECTS} redirects`);
    }
    if (!location) {
        throw new Error(`Downloading ${quoted} failed: a redirect without a Location header`);
    }
    let target: URL;
    try {
        target = new URL(location, current);
    } catch {
        throw new Error(`Downloading ${quoted} failed: a redirect to an invalid URL`);
    }
    if (target.protocol !== "https:") {
        throw new Error(`Downloading ${quoted} failed: it redirects to ${redactUrl(target.href)}, which is not https`);
    }
    const host = new URL(source).host;
    if (target.host !== host) {
        throw new Error(
            `Downloading ${quoted} failed: it redirects to another host (${target.host}); redirects are followed on ${host} only. Point solutionSource at the final URL if you trust it.`,
        );
    }
    return target.href;
}

/**
 * Downloads a file over https (the managed solution package), with the same bounded retries on transient failures.
 * Redirects are followed only on the same host (see {@link redirectTarget}); messages never quote the URL's query.
 */
export async function downloadFile(url: string, timeoutMs = 120_000): Promise<Buffer> {
    downloadUrl(url);
    const quoted = redactUrl(url);
    let current = url;
    let redirects = 0;
    for (let attempt = 1; ; attempt++) {
        const response = await axios
            .get<ArrayBuffer>(current, {
                responseType: "arraybuffer",
                timeout: timeoutMs,
                validateStatus: () => true,
                // Redirects are judged here, not by axios: it would follow them to any host.
                maxRedirects: 0,
            })
            .catch((err: { code?: string; message: string }) => ({
                status: 0,
                statusText: `${err.code ?? ""} ${err.message.split(current).join(redactUrl(current))}`,
                data: undefined,
                headers: {} as Record<string, unknown>,
            }));
        if (response.status === 200 && response.data) {
            return Buffer.from(response.data);
        }
        if (REDIRECT_STATUS.includes(response.status)) {
            const location = response.headers["location"];
            current = redirectTarget(url, current, typeof location === "string" ? location : undefined, redirects++);
            attempt--; // following a redirect is not a retry
            continue;
        }
        if (attempt >= 3 || (response.status !== 0 && !RETRYABLE_STATUS.includes(response.status))) {
            throw new Error(`Downloading ${quoted} failed: ${response.status} ${response.statusText}`);
        }
        await sleep(1000 * attempt);
    }
}

/** A Dataverse Web API client for one instance. */
export class DataverseClient {
    /** The instance (`https://<org>.crm.dynamics.com`) this client acts on. */
    readonly instanceUrl: string;
    /** `<endpoint>/api/data/v9.2/`, where requests go; `@odata.id` references are built on it. */
    readonly baseUrl: string;
    private readonly core: RequestCore;
    /** How often this client reads running work while waiting for it. */
    readonly polling: PollingPolicy;
    private readonly propagationFirstDelayMs: number | undefined;

    constructor(options: DataverseClientOptions) {
        this.instanceUrl = options.instanceUrl.replace(/\/+$/, "");
        this.baseUrl = `${(options.endpoint ?? this.instanceUrl).replace(/\/+$/, "")}${API_PATH}`;
        this.polling = { ...DEFAULT_POLLING_POLICY, ...options.polling };
        this.propagationFirstDelayMs = options.propagationFirstDelayMs;
        this.core = new RequestCore(
            {
                service: "Dataverse",
                baseUrl: this.baseUrl,
                scope: `${this.instanceUrl}/.default`,
                audience: this.instanceUrl,
                headers: {
                    Accept: "application/json",
                    "OData-MaxVersion": "4.0",
                    "OData-Version": "4.0",
                },
                // Dataverse's own request id (public SDK code and captured responses read this header), what support asks for.
                requestIdHeader: "x-ms-service-request-id",
                errorOf: (e) => new DataverseError(e.message, e.status, e.code, e.method, e.path, e.requestId, e.ambiguous),
            },
            options,
        );
    }

    /** One Web API request with authentication, throttling, retries and OData error decoding. */
    async request<T>(method: HttpMethod, path: string, options: RequestOptions = {}): Promise<DataverseResponse<T>> {
        const response = await this.core.send<T>(method, path, {
            query: options.query,
            body: options.body,
            idempotent: options.idempotent,
            timeoutMs: options.timeoutMs,
            headers: options.returnRepresentation ? { Prefer: "return=representation" } : undefined,
        });
        return {
            status: response.status,
            data: response.data,
            entityId: entityIdFromHeader(response.headers["odata-entityid"]),
        };
    }

    /**
     * The wait before retry number `attempt` (1 = the first retry): exponential from the policy's base, with full
     * jitter. Providers that retry a whole step themselves use it too, so one setting paces every retry.
     */
    backoffDelay(attempt: number): number {
        return this.core.backoffDelay(attempt);
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

    /** The wait after attempt `attempt` (from 1) of something propagating: `wait` at this client's first step. */
    propagationDelay(attempt: number, wait: PropagationWait): number {
        const first = this.propagationFirstDelayMs ?? wait.firstDelayMs;
        return Math.min(first * 2 ** (attempt - 1), Math.max(wait.maxDelayMs, first));
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

/** The origin `DATAVERSE_ENDPOINT` may name, checked before a token could go there (see components/http/endpoint.ts). */
export function parseDataverseEndpoint(value: string): string {
    return checkEndpointOverride("DATAVERSE_ENDPOINT", value);
}

/**
 * The client the providers use. Read at call time, never from state: `DATAVERSE_ENDPOINT` sends the requests to
 * another origin (the `/api/data/v9.2/` path stays) and `DATAVERSE_TOKEN` replaces the credential chain with a
 * fixed bearer token; otherwise `DefaultAzureCredential` (Azure CLI locally, workload identity in CI). A set
 * `DATAVERSE_ENDPOINT` is checked and announced once per process, since tokens follow it. A
 * credential passed in options replaces both the token and the credential chain.
 */
export function clientFromEnvironment(
    instanceUrl: string,
    options: Omit<DataverseClientOptions, "instanceUrl" | "endpoint"> = {},
): DataverseClient {
    const endpoint = endpointOverride("DATAVERSE_ENDPOINT", "the instance");
    const token = process.env.DATAVERSE_TOKEN?.trim() || undefined;
    return new DataverseClient({
        ...options,
        instanceUrl,
        endpoint,
        // An explicit credential (the lead-writing app's, for validation) wins over the deploying identity's token.
        credential: options.credential ?? (token ? staticTokenCredential(token) : undefined),
    });
}

// A plain object, not a Map: it is serialized with the providers (empty) and filled in the provider process.
const sharedClients: Record<string, DataverseClient> = {};

/**
 * The client for an instance shared by all operations of one provider process, so the engine's parallel steps share
 * one token and one concurrency cap.
 */
export function sharedClient(instanceUrl: string): DataverseClient {
    const tuning = clientTuningFromEnvironment();
    const key = [instanceUrl, process.env.DATAVERSE_ENDPOINT ?? "", process.env.DATAVERSE_TOKEN ?? "", JSON.stringify(tuning)].join("|");
    return (sharedClients[key] ??= clientFromEnvironment(instanceUrl, tuning));
}

/**
 * Client tuning a user can set (read at call time, never stored): for a slow or flaky network `DATAVERSE_TIMEOUT_MS`,
 * the per-request timeout (default 120000), and `DATAVERSE_RETRY_DELAY_MS`, the first backoff step of retries
 * (default 500, doubling with jitter); for a tenant whose changes reach Dataverse slowly or quickly
 * `DATAVERSE_PROPAGATION_DELAY_MS`, the first wait for a new service principal or a newly licensed user (defaults 5000
 * and 2000, doubling). Anything but a positive number is refused by name.
 */
export function clientTuningFromEnvironment(): Pick<DataverseClientOptions, "timeoutMs" | "retry" | "propagationFirstDelayMs"> {
    const read = (name: string): number | undefined => {
        const text = process.env[name]?.trim();
        if (!text) return undefined;
        const value = Number(text);
        if (!Number.isFinite(value) || value <= 0) {
            throw new Error(`${name} must be a positive number of milliseconds, not "${text}"`);
        }
        return value;
    };
    const timeoutMs = read("DATAVERSE_TIMEOUT_MS");
    const baseDelayMs = read("DATAVERSE_RETRY_DELAY_MS");
    const propagationFirstDelayMs = read("DATAVERSE_PROPAGATION_DELAY_MS");
    return {
        ...(timeoutMs ? { timeoutMs } : {}),
        ...(baseDelayMs ? { retry: { baseDelayMs } } : {}),
        ...(propagationFirstDelayMs ? { propagationFirstDelayMs } : {}),
    };
}
