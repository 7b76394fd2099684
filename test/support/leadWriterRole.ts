import { randomUUID } from "node:crypto";
import { LEAD_WRITER_ROLE_NAME, LEAD_WRITER_ROLE_PRIVILEGES, ROOT_BUSINESS_UNIT_ID, type Emulator } from "../emulator/server";

/**
 * Gives a Dataverse user the Lead Writer role as the solution and `pulumi up` leave it: the managed role in the root
 * business unit with the lead privileges, less `withoutPrivilege` when a test takes that one away. Returns the role id.
 */
export function grantLeadWriterRole(emulator: Emulator, systemuserid: string, withoutPrivilege?: string): string {
    const { state } = emulator;
    const roleid = randomUUID();
    state.roles.push({
        roleid,
        name: LEAD_WRITER_ROLE_NAME,
        businessunitid: ROOT_BUSINESS_UNIT_ID,
        parentrootroleid: roleid,
        ismanaged: true,
        solutionuniquename: "MicrosoftMarketplacesLeadIntegrationSolution",
        bypassesPrivilegeChecks: false,
    });
    state.rolePrivileges[roleid] = Object.fromEntries(
        LEAD_WRITER_ROLE_PRIVILEGES.filter((p) => p.name !== withoutPrivilege).map((p) => [
            state.privileges.find((row) => row.name === p.name)!.privilegeid,
            p.depth,
        ]),
    );
    state.userRoles.push({ systemuserid, roleid });
    return roleid;
}
