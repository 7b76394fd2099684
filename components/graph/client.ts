import { endpointOverride } from "../http/endpoint";
import { HttpMethod, RequestCore, RequestCoreOptions, ServiceError, staticTokenCredential } from "../http/requestCore";

/**
 * A thin Microsoft Graph client on the shared request core (`components/http/requestCore.ts`): the few directory
 * calls the Office 365 path needs (subscribed SKUs, a user's licences, `assignLicense`).
 */

export const GRAPH_ORIGIN = "https://graph.microsoft.com";
const API_PATH = "/v1.0/";

/** A failed Microsoft Graph call (`{"error":{"code":"Request_ResourceNotFound","message":"…"}}`); never holds the token. */
export class GraphError extends ServiceError {
    constructor(message: string, status: number, code: string, method: string, path: string, requestId?: string, ambiguous = false) {
        super(message, status, code, method, path, requestId, ambiguous);
        this.message = message;
        this.name = "GraphError";
    }

    /** Declared again so closure serialization links the prototype to the base (see DataverseError). */
    override hasCode(code: string): boolean {
        return super.hasCode(code);
    }
}

export interface GraphClientOptions extends RequestCoreOptions {
    /** Origin the requests go to, if not `https://graph.microsoft.com` (an emulator). */
    endpoint?: string;
}

interface Page<T> {
    value: T[];
    "@odata.nextLink"?: string;
}

/** A Microsoft Graph v1.0 client; tokens for `https://graph.microsoft.com/.default`. */
export class GraphClient {
    /** `<endpoint>/v1.0/`, where requests go. */
    readonly baseUrl: string;
    private readonly core: RequestCore;

    constructor(options: GraphClientOptions = {}) {
        this.baseUrl = `${(options.endpoint ?? GRAPH_ORIGIN).replace(/\/+$/, "")}${API_PATH}`;
        this.core = new RequestCore(
            {
                service: "Microsoft Graph",
                baseUrl: this.baseUrl,
                scope: `${GRAPH_ORIGIN}/.default`,
                audience: GRAPH_ORIGIN,
                headers: { Accept: "application/json" },
                requestIdHeader: "request-id",
                errorOf: (e) => new GraphError(e.message, e.status, e.code, e.method, e.path, e.requestId, e.ambiguous),
            },
            options,
        );
    }

    async request<T>(
        method: HttpMethod,
        path: string,
        options: { query?: Record<string, string>; body?: unknown; idempotent?: boolean } = {},
    ): Promise<T> {
        return (await this.core.send<T>(method, path, options)).data;
    }

    async get<T>(path: string, query?: Record<string, string>): Promise<T> {
        return this.request<T>("GET", path, { query });
    }

    /** All items of a collection, following `@odata.nextLink` pages (rebased on the endpoint). */
    async list<T>(path: string, query?: Record<string, string>): Promise<T[]> {
        const items: T[] = [];
        let page = await this.get<Page<T>>(path, query);
        items.push(...page.value);
        while (page["@odata.nextLink"]) {
            const next = new URL(page["@odata.nextLink"]);
            const relative = next.pathname.slice(next.pathname.indexOf(API_PATH) + API_PATH.length);
            page = await this.get<Page<T>>(relative, Object.fromEntries(next.searchParams));
            items.push(...page.value);
        }
        return items;
    }
}

/**
 * The Graph client of a provider process. Read at call time, never from state: `GRAPH_ENDPOINT` sends the requests
 * to another origin (https, or http on this machine only) and `GRAPH_TOKEN` replaces `DefaultAzureCredential` with a
 * fixed bearer token, as `DATAVERSE_ENDPOINT` and `DATAVERSE_TOKEN` do for Dataverse.
 */
export function graphClientFromEnvironment(options: Omit<GraphClientOptions, "endpoint" | "credential"> = {}): GraphClient {
    const endpoint = endpointOverride("GRAPH_ENDPOINT", GRAPH_ORIGIN);
    const token = process.env.GRAPH_TOKEN?.trim() || undefined;
    return new GraphClient({ ...options, endpoint, credential: token ? staticTokenCredential(token) : undefined });
}

// A plain object, not a Map: it is serialized with the providers (empty) and filled in the provider process.
const sharedClients: Record<string, GraphClient> = {};

/** One Graph client per provider process, so parallel steps share a token and the concurrency cap. */
export function sharedGraphClient(): GraphClient {
    const key = [process.env.GRAPH_ENDPOINT ?? "", process.env.GRAPH_TOKEN ?? ""].join("|");
    return (sharedClients[key] ??= graphClientFromEnvironment());
}
