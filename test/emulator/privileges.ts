/**
 * What the caller may do: its roles, the privilege checks Dataverse makes before a write or read, and which records a
 * privilege depth reaches (contract: Leads; Roles).
 */
import { ODataError } from "./odata";
import { PRIVILEGE_DEPTHS, type PrivilegeDepthName, type PrivilegeRow, type RoleRow } from "./state";
import { PRINCIPAL_PRIVILEGE_DENIED, USER_NOT_ASSIGNED_ROLES } from "./errors";
import { type Caller, EMPTY_GUID, type Service } from "./protocol";

function depthIndex(depth: PrivilegeDepthName): number {
    return PRIVILEGE_DEPTHS.indexOf(depth);
}

/** Whether a privilege can be granted at a depth at all (contract: Role privileges). */
export function allowsDepth(privilege: PrivilegeRow, depth: PrivilegeDepthName): boolean {
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

export function rolesOf(svc: Service, userId: string): RoleRow[] {
    const ids = new Set(svc.state.userRoles.filter((l) => l.systemuserid === userId).map((l) => l.roleid));
    return svc.state.roles.filter((r) => ids.has(r.roleid));
}

export function bypassesChecks(svc: Service, caller: Caller): boolean {
    return rolesOf(svc, caller.user.systemuserid).some((r) => r.bypassesPrivilegeChecks);
}

/**
 * contract: Leads — no role at all answers UserNotAssignedRoles; a missing privilege answers 403
 * PrincipalPrivilegeDenied. Returns the widest depth the caller holds, or null for System Administrator.
 */
export function requirePrivilege(svc: Service, caller: Caller, privilegeName: string, entity: string): PrivilegeDepthName | null {
    const roles = rolesOf(svc, caller.user.systemuserid);
    const userId = caller.user.systemuserid;
    if (roles.length === 0) {
        throw new ODataError(
            403,
            USER_NOT_ASSIGNED_ROLES,
            `SecLib::RetrievePrivilegeForUser failed - no roles are assigned to user. Returned hr = -2147209463, User: ${userId}`,
        );
    }
    if (roles.some((r) => r.bypassesPrivilegeChecks)) return null;
    const privilege = svc.state.privileges.find((p) => p.name === privilegeName);
    let best: PrivilegeDepthName | undefined;
    if (privilege !== undefined) {
        for (const role of roles) {
            const depth = svc.state.rolePrivileges[role.roleid]?.[privilege.privilegeid];
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
export function requireAdministrator(svc: Service, caller: Caller, privilegeName: string, entity: string): void {
    if (bypassesChecks(svc, caller)) return;
    requirePrivilege(svc, caller, privilegeName, entity);
}

export function businessUnitSubtree(svc: Service, root: string): Set<string> {
    const ids = new Set([root]);
    for (let grew = true; grew;) {
        grew = false;
        for (const bu of svc.state.businessUnits) {
            if (bu.parentbusinessunitid !== null && ids.has(bu.parentbusinessunitid) && !ids.has(bu.businessunitid)) {
                ids.add(bu.businessunitid);
                grew = true;
            }
        }
    }
    return ids;
}

/** Whether a grant at `depth` reaches a record owned by `ownerId` (null depth = System Administrator). */
export function reaches(svc: Service, caller: Caller, depth: PrivilegeDepthName | null, ownerId: string): boolean {
    if (depth === null || depth === "Global") return true;
    if (depth === "Basic") return ownerId === caller.user.systemuserid;
    const owner = svc.state.systemUsers.find((u) => u.systemuserid === ownerId);
    if (owner === undefined) return false;
    if (depth === "Local") return owner.businessunitid === caller.user.businessunitid;
    return businessUnitSubtree(svc, caller.user.businessunitid).has(owner.businessunitid);
}
