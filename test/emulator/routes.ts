/** Which area answers a Web API URL: unbound functions and actions, entity sets, single records, navigations. */
import type http from "node:http";
import { ENTITY_SETS } from "./entities";
import { badSegment, methodNotAllowed } from "./errors";
import { createLead, deleteLead } from "./leads";
import { functionArgument, onlyGet, onlyPost, parseGuid, type Caller, type Reply, type Segment, type Service } from "./protocol";
import { getEntity, queryCollection } from "./queries";
import { retrieveRolePrivileges, rolePrivilegeAction, userRoles } from "./roles";
import { deleteSolution, importSolutionAsync, retrieveImportResult, stageSolution, uninstallSolutionAsync } from "./solutions";
import { createSystemUser, deleteSystemUser, updateSystemUser } from "./systemUsers";
import { whoAmI } from "./auth";

/** Routes a request below the API path (already split into segments) for an authenticated caller. */
export function route(
    svc: Service,
    req: http.IncomingMessage,
    caller: Caller,
    method: string,
    segments: Segment[],
    params: URLSearchParams,
    body: unknown,
): Reply {
    if (segments.length === 0) throw badSegment("");
    const prefer = (req.headers.prefer ?? "").toString();
    const representation = /return=representation/i.test(prefer);
    const [first, ...rest] = segments;

    switch (first.name) {
        case "WhoAmI":
            return onlyGet(method, first.name, rest, () => whoAmI(svc, caller));
        case "RetrieveRolePrivilegesRole":
            return onlyGet(method, first.name, rest, () => retrieveRolePrivileges(svc, functionArgument(first.args, "RoleId", first.name)));
        case "RetrieveSolutionImportResult":
            return onlyGet(method, first.name, rest, () =>
                retrieveImportResult(svc, functionArgument(first.args, "ImportJobId", first.name)),
            );
        case "ImportSolutionAsync":
            return onlyPost(method, first.name, rest, () => importSolutionAsync(svc, caller, body));
        case "UninstallSolutionAsync":
            return onlyPost(method, first.name, rest, () => uninstallSolutionAsync(svc, caller, body));
        case "StageSolution":
            return onlyPost(method, first.name, rest, () => stageSolution(svc, caller, body));
    }

    const set = ENTITY_SETS[first.name];
    if (set === undefined) throw badSegment(first.name);

    if (first.args === null) {
        if (rest.length > 0) throw badSegment(rest[0].name);
        if (method === "GET") return queryCollection(svc, caller, first.name, set, params);
        if (method === "POST") {
            if (first.name === "systemusers") return createSystemUser(svc, caller, body, representation, params);
            if (first.name === "leads") return createLead(svc, caller, body, representation, params);
        }
        throw methodNotAllowed(method, first.name);
    }

    const id = parseGuid(first.args, set.shape.key);
    if (rest.length === 0) {
        if (method === "GET") return getEntity(svc, caller, first.name, set, id, params);
        if (method === "PATCH" && first.name === "systemusers") return updateSystemUser(svc, caller, id, body, representation, params);
        if (method === "DELETE") {
            if (first.name === "systemusers") return deleteSystemUser(svc, caller, id);
            if (first.name === "leads") return deleteLead(svc, caller, id);
            if (first.name === "solutions") return deleteSolution(svc, caller, id);
        }
        throw methodNotAllowed(method, `${first.name}(${id})`);
    }

    if (first.name === "systemusers" && rest[0].name === "systemuserroles_association") {
        return userRoles(svc, caller, method, id, rest, params, body);
    }
    if (first.name === "roles" && rest.length === 1 && rest[0].args === null) {
        switch (rest[0].name) {
            case "Microsoft.Dynamics.CRM.AddPrivilegesRole":
            case "Microsoft.Dynamics.CRM.ReplacePrivilegesRole":
            case "Microsoft.Dynamics.CRM.RemovePrivilegeRole":
                if (method !== "POST") throw methodNotAllowed(method, rest[0].name);
                return rolePrivilegeAction(svc, caller, id, rest[0].name.slice("Microsoft.Dynamics.CRM.".length), body);
        }
    }
    throw badSegment(rest[0].name);
}
