/**
 * The few Microsoft Graph v1.0 calls the Office 365 path uses, on the same server as the Dataverse emulator so that
 * a licence assigned here reaches Dataverse's state: `GET subscribedSkus`, `GET users/{id}`,
 * `POST users/{id}/assignLicense`. Errors in Graph's shape, `{"error":{"code":"…","message":"…"}}`.
 *
 * Facts checked on Microsoft Learn (Graph v1.0 reference, "user: assignLicense" and "subscribedSku resource type"):
 * the body `{addLicenses:[{skuId,disabledPlans}], removeLicenses:[skuId]}`, 200 with the user; `prepaidUnits.enabled`
 * and `consumedUnits`. "License assignment cannot be done for user with invalid usage location." is the message
 * public reports quote. UNCONFIRMED (no page states them): the exact messages for an unknown SKU, no free seat
 * ("… does not have any available licenses." is what public reports quote) and removing a licence the user lacks.
 */
import { randomUUID } from "node:crypto";
import type http from "node:http";
import { ODataError } from "./odata";
import type { Reply, Service } from "./protocol";
import { ROOT_BUSINESS_UNIT_ID } from "./state";
import type { DirectoryUserRow, GraphState } from "./graphState";

export const GRAPH_PATH = "/v1.0/";

const BAD_REQUEST = "Request_BadRequest";
const NOT_FOUND = "Request_ResourceNotFound";

function graphError(status: number, code: string, message: string): ODataError {
    return new ODataError(status, code, message, { "request-id": randomUUID() });
}

const consumed = (graph: GraphState, skuId: string) => graph.users.filter((u) => u.assignedLicenses.some((l) => l.skuId === skuId)).length;

function userJson(user: DirectoryUserRow): Record<string, unknown> {
    return {
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users/$entity",
        id: user.id,
        userPrincipalName: user.userPrincipalName,
        displayName: user.displayName,
        usageLocation: user.usageLocation,
        accountEnabled: user.accountEnabled,
        assignedLicenses: user.assignedLicenses.map((l) => ({ ...l, disabledPlans: [...l.disabledPlans] })),
    };
}

function findUser(graph: GraphState, key: string): DirectoryUserRow {
    const lower = key.toLowerCase();
    const user = graph.users.find((u) => u.id === lower || u.userPrincipalName.toLowerCase() === lower);
    if (!user) {
        throw graphError(
            404,
            NOT_FOUND,
            `Resource '${key}' does not exist or one of its queried reference-property objects are not present.`,
        );
    }
    return user;
}

function assignLicense(svc: Service, user: DirectoryUserRow, body: unknown): Reply {
    const graph = svc.state.graph;
    const request = body as { addLicenses?: unknown; removeLicenses?: unknown } | undefined;
    if (!request || !Array.isArray(request.addLicenses) || !Array.isArray(request.removeLicenses)) {
        throw graphError(400, BAD_REQUEST, "Both addLicenses and removeLicenses are required collections.");
    }
    const adds = request.addLicenses as { skuId?: string; disabledPlans?: string[] }[];
    const removes = (request.removeLicenses as string[]).map((id) => String(id).toLowerCase());
    // Validate everything first: Graph applies a request whole or not at all.
    for (const add of adds) {
        const sku = graph.skus.find((s) => s.skuId === String(add.skuId ?? "").toLowerCase());
        if (!sku) throw graphError(400, BAD_REQUEST, `License ${add.skuId} does not correspond to a valid company License.`);
        if (!user.usageLocation) {
            throw graphError(400, BAD_REQUEST, "License assignment cannot be done for user with invalid usage location.");
        }
        const holds = user.assignedLicenses.some((l) => l.skuId === sku.skuId);
        if (!holds && consumed(graph, sku.skuId) >= sku.enabled) {
            throw graphError(400, BAD_REQUEST, `Subscription ${sku.skuId} does not have any available licenses.`);
        }
    }
    for (const skuId of removes) {
        if (!user.assignedLicenses.some((l) => l.skuId === skuId)) {
            throw graphError(400, BAD_REQUEST, `User does not have a corresponding license ${skuId}.`);
        }
    }
    const before = hasDataverseLicence(graph, user);
    user.assignedLicenses = user.assignedLicenses.filter((l) => !removes.includes(l.skuId));
    for (const add of adds) {
        const skuId = String(add.skuId).toLowerCase();
        if (!user.assignedLicenses.some((l) => l.skuId === skuId)) {
            user.assignedLicenses.push({ skuId, disabledPlans: [...(add.disabledPlans ?? [])] });
        }
    }
    const after = hasDataverseLicence(graph, user);
    if (before !== after) {
        // Dataverse learns of the change later, in the background.
        graph.pendingSyncs.push({ objectId: user.id, outcome: after ? "licensed" : "unlicensed", requestsLeft: graph.syncDelayRequests });
    }
    return { status: 200, body: userJson(user) };
}

