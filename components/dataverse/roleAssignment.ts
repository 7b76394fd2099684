import * as pulumi from "@pulumi/pulumi";
import { sharedClient } from "./client";
import {
    anyUnknown,
    CheckFailure,
    ignoreNotFound,
    isNotFound,
    mustBeGuid,
    mustBeInstanceUrl,
    mustNotBeEmpty,
    validateField,
    providerChanged,
    knownChanges,
    Versioned,
    Warned,
    warningCollector,
} from "./common";
import { PROVIDER_VERSION } from "./providerVersion";
import { findRole, RoleRow, userRoles } from "./roles";

export interface RoleAssignmentInputs extends Versioned {
    instanceUrl: string;
    systemUserId: string;
    roleName: string;
}

export interface RoleAssignmentOutputs extends RoleAssignmentInputs, Warned {
    /** The copy of the role in the user's business unit. */
    roleId: string;
    businessUnitId: string;
}

/** `<systemUserId>/<roleId>`: the link has no id of its own. */
const assignmentId = (userId: string, roleId: string) => `${userId}/${roleId}`;

const REPLACING_KEYS = ["instanceUrl", "systemUserId", "roleName"] as const;

/** Least privilege: any other role the user holds widens what the lead service can do with its credentials. */
function otherRolesWarning(inputs: RoleAssignmentInputs, roleId: string, roles: RoleRow[]): string[] {
    const others = roles.filter((r) => r.roleid !== roleId).map((r) => `"${r.name}"`);
    return others.length === 0
        ? []
        : [
              `Application user ${inputs.systemUserId} also holds ${others.join(", ")} besides "${inputs.roleName}"; the lead service needs only "${inputs.roleName}". Remove the others in the Power Platform admin center unless you granted them on purpose.`,
          ];
}

export const roleAssignmentProvider: pulumi.dynamic.ResourceProvider = {
    async check(_olds: RoleAssignmentInputs, news: RoleAssignmentInputs) {
        const failures: CheckFailure[] = [];
        validateField(failures, "instanceUrl", news.instanceUrl, mustBeInstanceUrl);
        validateField(failures, "systemUserId", news.systemUserId, mustBeGuid);
        validateField(failures, "roleName", news.roleName, mustNotBeEmpty);
        return { inputs: news, failures };
    },

    async diff(_id: string, olds: RoleAssignmentOutputs, news: RoleAssignmentInputs) {
        // The user's id is unknown in a preview whenever the user is being updated: that is a change, not a new link.
        const replaces = knownChanges(olds, news, REPLACING_KEYS);
        return { changes: replaces.length > 0 || anyUnknown(news, REPLACING_KEYS) || providerChanged(olds, news), replaces };
    },

    async create(inputs: RoleAssignmentInputs) {
        const client = sharedClient(inputs.instanceUrl);
        const { businessUnitId, roles } = await userRoles(client, inputs.systemUserId);
        // The user's business unit decides which copy of the role it can hold.
        const role = await findRole(client, inputs.roleName, businessUnitId);
        if (!roles.some((r) => r.roleid === role.roleid)) {
            await client.associate("systemusers", inputs.systemUserId, "systemuserroles_association", "roles", role.roleid);
        }
        const warnings = warningCollector();
        otherRolesWarning(inputs, role.roleid, roles).forEach(warnings.add);
        const outs: RoleAssignmentOutputs = { ...inputs, roleId: role.roleid, businessUnitId, warnings: warnings.list };
        return { id: assignmentId(inputs.systemUserId, role.roleid), outs };
    },

    async read(id: string, props: RoleAssignmentOutputs) {
        try {
            const { roles } = await userRoles(sharedClient(props.instanceUrl), props.systemUserId);
            // A link someone removed is gone from state, so the next `pulumi up` links it again.
            if (!roles.some((r) => r.roleid === props.roleId)) return { id: "", props: {} };
            return { id, props: { ...props, warnings: otherRolesWarning(props, props.roleId, roles) } };
        } catch (err) {
            if (isNotFound(err)) return { id: "", props: {} };
            throw err;
        }
    },

    // Only a new project version gets here (everything else replaces): keep the link, store the new code.
    async update(_id: string, olds: RoleAssignmentOutputs, news: RoleAssignmentInputs) {
        return { outs: { ...olds, ...news, warnings: olds.warnings ?? [] } };
    },

    async delete(_id: string, props: RoleAssignmentOutputs) {
        await ignoreNotFound(
            sharedClient(props.instanceUrl).disassociate("systemusers", props.systemUserId, "systemuserroles_association", props.roleId),
        );
    },
};

/** Arguments of {@link RoleAssignment}. */
export interface RoleAssignmentArgs {
    /** The Dynamics 365 instance, `https://<org>.crm<N>.dynamics.com`. */
    readonly instanceUrl: pulumi.Input<string>;
    /** The user that gets the role (`systemuserid`). */
    readonly systemUserId: pulumi.Input<string>;
    /** Name of the security role; its copy in the user's business unit is assigned. */
    readonly roleName: pulumi.Input<string>;
}

/** The guide's step 4a: the "Microsoft Marketplace Lead Writer" role assigned to the lead-writing user. */
export class RoleAssignment extends pulumi.dynamic.Resource {
    declare readonly roleId: pulumi.Output<string>;
    declare readonly businessUnitId: pulumi.Output<string>;
    /** What the user must act on, such as other roles the user holds; gathered into the stack's `warnings`. */
    declare readonly warnings: pulumi.Output<string[]>;

    constructor(name: string, args: RoleAssignmentArgs, opts?: pulumi.CustomResourceOptions) {
        super(
            roleAssignmentProvider,
            name,
            { roleId: undefined, businessUnitId: undefined, warnings: undefined, ...args, providerVersion: PROVIDER_VERSION },
            opts,
            "dataverse",
            "RoleAssignment",
        );
    }
}
