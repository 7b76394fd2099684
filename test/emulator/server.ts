/**
 * A loopback emulator of the Dataverse Web API slice in /work/shared/dataverse-contract.md. Each behaviour names
 * the contract section it follows; where the contract is silent the comment cites the Microsoft page checked, or
 * says UNCONFIRMED and what was chosen.
 */
import { randomUUID } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import {
    ENTITY_SETS,
    leadJson,
    leadShape,
    roleJson,
    roleShape,
    systemUserJson,
    systemUserShape,
    type EntitySetDefinition,
} from "./entities";
import {
    BAD_SEGMENT_CODE,
    ODataError,
    evaluateFilter,
    parseExpand,
    parseFilter,
    parseSelect,
    project,
    type EntityShape,
    type FilterNode,
    type JsonRecord,
} from "./odata";
import { compareVersions, readSolutionFile, type SolutionFile } from "./solutionFile";
import {
    ADMIN_USER_ID,
    PRIVILEGE_DEPTHS,
    createInitialState,
    nowIso,
    type AsyncOperationRow,
    type EmulatorState,
    type ImportJobRow,
    type LeadRow,
    type PendingWork,
    type PrivilegeDepthName,
    type PrivilegeRow,
    type RoleRow,
    type SolutionRoleDefinition,
    type SystemUserRow,
} from "./state";

export * from "./state";

export interface EmulatorOptions {
    /** 0 (default) = a free port on 127.0.0.1. */
    port?: number;
    /** When set, only these bearer tokens are accepted; each maps to the principal it authenticates as. Default: any non-empty token authenticates as the seeded administrator. */
    tokens?: Record<string, { applicationId: string } | "admin">;
    /**
     * How many requests an import or uninstall stays "in progress" for (default 2). Each request to the emulator moves
     * running work one step on, as time passes for the real service whether or not anyone polls.
     */
    importPolls?: number;
}
export type Fault =
    | { kind: "status"; status: number; retryAfter?: string; code?: string; message?: string }
    | { kind: "delay"; ms: number }
    | { kind: "reset" }
    /** Carry the request out, then drop the connection without answering (a lost answer). */
    | { kind: "resetAfter" };
export interface RequestLogEntry {
    method: string;
    /** Path + query, decoded. */
    path: string;
    body: unknown;
    status: number;
    /** ms epoch */
    time: number;
    /** systemuserid */
    principal?: string;
}
export interface Emulator {
    origin: string;
    baseUrl: string;
    state: EmulatorState;
    requests: RequestLogEntry[];
    injectFault(match: { method?: string; path: RegExp }, on: number | number[] | "every", fault: Fault): void;
    clearFaults(): void;
    registerApplication(applicationId: string, opts?: { visibleAfter?: number }): void;
    close(): Promise<void>;
}

export const API_PATH = "/api/data/v9.2/";

// Codes the contract names (Requests and errors; Application user; Roles; Leads; Solution import).
const OBJECT_DOES_NOT_EXIST = "0x80040217";
const PRINCIPAL_PRIVILEGE_DENIED = "0x80040231";
const USER_NOT_ASSIGNED_ROLES = "0x80042f09";
const USER_IN_WRONG_BUSINESS = "0x80041409";
const AZURE_APPLICATION_ID_NOT_FOUND = "0x8004F510";
const DUPLICATE_APPLICATION_USER = "0x8004F511";
const IMPORT_ALREADY_RUNNING = "0x80071151";
const MISSING_DEPENDENCIES = "0x8004801D";
const MANAGED_OVER_UNMANAGED = "0x80048040";
const UNMANAGED_OVER_MANAGED = "0x80048041";
// Confirmed in Microsoft Learn "Web service error codes" (Dataverse): name and message as listed there.
const ACCESS_TOKEN_EXPIRED = "0x8005F101"; // AccessTokenExpired "The requested resource requires authentication."
const USER_NOT_MEMBER_OF_ORG = "0x80072560"; // UserNotMemberOfOrg "The user is not a member of the organization."
const UNSUPPORTED_ZIP = "0x80048495"; // UnsupportedZipFileForImport
const INVALID_BUSINESS_UNIT = "0x800404a7"; // unManagedinvalidbusinessunitid "The businessunitid is missing or invalid."
const INVALID_PRIVILEGE_DEPTH = "0x800404bb"; // unManagedinvalidprivilegeedepth "Invalid privilege depth for user."
const APPLICATION_USER_CANNOT_BE_UPDATED = "0x80041d48"; // ApplicationUserCannotBeUpdated
// Confirmed in Microsoft Learn "Troubleshoot Dataverse client errors": -2147187962, the access check after a
// privilege check passed ("Principal with ID … does not have …Access right(s) for record …").
const ACCESS_CHECK_FAILED = "0x80048306";
// Same page: "Cannot insert duplicate key" -2147220937.
const DUPLICATE_KEY = "0x80040237";
// UNCONFIRMED: the code Dataverse gives a disabled caller. The message is the one Microsoft Learn quotes in the
// "Disabled users cannot access the system" troubleshooting article; 0x80040225 is what Dataverse clients map to
// "user not enabled".
const USER_DISABLED = "0x80040225";
// UNCONFIRMED: Dataverse's InvalidArgument code, used where no page states the code of a 400.
const INVALID_ARGUMENT = "0x80040203";
// UNCONFIRMED: the code of OData payload deserialisation errors (a JSON value of the wrong type).
const PAYLOAD_ERROR = "0x80048d19";
// UNCONFIRMED: the validation code for a string longer than the column allows.
const STRING_TOO_LONG = "0x80044331";

const EMPTY_GUID = "00000000-0000-0000-0000-000000000000";
const GUID_RE = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

interface Reply {
    status: number;
    headers?: Record<string, string>;
    body?: unknown;
}

interface FaultRule {
    method?: string;
    path: RegExp;
    on: number | number[] | "every";
    fault: Fault;
    seen: number;
}

interface Caller {
    user: SystemUserRow;
}

interface Segment {
    name: string;
    /** Text inside the parentheses, if any. */
    args: string | null;
}

type JsonObject = Record<string, unknown>;

function isObject(value: unknown): value is JsonObject {
    return typeof value === "object" && value !== null && !Array.isArray(value);
}

function notFound(logicalName: string, id: string): ODataError {
    // contract: Requests and errors — 404 ObjectDoesNotExist "Entity 'role' With Id = … Does Not Exist".
    return new ODataError(404, OBJECT_DOES_NOT_EXIST, `Entity '${logicalName}' With Id = ${id} Does Not Exist`);
}

function badSegment(segment: string): ODataError {
    // contract: Requests and errors — a bad URL segment answers 0x80060888.
    return new ODataError(404, BAD_SEGMENT_CODE, `Resource not found for the segment '${segment}'.`);
}

function invalidProperty(shape: EntityShape, property: string): ODataError {
    return new ODataError(
        400,
        BAD_SEGMENT_CODE,
        `The property '${property}' does not exist on type 'Microsoft.Dynamics.CRM.${shape.logicalName}'. Make sure to only use property names that are defined by the type.`,
    );
}

function methodNotAllowed(method: string, resource: string): ODataError {
    // contract: Requests and errors — 405 not allowed. The code is UNCONFIRMED.
    return new ODataError(405, BAD_SEGMENT_CODE, `The HTTP method '${method}' is not allowed for the resource '${resource}'.`);
}

function parseGuid(text: string | null | undefined, what: string): string {
    const trimmed = (text ?? "").trim();
    if (!GUID_RE.test(trimmed)) {
        throw new ODataError(400, BAD_SEGMENT_CODE, `The key value '${trimmed}' for '${what}' is not a valid Guid.`);
    }
    return trimmed.toLowerCase();
}