function hasDataverseLicence(graph: GraphState, user: DirectoryUserRow): boolean {
    return user.assignedLicenses.some((l) => graph.skus.find((s) => s.skuId === l.skuId)?.includesDataverse);
}

/** Answers a request below `/v1.0/`. Any non-empty bearer token is accepted. */
export function routeGraph(svc: Service, req: http.IncomingMessage, method: string, url: URL, body: unknown): Reply {
    if (!/^Bearer\s+\S+\s*$/i.test(req.headers.authorization ?? "")) {
        throw graphError(401, "InvalidAuthenticationToken", "Access token is empty.");
    }
    const graph = svc.state.graph;
    const segments = url.pathname
        .slice(GRAPH_PATH.length)
        .split("/")
        .filter((s) => s.length > 0)
        .map(decodeURIComponent);
    if (segments.length === 1 && segments[0] === "subscribedSkus" && method === "GET") {
        return {
            status: 200,
            body: {
                "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#subscribedSkus",
                value: graph.skus.map((s) => ({
                    skuId: s.skuId,
                    skuPartNumber: s.skuPartNumber,
                    appliesTo: "User",
                    capabilityStatus: "Enabled",
                    consumedUnits: consumed(graph, s.skuId),
                    prepaidUnits: { enabled: s.enabled, suspended: 0, warning: 0, lockedOut: 0 },
                })),
            },
        };
    }
    if (segments[0] === "users" && segments.length === 2 && method === "GET") {
        return { status: 200, body: userJson(findUser(graph, segments[1])) };
    }
    if (segments[0] === "users" && segments.length === 3 && segments[2] === "assignLicense" && method === "POST") {
        return assignLicense(svc, findUser(graph, segments[1]), body);
    }
    throw graphError(400, BAD_REQUEST, `Unsupported request: ${method} ${url.pathname}`);
}

/**
 * Moves Dataverse's background synchronisation one request on: a user whose Dynamics licence arrived gets its
 * `systemuser` (or is enabled again), one whose licence went is disabled. Dataverse never deletes such a user.
 */
export function advanceDirectorySync(svc: Service): void {
    const graph = svc.state.graph;
    for (const sync of graph.pendingSyncs) sync.requestsLeft--;
    const due = graph.pendingSyncs.filter((s) => s.requestsLeft <= 0);
    graph.pendingSyncs = graph.pendingSyncs.filter((s) => s.requestsLeft > 0);
    for (const sync of due) {
        const row = svc.state.systemUsers.find((u) => u.azureactivedirectoryobjectid === sync.objectId && u.deletedstate === 0);
        if (row) {
            row.isdisabled = sync.outcome === "unlicensed";
            continue;
        }
        const user = graph.users.find((u) => u.id === sync.objectId);
        if (sync.outcome === "licensed" && user) {
            svc.state.systemUsers.push({
                systemuserid: randomUUID(),
                fullname: user.displayName,
                applicationid: null,
                accessmode: 0,
                businessunitid: ROOT_BUSINESS_UNIT_ID,
                isdisabled: false,
                deletedstate: 0,
                azureactivedirectoryobjectid: user.id,
                internalemailaddress: user.userPrincipalName,
            });
        }
    }
}

/** A directory user as `azuread.User` creates one (for tests, which play the azuread provider's part). */
export function directoryUser(userPrincipalName: string, overrides: Partial<DirectoryUserRow> = {}): DirectoryUserRow {
    return {
        id: randomUUID(),
        userPrincipalName,
        displayName: userPrincipalName.split("@")[0],
        usageLocation: "US",
        accountEnabled: true,
        assignedLicenses: [],
        ...overrides,
    };
}
