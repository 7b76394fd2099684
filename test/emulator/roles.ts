/**
 * Roles: user ↔ role links through `systemuserroles_association` (`$ref`), and the bound actions that add, replace
 * and remove a role's privileges (contract: Roles; Role privileges).
 */
import { roleJson, roleShape } from "./entities";
import { BAD_SEGMENT_CODE, ODataError, evaluateFilter, parseFilter, parseSelect, project } from "./odata";
import { PRIVILEGE_DEPTHS, type PrivilegeDepthName, type PrivilegeRow } from "./state";
import {
    DUPLICATE_KEY,
    INVALID_PRIVILEGE_DEPTH,
    PAYLOAD_ERROR,
    USER_IN_WRONG_BUSINESS,
    badSegment,
    methodNotAllowed,
    notFound,
} from "./errors";
import {
    type Caller,
    EMPTY_GUID,
    type Reply,
    type Segment,
    type Service,
    isObject,
    odataContext,
    parseGuid,
    referencedId,
} from "./protocol";
import { allowsDepth, requireAdministrator, rolesOf } from "./privileges";
import { checkQueryOptions } from "./queries";

export function userRoles(
    svc: Service,
    caller: Caller,
    method: string,
    userId: string,
    rest: Segment[],
    params: URLSearchParams,
    body: unknown,
): Reply {
    const user = svc.state.systemUsers.find((u) => u.systemuserid === userId);
    const nav = rest[0];
    const tail = rest.slice(1);
    if (tail.length > 1 || (tail.length === 1 && tail[0].name !== "$ref")) throw badSegment(tail[tail.length - 1].name);
    const isRef = tail.length === 1;

    if (!isRef) {
        if (nav.args !== null) throw badSegment(`${nav.name}(${nav.args})`);
        if (method !== "GET") throw methodNotAllowed(method, nav.name);
        if (user === undefined) throw notFound("systemuser", userId);
        checkQueryOptions(params, ["$select", "$filter"]);
        const select = parseSelect(roleShape, params.get("$select"));
        const filter = parseFilter(roleShape, params.get("$filter"));
        const value = rolesOf(svc, userId)
            .map(roleJson)
            .filter((r) => evaluateFilter(filter, r))
            .map((r) => project(roleShape, r, select));
        return { status: 200, body: { "@odata.context": odataContext(svc, "roles"), value } };
    }

    requireAdministrator(svc, caller, "prvAssignRole", "role");
    if (method === "POST" && nav.args === null) {
        if (user === undefined) throw notFound("systemuser", userId);
        const roleId = referencedId(isObject(body) ? body["@odata.id"] : undefined, "roles");
        if (roleId === null) throw new ODataError(400, PAYLOAD_ERROR, "The @odata.id must reference a role: <base>roles(<roleid>).");
        const role = svc.state.roles.find((r) => r.roleid === roleId);
        if (role === undefined) throw notFound("role", roleId);
        if (role.businessunitid !== user.businessunitid) {
            // Message as listed for UserInWrongBusiness in Microsoft Learn "Web service error codes".
            throw new ODataError(
                400,
                USER_IN_WRONG_BUSINESS,
                `Cannot associate security role because the security role's Business Unit is not the same as the user's Business Unit. Details: userid=${userId}, userBU=${user.businessunitid}, roleId=${roleId}, roleBU=${role.businessunitid}`,
            );
        }
        if (svc.state.userRoles.some((l) => l.systemuserid === userId && l.roleid === roleId)) {
            // UNCONFIRMED (contract: Roles): no page states the answer to a repeated association; 204 by default.
            if (svc.state.quirks.duplicateRoleAssociation === "duplicateKeyError") {
                throw new ODataError(400, DUPLICATE_KEY, "Cannot insert duplicate key.");
            }
            return { status: 204 };
        }
        svc.state.userRoles.push({ systemuserid: userId, roleid: roleId });
        return { status: 204 };
    }
    if (method === "DELETE") {
        if (user === undefined) throw notFound("systemuser", userId);
        const roleId = nav.args !== null ? parseGuid(nav.args, "roleid") : referencedId(params.get("$id"), "roles");
        if (roleId === null)
            throw new ODataError(400, BAD_SEGMENT_CODE, "The $id query option must reference a role: <base>roles(<roleid>).");
        // UNCONFIRMED: removing a link that does not exist is answered 204 (no page states otherwise).
        svc.state.userRoles = svc.state.userRoles.filter((l) => !(l.systemuserid === userId && l.roleid === roleId));
        return { status: 204 };
    }
    throw methodNotAllowed(method, `${nav.name}/$ref`);
}

export function parsePrivilegeList(svc: Service, value: unknown): { privilege: PrivilegeRow; depth: PrivilegeDepthName }[] {
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
        const privilege = svc.state.privileges.find((p) => p.privilegeid === privilegeId);
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

export function rolePrivilegeAction(svc: Service, caller: Caller, roleId: string, action: string, body: unknown): Reply {
    requireAdministrator(svc, caller, "prvWriteRole", "role");
    const role = svc.state.roles.find((r) => r.roleid === roleId);
    if (role === undefined) throw notFound("role", roleId);
    if (!isObject(body)) throw new ODataError(400, PAYLOAD_ERROR, `The request body of ${action} must be an object.`);
    const grants = (svc.state.rolePrivileges[roleId] ??= {});
    if (action === "RemovePrivilegeRole") {
        const ref = body.Privilege;
        const privilegeId = parseGuid(isObject(ref) && typeof ref.privilegeid === "string" ? ref.privilegeid : "", "privilegeid");
        if (!svc.state.privileges.some((p) => p.privilegeid === privilegeId)) throw notFound("privilege", privilegeId);
        // UNCONFIRMED: removing a privilege the role lacks is answered 204.
        delete grants[privilegeId];
        return { status: 204 };
    }
    const list = parsePrivilegeList(svc, body.Privileges);
    if (action === "ReplacePrivilegesRole") {
        // contract: Role privileges — replaces the role's entire set.
        const replaced: Record<string, PrivilegeDepthName> = {};
        for (const { privilege, depth } of list) replaced[privilege.privilegeid] = depth;
        svc.state.rolePrivileges[roleId] = replaced;
        return { status: 204 };
    }
    // UNCONFIRMED (contract: Role privileges): a privilege already on the role takes the newly given depth.
    for (const { privilege, depth } of list) grants[privilege.privilegeid] = depth;
    return { status: 204 };
}

export function retrieveRolePrivileges(svc: Service, roleId: string): Reply {
    const role = svc.state.roles.find((r) => r.roleid === roleId);
    if (role === undefined) throw notFound("role", roleId);
    const grants = svc.state.rolePrivileges[roleId] ?? {};
    const RolePrivileges = Object.entries(grants).map(([privilegeId, depth]) => ({
        // contract: Role privileges — Depth is the enum member name, not its number.
        Depth: depth,
        PrivilegeId: privilegeId,
        BusinessUnitId: role.businessunitid,
        PrivilegeName: svc.state.privileges.find((p) => p.privilegeid === privilegeId)?.name ?? "",
        RecordFilterId: EMPTY_GUID,
        RecordFilterUniqueName: null,
    }));
    return {
        status: 200,
        body: { "@odata.context": odataContext(svc, "Microsoft.Dynamics.CRM.RetrieveRolePrivilegesRoleResponse"), RolePrivileges },
    };
}