/** `RoleId=<guid>` inside a function call's parentheses. */
function functionArgument(args: string | null, name: string, fn: string): string {
    const match = new RegExp(`^\\s*${name}\\s*=\\s*([^,)]+)\\s*$`).exec(args ?? "");
    if (!match) throw new ODataError(400, BAD_SEGMENT_CODE, `The parameter '${name}' of '${fn}' is missing.`);
    return parseGuid(match[1], name);
}

/** The id at the end of an entity reference such as `<base>roles(<id>)` or `/businessunits(<id>)`. */
function referencedId(reference: unknown, entitySet: string): string | null {
    if (typeof reference !== "string") return null;
    const match = new RegExp(`(?:^|/)${entitySet}\\(([0-9a-fA-F-]{36})\\)$`).exec(reference.trim());
    return match ? match[1].toLowerCase() : null;
}

function depthIndex(depth: PrivilegeDepthName): number {
    return PRIVILEGE_DEPTHS.indexOf(depth);
}

function allowsDepth(privilege: PrivilegeRow, depth: PrivilegeDepthName): boolean {
    switch (depth) {
        case "Basic":
            return privilege.canbebasic;
        case "Local":
            return privilege.canbelocal;
        case "Deep":
            return privilege.canbedeep;
        case "Global":
            return privilege.canbeglobal;
    }
}

function sleep(ms: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, ms));
}

class DataverseEmulator implements Emulator {
    readonly state: EmulatorState = createInitialState();
    readonly requests: RequestLogEntry[] = [];
    origin = "";
    baseUrl = "";
    private faults: FaultRule[] = [];
    private readonly importPolls: number;

    constructor(
        private readonly server: http.Server,
        private readonly options: EmulatorOptions,
    ) {
        this.importPolls = options.importPolls ?? 2;
    }

    injectFault(match: { method?: string; path: RegExp }, on: number | number[] | "every", fault: Fault): void {
        this.faults.push({ method: match.method, path: match.path, on, fault, seen: 0 });
    }

    clearFaults(): void {
        this.faults = [];
    }

    registerApplication(applicationId: string, opts?: { visibleAfter?: number }): void {
        this.state.knownApplications[applicationId.toLowerCase()] = { failuresBeforeVisible: opts?.visibleAfter ?? 0 };
    }

    close(): Promise<void> {
        return new Promise((resolve, reject) => {
            this.server.close((err) => (err ? reject(err) : resolve()));
            // Keep-alive sockets from HTTP agents would otherwise hold close() open.
            this.server.closeAllConnections();
        });
    }

    // -------------------------------------------------------------------------------------------------------
    // HTTP plumbing

    async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
        const time = Date.now();
        const method = (req.method ?? "GET").toUpperCase();
        const raw = await readBody(req);
        const url = new URL(req.url ?? "/", this.origin);
        const query = [...url.searchParams].map(([k, v]) => `${k}=${v}`).join("&");
        const path = safeDecode(url.pathname) + (query ? `?${query}` : "");
        let body: unknown = undefined;
        let bodyIsJson = true;
        if (raw.length > 0) {
            try {
                body = JSON.parse(raw);
            } catch {
                body = raw;
                bodyIsJson = false;
            }
        }
        const entry: RequestLogEntry = { method, path, body, status: 0, time };
        const principal = this.principalForLog(req);
        if (principal !== undefined) entry.principal = principal;
        this.requests.push(entry);

        const fault = this.nextFault(method, path);
        if (fault?.kind === "reset") {
            req.socket.destroy();
            return;
        }
        if (fault?.kind === "delay") await sleep(fault.ms);
        // The service keeps working between requests: each request moves every running operation one step on.
        for (const op of this.state.asyncOperations) this.advance(op);

