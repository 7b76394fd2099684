import axios from "axios";
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
 * Graph client uses too; this adds OData: headers, entity ids, paging, references, actions.
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
        // Closure serialization turns `super(...)` into a plain call that may set no message.
        this.message = message;
        this.name = "DataverseError";
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
} as const;

export interface DataverseClientOptions extends RequestCoreOptions {
    /** The instance, `https://<org>.crm<N>.dynamics.com`: the token audience. */
    instanceUrl: string;
    /** Origin the requests go to, if not the instance itself (an emulator or a private endpoint). */
    endpoint?: string;
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

/** A Dataverse Web API client for one instance. */
export class DataverseClient {
    /** The instance (`https://<org>.crm.dynamics.com`) this client acts on. */
    readonly instanceUrl: string;
    /** `<endpoint>/api/data/v9.2/`, where requests go; `@odata.id` references are built on it. */
    readonly baseUrl: string;
    private readonly core: RequestCore;

    constructor(options: DataverseClientOptions) {
        this.instanceUrl = options.instanceUrl.replace(/\/+$/, "");
        this.baseUrl = `${(options.endpoint ?? this.instanceUrl).replace(/\/+$/, "")}${API_PATH}`;
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
