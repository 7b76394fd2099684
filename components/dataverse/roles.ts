import { DataverseClient, odataGuid, odataString } from "./client";

export interface RoleRow {
    roleid: string;
    name: string;
    _businessunitid_value: string;
    _parentrootroleid_value?: string | null;
}

const ROLE_COLUMNS = "roleid,name,_businessunitid_value,_parentrootroleid_value";

/** The business unit at the top of the instance's tree. */
export async function rootBusinessUnitId(client: DataverseClient): Promise<string> {
    const rows = await client.list<{ businessunitid: string }>("businessunits", {
        $select: "businessunitid,name",
        $filter: "_parentbusinessunitid_value eq null",
    });
    if (rows.length !== 1) {
        throw new Error(`${client.instanceUrl} has ${rows.length} root business units; expected exactly one`);
    }
    return rows[0].businessunitid;
}

/** The one copy of a role in a business unit (roles exist once per business unit). */
export async function findRole(client: DataverseClient, name: string, businessUnitId: string): Promise<RoleRow> {
    const rows = await client.list<RoleRow>("roles", {
        $select: ROLE_COLUMNS,
        $filter: `name eq ${odataString(name)} and _businessunitid_value eq ${odataGuid(businessUnitId)}`,
    });
    return onlyCopy(client, name, businessUnitId, rows);
}

/**
 * The root business unit and its copy of a role. Both lookups run at once: every copy of the role is read and
 * the root one picked, which costs one round trip instead of two in sequence.
 */
export async function findRootRole(client: DataverseClient, name: string): Promise<{ businessUnitId: string; role: RoleRow }> {
    const [businessUnitId, copies] = await Promise.all([
        rootBusinessUnitId(client),
        client.list<RoleRow>("roles", { $select: ROLE_COLUMNS, $filter: `name eq ${odataString(name)}` }),
    ]);
    const inRoot = copies.filter((r) => r._businessunitid_value.toLowerCase() === businessUnitId.toLowerCase());
    return { businessUnitId, role: onlyCopy(client, name, businessUnitId, inRoot) };
}

function onlyCopy(client: DataverseClient, name: string, businessUnitId: string, rows: RoleRow[]): RoleRow {
    if (rows.length !== 1) {
        throw new Error(
            rows.length === 0
                ? `The security role "${name}" does not exist in business unit ${businessUnitId} of ${client.instanceUrl}. Is the Marketplace Lead Writer solution installed, and is leadWriterRoleName right?`
                : `${rows.length} security roles are named "${name}" in business unit ${businessUnitId} of ${client.instanceUrl}; expected one.`,
        );
    }
    return rows[0];
}

/** The roles assigned to a user, through `systemuserroles_association`. */
export async function userRoles(client: DataverseClient, systemUserId: string): Promise<{ businessUnitId: string; roles: RoleRow[] }> {
    const user = await client.get<{ _businessunitid_value: string; systemuserroles_association?: RoleRow[] }>(
        `systemusers(${odataGuid(systemUserId)})`,
        {
            $select: "fullname,_businessunitid_value",
            $expand: "systemuserroles_association($select=roleid,name,_businessunitid_value)",
        },
    );
    return { businessUnitId: user._businessunitid_value, roles: user.systemuserroles_association ?? [] };
}