        let reply: Reply;
        if (fault?.kind === "status") {
            reply = faultReply(fault);
        } else {
            try {
                if (!bodyIsJson) throw new ODataError(400, PAYLOAD_ERROR, "The request body is not valid JSON.");
                reply = this.route(req, method, url, body);
            } catch (err) {
                if (!(err instanceof ODataError)) throw err;
                reply = { status: err.status, headers: err.headers, body: { error: { code: err.code, message: err.message } } };
            }
        }
        entry.status = reply.status;
        if (fault?.kind === "resetAfter") {
            // Carried out, but the answer is lost: the caller cannot tell whether it happened.
            req.socket.destroy();
            return;
        }
        const headers: Record<string, string> = { "OData-Version": "4.0", ...reply.headers };
        if (reply.body === undefined) {
            res.writeHead(reply.status, headers);
            res.end();
        } else {
            res.writeHead(reply.status, { ...headers, "Content-Type": "application/json; odata.metadata=minimal" });
            res.end(JSON.stringify(reply.body));
        }
    }

    private nextFault(method: string, path: string): Fault | undefined {
        let chosen: Fault | undefined;
        for (const rule of this.faults) {
            if (rule.method !== undefined && rule.method.toUpperCase() !== method) continue;
            rule.path.lastIndex = 0;
            if (!rule.path.test(path)) continue;
            rule.seen++;
            const hit = rule.on === "every" || (Array.isArray(rule.on) ? rule.on.includes(rule.seen) : rule.on === rule.seen);
            if (hit && chosen === undefined) chosen = rule.fault;
        }
        return chosen;
    }

    private principalForLog(req: http.IncomingMessage): string | undefined {
        try {
            return this.authenticate(req).user.systemuserid;
        } catch {
            return undefined;
        }
    }

    // contract: Requests and errors — 401 for a missing or rejected token; Tokens — app-only access is authorised
    // by the application user.
    private authenticate(req: http.IncomingMessage): Caller {
        const header = req.headers.authorization ?? "";
        const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
        const unauthorized = new ODataError(401, ACCESS_TOKEN_EXPIRED, "The requested resource requires authentication.", {
            "WWW-Authenticate": `Bearer authorization_uri=https://login.microsoftonline.com/common/oauth2/authorize, resource_id=${this.origin}/`,
        });
        if (!match) throw unauthorized;
        const token = match[1];
        let principal: { applicationId: string } | "admin" = "admin";
        if (this.options.tokens !== undefined) {
            const mapped = Object.prototype.hasOwnProperty.call(this.options.tokens, token) ? this.options.tokens[token] : undefined;
            if (mapped === undefined) throw unauthorized;
            principal = mapped;
        }
        const user =
            principal === "admin"
                ? this.state.systemUsers.find((u) => u.systemuserid === ADMIN_USER_ID && u.deletedstate === 0)
                : this.state.systemUsers.find((u) => u.applicationid === principal.applicationId.toLowerCase() && u.deletedstate === 0);
        // A token for an app without an application user is valid at Entra but unknown to the environment.
        if (user === undefined) throw new ODataError(403, USER_NOT_MEMBER_OF_ORG, "The user is not a member of the organization.");
        if (user.isdisabled) {
            // UNCONFIRMED status (403 chosen) and code; message per Microsoft Learn "Disabled users cannot access the
            // system" error article.
            throw new ODataError(
                403,
                USER_DISABLED,
                `The user with SystemUserId=${user.systemuserid} in OrganizationContext=${this.state.organizationId} is disabled. Disabled users cannot access the system. Consider enabling this user. Also, users are disabled if they don't have a license assigned to them.`,
            );
        }
        return { user };
    }

    private route(req: http.IncomingMessage, method: string, url: URL, body: unknown): Reply {
        const rawSegments = url.pathname.split("/").filter((s) => s.length > 0);
        const base = API_PATH.split("/").filter((s) => s.length > 0);
        for (let i = 0; i < base.length; i++) {
            if (rawSegments[i] !== base[i]) throw badSegment(safeDecode(rawSegments[i] ?? ""));
        }
        const caller = this.authenticate(req);
        const segments = rawSegments.slice(base.length).map((s) => parseSegment(safeDecode(s)));
        if (segments.length === 0) throw badSegment("");
        const params = url.searchParams;
        const prefer = (req.headers.prefer ?? "").toString();
        const representation = /return=representation/i.test(prefer);
        const [first, ...rest] = segments;

        switch (first.name) {
            case "WhoAmI":
                return this.onlyGet(method, first.name, rest, () => this.whoAmI(caller));
            case "RetrieveRolePrivilegesRole":
                return this.onlyGet(method, first.name, rest, () =>
                    this.retrieveRolePrivileges(functionArgument(first.args, "RoleId", first.name)),
                );
            case "RetrieveSolutionImportResult":
                return this.onlyGet(method, first.name, rest, () =>
                    this.retrieveImportResult(functionArgument(first.args, "ImportJobId", first.name)),
                );
            case "ImportSolutionAsync":
                return this.onlyPost(method, first.name, rest, () => this.importSolutionAsync(caller, body));
            case "UninstallSolutionAsync":
                return this.onlyPost(method, first.name, rest, () => this.uninstallSolutionAsync(caller, body));
            case "StageSolution":
                return this.onlyPost(method, first.name, rest, () => this.stageSolution(caller, body));
        }

        const set = ENTITY_SETS[first.name];
        if (set === undefined) throw badSegment(first.name);

        if (first.args === null) {
            if (rest.length > 0) throw badSegment(rest[0].name);
            if (method === "GET") return this.queryCollection(caller, first.name, set, params);
            if (method === "POST") {
                if (first.name === "systemusers") return this.createSystemUser(caller, body, representation, params);
                if (first.name === "leads") return this.createLead(caller, body, representation, params);
            }
            throw methodNotAllowed(method, first.name);
        }

        const id = parseGuid(first.args, set.shape.key);
        if (rest.length === 0) {
            if (method === "GET") return this.getEntity(caller, first.name, set, id, params);
            if (method === "PATCH" && first.name === "systemusers") return this.updateSystemUser(caller, id, body, representation, params);
            if (method === "DELETE") {
                if (first.name === "systemusers") return this.deleteSystemUser(caller, id);
                if (first.name === "leads") return this.deleteLead(caller, id);
                if (first.name === "solutions") return this.deleteSolution(caller, id);
            }
            throw methodNotAllowed(method, `${first.name}(${id})`);
        }

        if (first.name === "systemusers" && rest[0].name === "systemuserroles_association") {
            return this.userRoles(caller, method, id, rest, params, body);
        }
        if (first.name === "roles" && rest.length === 1 && rest[0].args === null) {
            switch (rest[0].name) {
                case "Microsoft.Dynamics.CRM.AddPrivilegesRole":
                case "Microsoft.Dynamics.CRM.ReplacePrivilegesRole":
                case "Microsoft.Dynamics.CRM.RemovePrivilegeRole":
                    if (method !== "POST") throw methodNotAllowed(method, rest[0].name);
                    return this.rolePrivilegeAction(caller, id, rest[0].name.slice("Microsoft.Dynamics.CRM.".length), body);
            }
        }
        throw badSegment(rest[0].name);
    }

    private onlyGet(method: string, name: string, rest: Segment[], run: () => Reply): Reply {
        if (rest.length > 0) throw badSegment(rest[0].name);
        if (method !== "GET") throw methodNotAllowed(method, name);
        return run();
    }

    private onlyPost(method: string, name: string, rest: Segment[], run: () => Reply): Reply {
        if (rest.length > 0) throw badSegment(rest[0].name);
        if (method !== "POST") throw methodNotAllowed(method, name);
        return run();
    }

    private context(fragment: string): string {
        return `${this.baseUrl}$metadata#${fragment}`;
    }

    // -------------------------------------------------------------------------------------------------------
    // Privileges of the caller

    private rolesOf(userId: string): RoleRow[] {
        const ids = new Set(this.state.userRoles.filter((l) => l.systemuserid === userId).map((l) => l.roleid));
        return this.state.roles.filter((r) => ids.has(r.roleid));
    }

    private bypassesChecks(caller: Caller): boolean {
        return this.rolesOf(caller.user.systemuserid).some((r) => r.bypassesPrivilegeChecks);
    }

    /**
     * contract: Leads — no role at all answers UserNotAssignedRoles; a missing privilege answers 403
     * PrincipalPrivilegeDenied. Returns the widest depth the caller holds, or null for System Administrator.
     */
    private requirePrivilege(caller: Caller, privilegeName: string, entity: string): PrivilegeDepthName | null {
        const roles = this.rolesOf(caller.user.systemuserid);
        const userId = caller.user.systemuserid;
        if (roles.length === 0) {
            throw new ODataError(
                403,
                USER_NOT_ASSIGNED_ROLES,
                `SecLib::RetrievePrivilegeForUser failed - no roles are assigned to user. Returned hr = -2147209463, User: ${userId}`,
            );
        }
        if (roles.some((r) => r.bypassesPrivilegeChecks)) return null;
        const privilege = this.state.privileges.find((p) => p.name === privilegeName);
        let best: PrivilegeDepthName | undefined;
        if (privilege !== undefined) {
            for (const role of roles) {
                const depth = this.state.rolePrivileges[role.roleid]?.[privilege.privilegeid];
                if (depth !== undefined && (best === undefined || depthIndex(depth) > depthIndex(best))) best = depth;
            }
        }
        if (best === undefined) {
            throw new ODataError(
                403,
                PRINCIPAL_PRIVILEGE_DENIED,
                `Principal user (Id=${userId}, type=8, roleCount=${roles.length}, accessMode=${caller.user.accessmode}), is missing ${privilegeName} privilege (Id=${privilege?.privilegeid ?? EMPTY_GUID}) on OTC=4 for entity '${entity}'. context.Caller=${userId}`,
            );
        }
        return best;
    }

    /** Customisation and security work is System Administrator's in this emulator; other principals are denied. */
    private requireAdministrator(caller: Caller, privilegeName: string, entity: string): void {
        if (this.bypassesChecks(caller)) return;
        this.requirePrivilege(caller, privilegeName, entity);
    }

    private businessUnitSubtree(root: string): Set<string> {
        const ids = new Set([root]);
        for (let grew = true; grew;) {
            grew = false;
            for (const bu of this.state.businessUnits) {
                if (bu.parentbusinessunitid !== null && ids.has(bu.parentbusinessunitid) && !ids.has(bu.businessunitid)) {
                    ids.add(bu.businessunitid);
                    grew = true;
                }
            }
        }
        return ids;
    }

    /** Whether a grant at `depth` reaches a record owned by `ownerId` (null depth = System Administrator). */
    private reaches(caller: Caller, depth: PrivilegeDepthName | null, ownerId: string): boolean {
        if (depth === null || depth === "Global") return true;
        if (depth === "Basic") return ownerId === caller.user.systemuserid;
        const owner = this.state.systemUsers.find((u) => u.systemuserid === ownerId);
        if (owner === undefined) return false;
        if (depth === "Local") return owner.businessunitid === caller.user.businessunitid;
        return this.businessUnitSubtree(caller.user.businessunitid).has(owner.businessunitid);
    }

    // -------------------------------------------------------------------------------------------------------
    // Generic reads

    private checkQueryOptions(params: URLSearchParams, allowed: string[]): void {
        for (const key of params.keys()) {
            if (key.startsWith("$") && !allowed.includes(key)) {
                throw new ODataError(400, BAD_SEGMENT_CODE, `The query parameter '${key}' is not supported.`);
            }
        }
    }

    private queryCollection(caller: Caller, setName: string, set: EntitySetDefinition, params: URLSearchParams): Reply {
        this.checkQueryOptions(params, ["$select", "$filter", "$expand", "$top"]);
        const select = parseSelect(set.shape, params.get("$select"));
        const filter = parseFilter(set.shape, params.get("$filter"));
        const expand = this.parseExpandFor(set.shape, params.get("$expand"));
        let records = set.records(this.state);
        if (setName === "leads") {
            // contract: Leads — reads need prvReadLead, and only reach records the depth covers.
            const depth = this.requirePrivilege(caller, "prvReadLead", "lead");
            records = records.filter((r) => this.reaches(caller, depth, String(r._ownerid_value)));
        }
        records = records.filter((r) => evaluateFilter(filter, r));
        const topText = params.get("$top");
        if (topText !== null) {
            const top = Number(topText);
            if (!Number.isInteger(top) || top < 0) throw new ODataError(400, BAD_SEGMENT_CODE, `Invalid value '${topText}' for $top.`);
            records = records.slice(0, top);
        }
        const value = records.map((r) => ({ ...project(set.shape, r, select), ...this.expanded(r, expand) }));
        return {
            status: 200,
            body: { "@odata.context": this.context(`${setName}(${select?.join(",") ?? ""})`.replace("()", "")), value },
        };
    }

    private getEntity(caller: Caller, setName: string, set: EntitySetDefinition, id: string, params: URLSearchParams): Reply {
        this.checkQueryOptions(params, ["$select", "$expand"]);
        const select = parseSelect(set.shape, params.get("$select"));
        const expand = this.parseExpandFor(set.shape, params.get("$expand"));
        let depth: PrivilegeDepthName | null = null;
        if (setName === "leads") depth = this.requirePrivilege(caller, "prvReadLead", "lead");
        const record = set.records(this.state).find((r) => String(r[set.shape.key]).toLowerCase() === id);
        if (record === undefined) throw notFound(set.shape.logicalName, id);
        if (setName === "leads" && !this.reaches(caller, depth, String(record._ownerid_value))) {
            throw accessDenied(caller, "ReadAccess", id, "lead");
        }
        return {
            status: 200,
            body: {
                "@odata.context": this.context(`${setName}(${select?.join(",") ?? ""})/$entity`.replace("()", "")),
                ...project(set.shape, record, select),
                ...this.expanded(record, expand),
            },
        };
    }

    private parseExpandFor(shape: EntityShape, raw: string | null): { select: string[] | null; filter: FilterNode | null }[] {
        return parseExpand(raw).map((clause) => {
            // contract: Roles — the only navigation the guide reads is systemuser.systemuserroles_association.
            if (shape !== systemUserShape || clause.navigation !== "systemuserroles_association") {
                throw new ODataError(
                    400,
                    BAD_SEGMENT_CODE,
                    `Could not find a property named '${clause.navigation}' on type 'Microsoft.Dynamics.CRM.${shape.logicalName}'.`,
                );
            }
            return { select: parseSelect(roleShape, clause.select), filter: parseFilter(roleShape, clause.filter) };
        });
    }

    private expanded(record: JsonRecord, expand: { select: string[] | null; filter: FilterNode | null }[]): JsonObject {
        if (expand.length === 0) return {};
        const roles = this.rolesOf(String(record.systemuserid)).map(roleJson);
        const clause = expand[0];
        return {
            systemuserroles_association: roles
                .filter((r) => evaluateFilter(clause.filter, r))
                .map((r) => project(roleShape, r, clause.select)),
        };
    }

    // -------------------------------------------------------------------------------------------------------
    // WhoAmI — contract: Tokens

    private whoAmI(caller: Caller): Reply {
        return {
            status: 200,
            body: {
                "@odata.context": this.context("Microsoft.Dynamics.CRM.WhoAmIResponse"),
                BusinessUnitId: caller.user.businessunitid,
                UserId: caller.user.systemuserid,
                OrganizationId: this.state.organizationId,
            },
        };
    }

    // -------------------------------------------------------------------------------------------------------
    // Application users — contract: Application user

    private created(
        setName: string,
        id: string,
        json: JsonRecord,
        shape: EntityShape,
        representation: boolean,
        params: URLSearchParams,
    ): Reply {
        // contract: Requests and errors — Prefer: return=representation → 201 + record; else 204 + OData-EntityId.
        if (representation) {
            const select = parseSelect(shape, params.get("$select"));
            return {
                status: 201,
                body: { "@odata.context": this.context(`${setName}/$entity`), ...project(shape, json, select) },
            };
        }
        return { status: 204, headers: { "OData-EntityId": `${this.baseUrl}${setName}(${id})` } };
    }

    private createSystemUser(caller: Caller, body: unknown, representation: boolean, params: URLSearchParams): Reply {
        this.requireAdministrator(caller, "prvCreateUser", "systemuser");
        if (!isObject(body)) throw new ODataError(400, PAYLOAD_ERROR, "The request body must be a systemuser object.");
        const allowed = ["applicationid", "accessmode", "businessunitid@odata.bind"];
        for (const key of Object.keys(body)) {
            if (key === "isdisabled") {
                // contract: Application user — isdisabled is not valid on create. Code UNCONFIRMED.
                throw new ODataError(400, INVALID_ARGUMENT, "The isdisabled attribute cannot be set when creating a user.");
            }
            if (!allowed.includes(key)) {
                if (key in systemUserShape.properties) {
                    // Dataverse fills these from Entra for an application user (contract: Application user).
                    throw new ODataError(
                        400,
                        APPLICATION_USER_CANNOT_BE_UPDATED,
                        "The user representing an OAuth application cannot not be updated",
                    );
                }
                throw invalidProperty(systemUserShape, key);
            }
        }
        if (typeof body.applicationid !== "string" || !GUID_RE.test(body.applicationid)) {
            // UNCONFIRMED code: only application users are in the contract, so an id is required.
            throw new ODataError(400, INVALID_ARGUMENT, "applicationid must be the Entra application (client) id of the application user.");
        }
        const applicationId = body.applicationid.toLowerCase();
        if (body.accessmode !== 4) {
            // contract: Application user — accessmode 4 = non-interactive; anything else for an application user is
            // refused here (UNCONFIRMED code).
            throw new ODataError(400, INVALID_ARGUMENT, "An application user must be created with accessmode 4 (non-interactive).");
        }
        const bind = body["businessunitid@odata.bind"];
        if (bind === undefined) {
            // contract: Application user — without a business unit the service fails.
            throw new ODataError(400, INVALID_BUSINESS_UNIT, "The businessunitid is missing or invalid.");
        }
        const buId = referencedId(bind, "businessunits");
        if (buId === null) throw new ODataError(400, INVALID_BUSINESS_UNIT, "The businessunitid is missing or invalid.");
        if (!this.state.businessUnits.some((b) => b.businessunitid === buId)) {
            throw new ODataError(400, OBJECT_DOES_NOT_EXIST, `Entity 'businessunit' With Id = ${buId} Does Not Exist`);
        }
        // contract: Application user — one per app per environment; a soft-deleted row still blocks the create.
        if (this.state.systemUsers.some((u) => u.applicationid === applicationId)) {
            throw new ODataError(
                412,
                DUPLICATE_APPLICATION_USER,
                `You are attempting to create an Application ID = ${applicationId} that already exists.`,
            );
        }
        const known = this.state.knownApplications[applicationId];
        if (known === undefined || known.failuresBeforeVisible > 0) {
            // Entra propagation delay: the service principal exists but Dataverse cannot see it yet.
            if (known !== undefined) known.failuresBeforeVisible--;
            throw new ODataError(
                400,
                AZURE_APPLICATION_ID_NOT_FOUND,
                `We didn't find that application ID ${applicationId} in your Azure Active Directory (Azure AD). Make sure your application is registered in Azure AD.`,
            );
        }
        const user: SystemUserRow = {
            systemuserid: randomUUID(),
            fullname: `# ${applicationId.slice(0, 8)}`,
            applicationid: applicationId,
            accessmode: 4,
            businessunitid: buId,
            isdisabled: false,
            deletedstate: 0,
            azureactivedirectoryobjectid: randomUUID(),
            internalemailaddress: `${applicationId}@emulator.invalid`,
        };
        this.state.systemUsers.push(user);
        return this.created("systemusers", user.systemuserid, systemUserJson(user), systemUserShape, representation, params);
    }

    private updateSystemUser(caller: Caller, id: string, body: unknown, representation: boolean, params: URLSearchParams): Reply {
        this.requireAdministrator(caller, "prvWriteUser", "systemuser");
        const user = this.state.systemUsers.find((u) => u.systemuserid === id);
        if (user === undefined) throw notFound("systemuser", id);
        if (!isObject(body)) throw new ODataError(400, PAYLOAD_ERROR, "The request body must be a systemuser object.");
        for (const [key, value] of Object.entries(body)) {
            if (key === "isdisabled") {
                if (typeof value !== "boolean") throw new ODataError(400, PAYLOAD_ERROR, "isdisabled must be a boolean.");
                continue;
            }
            if (!(key in systemUserShape.properties)) throw invalidProperty(systemUserShape, key);
            if (user.applicationid !== null) {
                throw new ODataError(
                    400,
                    APPLICATION_USER_CANNOT_BE_UPDATED,
                    "The user representing an OAuth application cannot not be updated",
                );
            }
            throw new ODataError(400, INVALID_ARGUMENT, `The attribute '${key}' cannot be updated by this emulator.`);
        }
        // contract: Application user — PATCH {"isdisabled":…} → 204.
        if (typeof body.isdisabled === "boolean") user.isdisabled = body.isdisabled;
        if (representation) {
            const select = parseSelect(systemUserShape, params.get("$select"));
            return {
                status: 200,
                body: { "@odata.context": this.context("systemusers/$entity"), ...project(systemUserShape, systemUserJson(user), select) },
            };
        }
        return { status: 204 };
    }

    private deleteSystemUser(caller: Caller, id: string): Reply {
        this.requireAdministrator(caller, "prvDeleteUser", "systemuser");
        const user = this.state.systemUsers.find((u) => u.systemuserid === id);
        if (user === undefined) throw notFound("systemuser", id);
        // contract: Application user — only a disabled user can be deleted. Code UNCONFIRMED.
        if (!user.isdisabled) {
            throw new ODataError(400, INVALID_ARGUMENT, "Only a disabled user can be deleted. Disable the user, then delete it.");
        }
        // contract: Application user — the first DELETE soft-deletes (deletedstate 1; rows stay visible to queries).
        if (user.deletedstate === 0) {
            user.deletedstate = 1;
            return { status: 204 };
        }
        // contract: Application user — records it owns must be reassigned before the permanent delete. Code UNCONFIRMED.
        const owned = this.state.leads.filter((l) => l.ownerid === id).length;
        if (owned > 0) {
            throw new ODataError(
                400,
                INVALID_ARGUMENT,
                `The user ${id} owns ${owned} record(s). Reassign the records it owns to another user before deleting it permanently.`,
            );
        }
        this.state.systemUsers = this.state.systemUsers.filter((u) => u.systemuserid !== id);
        this.state.userRoles = this.state.userRoles.filter((l) => l.systemuserid !== id);
        return { status: 204 };
    }

    // -------------------------------------------------------------------------------------------------------
    // User ↔ role links — contract: Roles

    private userRoles(caller: Caller, method: string, userId: string, rest: Segment[], params: URLSearchParams, body: unknown): Reply {
        const user = this.state.systemUsers.find((u) => u.systemuserid === userId);
        const nav = rest[0];
        const tail = rest.slice(1);
        if (tail.length > 1 || (tail.length === 1 && tail[0].name !== "$ref")) throw badSegment(tail[tail.length - 1].name);
        const isRef = tail.length === 1;

        if (!isRef) {
            if (nav.args !== null) throw badSegment(`${nav.name}(${nav.args})`);
            if (method !== "GET") throw methodNotAllowed(method, nav.name);
            if (user === undefined) throw notFound("systemuser", userId);
            this.checkQueryOptions(params, ["$select", "$filter"]);
            const select = parseSelect(roleShape, params.get("$select"));
            const filter = parseFilter(roleShape, params.get("$filter"));
            const value = this.rolesOf(userId)
                .map(roleJson)
                .filter((r) => evaluateFilter(filter, r))
                .map((r) => project(roleShape, r, select));
            return { status: 200, body: { "@odata.context": this.context("roles"), value } };
        }

        this.requireAdministrator(caller, "prvAssignRole", "role");
        if (method === "POST" && nav.args === null) {
            if (user === undefined) throw notFound("systemuser", userId);
            const roleId = referencedId(isObject(body) ? body["@odata.id"] : undefined, "roles");
            if (roleId === null) throw new ODataError(400, PAYLOAD_ERROR, "The @odata.id must reference a role: <base>roles(<roleid>).");
            const role = this.state.roles.find((r) => r.roleid === roleId);
            if (role === undefined) throw notFound("role", roleId);
            if (role.businessunitid !== user.businessunitid) {
                // Message as listed for UserInWrongBusiness in Microsoft Learn "Web service error codes".
                throw new ODataError(
                    400,
                    USER_IN_WRONG_BUSINESS,
                    `Cannot associate security role because the security role's Business Unit is not the same as the user's Business Unit. Details: userid=${userId}, userBU=${user.businessunitid}, roleId=${roleId}, roleBU=${role.businessunitid}`,
                );
            }
            if (this.state.userRoles.some((l) => l.systemuserid === userId && l.roleid === roleId)) {
                // UNCONFIRMED (contract: Roles): no page states the answer to a repeated association; 204 by default.
                if (this.state.quirks.duplicateRoleAssociation === "duplicateKeyError") {
                    throw new ODataError(400, DUPLICATE_KEY, "Cannot insert duplicate key.");
                }
                return { status: 204 };
            }
            this.state.userRoles.push({ systemuserid: userId, roleid: roleId });
            return { status: 204 };
        }
        if (method === "DELETE") {
            if (user === undefined) throw notFound("systemuser", userId);
            const roleId = nav.args !== null ? parseGuid(nav.args, "roleid") : referencedId(params.get("$id"), "roles");
            if (roleId === null)
                throw new ODataError(400, BAD_SEGMENT_CODE, "The $id query option must reference a role: <base>roles(<roleid>).");
            // UNCONFIRMED: removing a link that does not exist is answered 204 (no page states otherwise).
            this.state.userRoles = this.state.userRoles.filter((l) => !(l.systemuserid === userId && l.roleid === roleId));
            return { status: 204 };
        }
        throw methodNotAllowed(method, `${nav.name}/$ref`);
    }

    // -------------------------------------------------------------------------------------------------------
    // Role privileges — contract: Role privileges

    private parsePrivilegeList(value: unknown): { privilege: PrivilegeRow; depth: PrivilegeDepthName }[] {
        if (!Array.isArray(value))
            throw new ODataError(400, PAYLOAD_ERROR, "Privileges must be a collection of Microsoft.Dynamics.CRM.RolePrivilege.");
        return value.map((item: unknown) => {
            if (!isObject(item)) throw new ODataError(400, PAYLOAD_ERROR, "Each RolePrivilege must be an object.");
            const depth = item.Depth;
            if (typeof depth !== "string") {
                // contract: Role privileges — an unquoted number for Depth is rejected with 400.
                throw new ODataError(
                    400,
                    PAYLOAD_ERROR,
                    `Cannot convert the literal '${String(depth)}' to the expected type 'Microsoft.Dynamics.CRM.PrivilegeDepth'.`,
                );
            }
            const name = PRIVILEGE_DEPTHS.find((d) => d === depth);
            if (name === undefined) {
                throw new ODataError(
                    400,
                    PAYLOAD_ERROR,
                    `The value '${depth}' is not a valid member of 'Microsoft.Dynamics.CRM.PrivilegeDepth' for this operation.`,
                );
            }
            const privilegeId = parseGuid(typeof item.PrivilegeId === "string" ? item.PrivilegeId : "", "PrivilegeId");
            const privilege = this.state.privileges.find((p) => p.privilegeid === privilegeId);
            if (privilege === undefined) throw notFound("privilege", privilegeId);
            if (!allowsDepth(privilege, name)) {
                throw new ODataError(
                    400,
                    INVALID_PRIVILEGE_DEPTH,
                    `Invalid privilege depth for user. Privilege ${privilege.name} (Id=${privilege.privilegeid}) cannot be granted at depth ${name}.`,
                );
            }
            return { privilege, depth: name };
        });
    }

    private rolePrivilegeAction(caller: Caller, roleId: string, action: string, body: unknown): Reply {
        this.requireAdministrator(caller, "prvWriteRole", "role");
        const role = this.state.roles.find((r) => r.roleid === roleId);
        if (role === undefined) throw notFound("role", roleId);
        if (!isObject(body)) throw new ODataError(400, PAYLOAD_ERROR, `The request body of ${action} must be an object.`);
        const grants = (this.state.rolePrivileges[roleId] ??= {});
        if (action === "RemovePrivilegeRole") {
            const ref = body.Privilege;
            const privilegeId = parseGuid(isObject(ref) && typeof ref.privilegeid === "string" ? ref.privilegeid : "", "privilegeid");
            if (!this.state.privileges.some((p) => p.privilegeid === privilegeId)) throw notFound("privilege", privilegeId);
            // UNCONFIRMED: removing a privilege the role lacks is answered 204.
            delete grants[privilegeId];
            return { status: 204 };
        }
        const list = this.parsePrivilegeList(body.Privileges);
        if (action === "ReplacePrivilegesRole") {
            // contract: Role privileges — replaces the role's entire set.
            const replaced: Record<string, PrivilegeDepthName> = {};
            for (const { privilege, depth } of list) replaced[privilege.privilegeid] = depth;
            this.state.rolePrivileges[roleId] = replaced;
            return { status: 204 };
        }
        // UNCONFIRMED (contract: Role privileges): a privilege already on the role takes the newly given depth.
        for (const { privilege, depth } of list) grants[privilege.privilegeid] = depth;
        return { status: 204 };
    }

    private retrieveRolePrivileges(roleId: string): Reply {
        const role = this.state.roles.find((r) => r.roleid === roleId);
        if (role === undefined) throw notFound("role", roleId);
        const grants = this.state.rolePrivileges[roleId] ?? {};
        const RolePrivileges = Object.entries(grants).map(([privilegeId, depth]) => ({
            // contract: Role privileges — Depth is the enum member name, not its number.
            Depth: depth,
            PrivilegeId: privilegeId,
            BusinessUnitId: role.businessunitid,
            PrivilegeName: this.state.privileges.find((p) => p.privilegeid === privilegeId)?.name ?? "",
            RecordFilterId: EMPTY_GUID,
            RecordFilterUniqueName: null,
        }));
        return {
            status: 200,
            body: { "@odata.context": this.context("Microsoft.Dynamics.CRM.RetrieveRolePrivilegesRoleResponse"), RolePrivileges },
        };
    }

    // -------------------------------------------------------------------------------------------------------
    // Solutions — contract: Solution import

    private readCustomizationFile(body: unknown): SolutionFile {
        if (!isObject(body) || typeof body.CustomizationFile !== "string" || body.CustomizationFile.length === 0) {
            throw new ODataError(400, PAYLOAD_ERROR, "The parameter 'CustomizationFile' is required.");
        }
        const file = readSolutionFile(Buffer.from(body.CustomizationFile, "base64"));
        if (file === null) {
            // Message as listed for UnsupportedZipFileForImport in Microsoft Learn "Web service error codes".
            throw new ODataError(
                400,
                UNSUPPORTED_ZIP,
                "The compressed (.zip) or .cab file couldn't be uploaded because the file is corrupted or doesn't contain valid importable files.",
            );
        }
        return file;
    }

    private importSolutionAsync(caller: Caller, body: unknown): Reply {
        this.requireAdministrator(caller, "prvImportCustomization", "solution");
        const known = [
            "CustomizationFile",
            "OverwriteUnmanagedCustomizations",
            "PublishWorkflows",
            "ConvertToManaged",
            "SkipProductUpdateDependencies",
            "HoldingSolution",
            "SkipQueueRibbonJob",
            "LayerDesiredOrder",
            "AsyncRibbonProcessing",
            "ComponentParameters",
            "SolutionParameters",
            "IsTemplateMode",
            "TemplateSuffix",
            "TemplateDisplayNamePrefix",
        ];
        if (isObject(body)) {
            for (const key of Object.keys(body)) {
                if (!known.includes(key)) {
                    throw new ODataError(
                        400,
                        PAYLOAD_ERROR,
                        `The parameter '${key}' in the request payload is not a valid parameter for the operation 'ImportSolutionAsync'.`,
                    );
                }
            }
            for (const required of ["OverwriteUnmanagedCustomizations", "PublishWorkflows"]) {
                if (typeof body[required] !== "boolean") {
                    throw new ODataError(
                        400,
                        PAYLOAD_ERROR,
                        `The parameter '${required}' of 'ImportSolutionAsync' is required and must be a boolean.`,
                    );
                }
            }
        }
        const file = this.readCustomizationFile(body);
        // contract: Solution import — another install running: 0x80071151. Status 400 is UNCONFIRMED.
        if (this.state.asyncOperations.some((o) => o.statecode !== 3 && o.pending !== null)) {
            throw new ODataError(
                400,
                IMPORT_ALREADY_RUNNING,
                "Cannot start the requested operation [Import] because there is another [Import] running at this moment. Use Solution History for more details.",
            );
        }
        const importJob: ImportJobRow = {
            importjobid: randomUUID(),
            asyncoperationid: randomUUID(),
            solutionname: file.uniqueName,
            progress: 0,
            startedon: nowIso(),
            completedon: null,
            result: null,
            errorMessages: [],
        };
        this.state.importJobs.push(importJob);
        this.state.asyncOperations.push(
            this.newOperation(importJob.asyncoperationid, "ImportSolutionAsync", {
                kind: "import",
                importjobid: importJob.importjobid,
                uniquename: file.uniqueName,
                version: file.version,
                managed: file.managed,
                roles: file.roles,
            }),
        );
        return {
            status: 200,
            body: {
                "@odata.context": this.context("Microsoft.Dynamics.CRM.ImportSolutionAsyncResponse"),
                AsyncOperationId: importJob.asyncoperationid,
                ImportJobKey: importJob.importjobid,
            },
        };
    }

    private stageSolution(caller: Caller, body: unknown): Reply {
        this.requireAdministrator(caller, "prvImportCustomization", "solution");
        const file = this.readCustomizationFile(body);
        const installed = this.state.solutions.find((s) => s.uniquename.toLowerCase() === file.uniqueName.toLowerCase());
        return {
            status: 200,
            body: {
                "@odata.context": this.context("Microsoft.Dynamics.CRM.StageSolutionResponse"),
                StageSolutionResults: {
                    StageSolutionUploadId: randomUUID(),
                    StageSolutionStatus: "Passed",
                    SolutionValidationResults: [],
                    MissingDependencies: [],
                    SolutionDetails: {
                        SolutionUniqueName: file.uniqueName,
                        SolutionFriendlyName: file.friendlyName,
                        SolutionVersion: file.version,
                        IsManaged: file.managed,
                        IsSolutionUpgrade: installed !== undefined,
                        ExistingSolutionVersion: installed?.version ?? null,
                    },
                },
            },
        };
    }

    private uninstallSolutionAsync(caller: Caller, body: unknown): Reply {
        this.requireAdministrator(caller, "prvDeleteSolution", "solution");
        if (!isObject(body) || typeof body.SolutionUniqueName !== "string" || body.SolutionUniqueName === "") {
            throw new ODataError(400, PAYLOAD_ERROR, "The parameter 'SolutionUniqueName' is required.");
        }
        const id = randomUUID();
        this.state.asyncOperations.push(
            this.newOperation(id, "UninstallSolutionAsync", { kind: "uninstall", uniquename: body.SolutionUniqueName }),
        );
        return {
            status: 200,
            body: { "@odata.context": this.context("Microsoft.Dynamics.CRM.UninstallSolutionAsyncResponse"), AsyncOperationId: id },
        };
    }

    private newOperation(id: string, name: string, pending: PendingWork): AsyncOperationRow {
        return {
            asyncoperationid: id,
            name,
            statecode: 0,
            statuscode: 0,
            message: null,
            friendlymessage: null,
            createdon: nowIso(),
            completedon: null,
            pollsRemaining: this.importPolls,
            pending,
        };
    }

    /**
     * contract: Solution import — polled until statecode 3 (30 succeeded, 31 failed). In progress is reported as
     * statecode 2 / statuscode 20, the pair Dataverse's asyncoperation status reason table defines ("Locked",
     * "In Progress"); the first answer before any poll is 0 / 0 ("Ready", "Waiting For Resources").
     */
    private advance(op: AsyncOperationRow): void {
        if (op.statecode === 3 || op.pending === null) return;
        const job = this.jobFor(op);
        if (op.pollsRemaining > 0) {
            op.pollsRemaining--;
            op.statecode = 2;
            op.statuscode = 20;
            if (job !== undefined) job.progress = Math.min(90, job.progress + 30);
            return;
        }
        const failure = op.pending.kind === "import" ? this.applyImport(op.pending) : this.applyUninstall(op.pending.uniquename);
        op.statecode = 3;
        op.statuscode = failure === null ? 30 : 31;
        op.message = failure;
        op.friendlymessage = failure;
        op.completedon = nowIso();
        if (job !== undefined) {
            job.progress = 100;
            job.completedon = op.completedon;
            job.result = failure === null ? "Passed" : "Failed";
            job.errorMessages = failure === null ? [] : [failure];
        }
    }

    private jobFor(op: AsyncOperationRow): ImportJobRow | undefined {
        const pending = op.pending;
        if (pending?.kind !== "import") return undefined;
        return this.state.importJobs.find((j) => j.importjobid === pending.importjobid);
    }

    /** Returns a failure message, or null when the solution is installed. */
    private applyImport(work: Extract<PendingWork, { kind: "import" }>): string | null {
        const installed = this.state.solutions.find((s) => s.uniquename.toLowerCase() === work.uniquename.toLowerCase());
        if (installed !== undefined) {
            if (installed.ismanaged !== work.managed) {
                // contract: Solution import — managed/unmanaged mismatch 0x80048040/41. Which code is which direction is
                // UNCONFIRMED: 40 = managed package over an unmanaged install, 41 = the reverse.
                const code = work.managed ? MANAGED_OVER_UNMANAGED : UNMANAGED_OVER_MANAGED;
                return `Solution import failed with error ${code}: the solution '${work.uniquename}' is installed as ${installed.ismanaged ? "managed" : "unmanaged"} and the package is ${work.managed ? "managed" : "unmanaged"}.`;
            }
            // contract: Solution import — a lower version than installed is refused (message UNCONFIRMED).
            if (compareVersions(work.version, installed.version) < 0) {
                return `The solution '${work.uniquename}' version ${work.version} cannot be imported because version ${installed.version} is already installed. Downgrading a solution is not supported.`;
            }
        }
        const definitions = work.roles ?? this.state.solutionCatalog[work.uniquename] ?? [];
        const resolved = this.resolveRoleDefinitions(definitions);
        if (typeof resolved === "string") return resolved;
        if (installed !== undefined) {
            installed.version = work.version;
        } else {
            this.state.solutions.push({
                solutionid: randomUUID(),
                uniquename: work.uniquename,
                friendlyname: work.uniquename,
                version: work.version,
                ismanaged: work.managed,
                installedon: nowIso(),
            });
        }
        for (const definition of resolved) this.installRole(work.uniquename, work.managed, definition);
        return null;
    }

    private resolveRoleDefinitions(
        definitions: SolutionRoleDefinition[],
    ): { name: string; grants: Record<string, PrivilegeDepthName> }[] | string {
        const resolved: { name: string; grants: Record<string, PrivilegeDepthName> }[] = [];
        for (const definition of definitions) {
            const grants: Record<string, PrivilegeDepthName> = {};
            for (const { name, depth } of definition.privileges) {
                const privilege = this.state.privileges.find((p) => p.name === name);
                if (privilege === undefined || !allowsDepth(privilege, depth)) {
                    // contract: Solution import — missing dependencies 0x8004801D.
                    return `Solution import failed with error ${MISSING_DEPENDENCIES}: the role '${definition.name}' needs privilege ${name} at ${depth}, which this organization does not have.`;
                }
                grants[privilege.privilegeid] = depth;
            }
            resolved.push({ name: definition.name, grants });
        }
        return resolved;
    }

    /**
     * contract: Roles — one copy per business unit, children pointing at the root copy. contract: Solution import —
     * re-importing resets the role's privileges to the solution's set.
     */
    private installRole(
        solution: string,
        managed: boolean,
        definition: { name: string; grants: Record<string, PrivilegeDepthName> },
    ): void {
        const root = this.state.businessUnits.find((b) => b.parentbusinessunitid === null);
        if (root === undefined) return;
        const copyIn = (buId: string): RoleRow | undefined =>
            this.state.roles.find((r) => r.name === definition.name && r.solutionuniquename === solution && r.businessunitid === buId);
        let rootCopy = copyIn(root.businessunitid);
        if (rootCopy === undefined) {
            const roleid = randomUUID();
            rootCopy = {
                roleid,
                name: definition.name,
                businessunitid: root.businessunitid,
                parentrootroleid: roleid,
                ismanaged: managed,
                solutionuniquename: solution,
                bypassesPrivilegeChecks: false,
            };
            this.state.roles.push(rootCopy);
        }
        const rootRoleId = rootCopy.roleid;
        this.state.rolePrivileges[rootRoleId] = { ...definition.grants };
        for (const bu of this.state.businessUnits) {
            if (bu.businessunitid === root.businessunitid) continue;
            let copy = copyIn(bu.businessunitid);
            if (copy === undefined) {
                copy = { ...rootCopy, roleid: randomUUID(), businessunitid: bu.businessunitid, parentrootroleid: rootRoleId };
                this.state.roles.push(copy);
            }
            this.state.rolePrivileges[copy.roleid] = { ...definition.grants };
        }
    }

    /** contract: Solution import — uninstall removes the solution's components, its role included. */
    private applyUninstall(uniqueName: string): string | null {
        const solution = this.state.solutions.find((s) => s.uniquename.toLowerCase() === uniqueName.toLowerCase());
        if (solution === undefined) return `The solution '${uniqueName}' is not installed.`;
        this.removeSolution(solution.solutionid);
        return null;
    }

    private removeSolution(solutionId: string): void {
        const solution = this.state.solutions.find((s) => s.solutionid === solutionId);
        if (solution === undefined) return;
        const roleIds = new Set(this.state.roles.filter((r) => r.solutionuniquename === solution.uniquename).map((r) => r.roleid));
        this.state.roles = this.state.roles.filter((r) => !roleIds.has(r.roleid));
        for (const id of roleIds) delete this.state.rolePrivileges[id];
        this.state.userRoles = this.state.userRoles.filter((l) => !roleIds.has(l.roleid));
        this.state.solutions = this.state.solutions.filter((s) => s.solutionid !== solutionId);
    }

    private deleteSolution(caller: Caller, id: string): Reply {
        this.requireAdministrator(caller, "prvDeleteSolution", "solution");
        if (!this.state.solutions.some((s) => s.solutionid === id)) throw notFound("solution", id);
        this.removeSolution(id);
        return { status: 204 };
    }

    private retrieveImportResult(importJobId: string): Reply {
        const job = this.state.importJobs.find((j) => j.importjobid === importJobId);
        if (job === undefined) throw notFound("importjob", importJobId);
        if (job.result === null) {
            // UNCONFIRMED: the answer before the job finishes; callers are expected to poll the async operation first.
            throw new ODataError(400, INVALID_ARGUMENT, `The import job ${importJobId} has not completed yet.`);
        }
        return {
            status: 200,
            body: {
                "@odata.context": this.context("Microsoft.Dynamics.CRM.RetrieveSolutionImportResultResponse"),
                SolutionOperationResult: {
                    Status: job.result,
                    WarningMessages: [],
                    ErrorMessages: job.errorMessages,
                    ActionLink: null,
                },
            },
        };
    }

    // -------------------------------------------------------------------------------------------------------
    // Leads — contract: Leads

    private createLead(caller: Caller, body: unknown, representation: boolean, params: URLSearchParams): Reply {
        if (!isObject(body)) throw new ODataError(400, PAYLOAD_ERROR, "The request body must be a lead object.");
        const strings: Record<string, number> = {
            subject: 300,
            lastname: 50,
            firstname: 50,
            emailaddress1: 100,
            companyname: 100,
            description: 2000,
        };
        for (const [key, value] of Object.entries(body)) {
            if (key in strings) {
                if (value !== null && typeof value !== "string") {
                    throw new ODataError(
                        400,
                        PAYLOAD_ERROR,
                        `Cannot convert the literal '${String(value)}' to the expected type 'Edm.String'.`,
                    );
                }
            } else if (key === "leadsourcecode") {
                if (value !== null && !(typeof value === "number" && Number.isInteger(value))) {
                    throw new ODataError(
                        400,
                        PAYLOAD_ERROR,
                        `Cannot convert the literal '${String(value)}' to the expected type 'Edm.Int32'.`,
                    );
                }
            } else {
                throw invalidProperty(leadShape, key);
            }
        }
        this.requirePrivilege(caller, "prvCreateLead", "lead");
        for (const required of ["subject", "lastname"]) {
            const value = body[required];
            if (typeof value !== "string" || value.trim() === "") {
                // contract: Leads — subject and lastname are required. Code UNCONFIRMED.
                throw new ODataError(
                    400,
                    INVALID_ARGUMENT,
                    `A value for the required attribute '${required}' of entity 'lead' is missing.`,
                );
            }
        }
        for (const [key, max] of Object.entries(strings)) {
            const value = body[key];
            if (typeof value === "string" && value.length > max) {
                throw new ODataError(
                    400,
                    STRING_TOO_LONG,
                    `A validation error occurred. The length of the '${key}' attribute of the 'lead' entity exceeded the maximum allowed length of '${max}'.`,
                );
            }
        }
        const source = body.leadsourcecode;
        if (typeof source === "number" && (source < 1 || source > 10)) {
            // The lead source picklist runs 1–10 (8 = Web, contract: Leads); other values are not options.
            throw new ODataError(
                400,
                INVALID_ARGUMENT,
                `A validation error occurred. The value ${source} of 'leadsourcecode' on record of type 'lead' is outside the valid range.`,
            );
        }
        const text = (key: string): string | null => (typeof body[key] === "string" ? (body[key] as string) : null);
        const lead: LeadRow = {
            leadid: randomUUID(),
            subject: text("subject") ?? "",
            lastname: text("lastname") ?? "",
            firstname: text("firstname"),
            emailaddress1: text("emailaddress1"),
            companyname: text("companyname"),
            leadsourcecode: typeof source === "number" ? source : null,
            description: text("description"),
            ownerid: caller.user.systemuserid,
            createdon: nowIso(),
        };
        this.state.leads.push(lead);
        return this.created("leads", lead.leadid, leadJson(lead), leadShape, representation, params);
    }

    private deleteLead(caller: Caller, id: string): Reply {
        const depth = this.requirePrivilege(caller, "prvDeleteLead", "lead");
        const lead = this.state.leads.find((l) => l.leadid === id);
        if (lead === undefined) throw notFound("lead", id);
        if (!this.reaches(caller, depth, lead.ownerid)) throw accessDenied(caller, "DeleteAccess", id, "lead");
        this.state.leads = this.state.leads.filter((l) => l.leadid !== id);
        return { status: 204 };
    }
}

