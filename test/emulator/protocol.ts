/**
 * What every area of the emulator shares: the service it acts on, the caller, the reply shape, and the small parsers
 * of URL segments, GUID keys, entity references and request bodies (contract: Requests and errors).
 */
import type http from "node:http";
import { badSegment, methodNotAllowed } from "./errors";
import { BAD_SEGMENT_CODE, ODataError, parseSelect, project, type EntityShape, type JsonRecord } from "./odata";
import type { EmulatorState, SystemUserRow } from "./state";

/** Who an issued token stands for: an app, or (with `objectId`) a directory user signed in through a client. */
export interface TokenPrincipal {
    applicationId: string;
    objectId?: string;
}

/** The running emulator as its areas see it: the data, where it listens, and how it is configured. */
export interface Service {
    readonly state: EmulatorState;
    /** `http://127.0.0.1:<port>` */
    readonly origin: string;
    /** origin + API path, ending in `/`. */
    readonly baseUrl: string;
    /** Accepted bearer tokens (see EmulatorOptions.tokens); undefined = any token is the administrator. */
    readonly tokens: Record<string, { applicationId: string } | "admin"> | undefined;
    /** Tokens the identity platform (identityPlatform.ts) issued, each for one app or user; accepted whatever `tokens` says. */
    readonly issuedTokens: Record<string, TokenPrincipal>;
    /** How many requests running work stays in progress for. */
    readonly importPolls: number;
    /** When set, running work finishes this long after it starts instead (see EmulatorOptions). */
    readonly importDurationMs: number | undefined;
}

export interface Reply {
    status: number;
    headers?: Record<string, string>;
    body?: unknown;
}

/** The application or administrator a bearer token authenticates as. */
export interface Caller {
    user: SystemUserRow;
}

export interface Segment {
    name: string;
    /** Text inside the parentheses, if any. */
    args: string | null;
}

export type JsonObject = Record<string, unknown>;

export const EMPTY_GUID = "00000000-0000-0000-0000-000000000000";
export const GUID_RE = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

export function isObject(value: unknown): value is JsonObject {
    return typeof value === "object" && value !== null && !Array.isArray(value);
}

export function parseGuid(text: string | null | undefined, what: string): string {
    const trimmed = (text ?? "").trim();
    if (!GUID_RE.test(trimmed)) {
        throw new ODataError(400, BAD_SEGMENT_CODE, `The key value '${trimmed}' for '${what}' is not a valid Guid.`);
    }
    return trimmed.toLowerCase();
}

/** `RoleId=<guid>` inside a function call's parentheses. */
export function functionArgument(args: string | null, name: string, fn: string): string {
    const match = new RegExp(`^\\s*${name}\\s*=\\s*([^,)]+)\\s*$`).exec(args ?? "");
    if (!match) throw new ODataError(400, BAD_SEGMENT_CODE, `The parameter '${name}' of '${fn}' is missing.`);
    return parseGuid(match[1], name);
}

/** The id at the end of an entity reference such as `<base>roles(<id>)` or `/businessunits(<id>)`. */
export function referencedId(reference: unknown, entitySet: string): string | null {
    if (typeof reference !== "string") return null;
    const match = new RegExp(`(?:^|/)${entitySet}\\(([0-9a-fA-F-]{36})\\)$`).exec(reference.trim());
    return match ? match[1].toLowerCase() : null;
}

export function parseSegment(text: string): Segment {
    const open = text.indexOf("(");
    if (open > 0 && text.endsWith(")")) return { name: text.slice(0, open), args: text.slice(open + 1, -1) };
    return { name: text, args: null };
}

export function safeDecode(text: string): string {
    try {
        return decodeURIComponent(text);
    } catch {
        return text;
    }
}

export function readBody(req: http.IncomingMessage): Promise<string> {
    return new Promise((resolve, reject) => {
        const chunks: Buffer[] = [];
        req.on("data", (chunk: Buffer) => chunks.push(chunk));
        req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
        req.on("error", reject);
    });
}

export function onlyGet(method: string, name: string, rest: Segment[], run: () => Reply): Reply {
    if (rest.length > 0) throw badSegment(rest[0].name);
    if (method !== "GET") throw methodNotAllowed(method, name);
    return run();
}

export function onlyPost(method: string, name: string, rest: Segment[], run: () => Reply): Reply {
    if (rest.length > 0) throw badSegment(rest[0].name);
    if (method !== "POST") throw methodNotAllowed(method, name);
    return run();
}

/** The `@odata.context` URL of an answer. */
export function odataContext(svc: Service, fragment: string): string {
    return `${svc.baseUrl}$metadata#${fragment}`;
}

/** contract: Requests and errors — Prefer: return=representation → 201 + record; else 204 + OData-EntityId. */
export function created(
    svc: Service,
    setName: string,
    id: string,
    json: JsonRecord,
    shape: EntityShape,
    representation: boolean,
    params: URLSearchParams,
): Reply {
    if (representation) {
        const select = parseSelect(shape, params.get("$select"));
        return {
            status: 201,
            body: { "@odata.context": odataContext(svc, `${setName}/$entity`), ...project(shape, json, select) },
        };
    }
    return { status: 204, headers: { "OData-EntityId": `${svc.baseUrl}${setName}(${id})` } };
}