function accessDenied(caller: Caller, right: string, recordId: string, entity: string): ODataError {
    return new ODataError(
        403,
        ACCESS_CHECK_FAILED,
        `Principal user (Id=${caller.user.systemuserid}) does not have ${right} right(s) for record with Id = ${recordId} of entity ${entity}.`,
    );
}

function faultReply(fault: Extract<Fault, { kind: "status" }>): Reply {
    const headers: Record<string, string> = {};
    if (fault.retryAfter !== undefined) headers["Retry-After"] = fault.retryAfter;
    // contract: Service protection — 429 defaults to the 6000-requests limit code.
    const code = fault.code ?? (fault.status === 429 ? "0x80072322" : "");
    const message =
        fault.message ??
        (fault.status === 429
            ? "Number of requests exceeded the limit of 6000 over time window of 300 seconds."
            : `The service answered ${fault.status} (injected fault).`);
    return { status: fault.status, headers, body: { error: { code, message } } };
}

function parseSegment(text: string): Segment {
    const open = text.indexOf("(");
    if (open > 0 && text.endsWith(")")) return { name: text.slice(0, open), args: text.slice(open + 1, -1) };
    return { name: text, args: null };
}

function safeDecode(text: string): string {
    try {
        return decodeURIComponent(text);
    } catch {
        return text;
    }
}

function readBody(req: http.IncomingMessage): Promise<string> {
    return new Promise((resolve, reject) => {
        const chunks: Buffer[] = [];
        req.on("data", (chunk: Buffer) => chunks.push(chunk));
        req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
        req.on("error", reject);
    });
}

export async function startEmulator(options: EmulatorOptions = {}): Promise<Emulator> {
    const server = http.createServer();
    const emulator = new DataverseEmulator(server, options);
    server.on("request", (req: http.IncomingMessage, res: http.ServerResponse) => {
        emulator.handle(req, res).catch((err: unknown) => {
            // A bug in the emulator must show up as a 500 the test sees, not as a hung request.
            if (!res.headersSent) {
                res.writeHead(500, { "Content-Type": "application/json" });
                res.end(JSON.stringify({ error: { code: "0x80040216", message: `Emulator failure: ${String(err)}` } }));
            }
        });
    });
    await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(options.port ?? 0, "127.0.0.1", () => resolve());
    });
    const { port } = server.address() as AddressInfo;
    emulator.origin = `http://127.0.0.1:${port}`;
    emulator.baseUrl = `${emulator.origin}${API_PATH}`;
    return emulator;
}
