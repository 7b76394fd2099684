import * as pulumi from "@pulumi/pulumi";
import { GUIDE_ROLE_PRIVILEGES, PrivilegeDepth, PrivilegeGrant, PRIVILEGE_DEPTHS } from "../config";
import { sharedClient, DataverseClient, odataGuid, odataString } from "./client";
import {
    anyUnknown,
    CheckFailure,
    depthRank,
    isNotFound,
    isUnknown,
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
import { findRole, rootBusinessUnitId } from "./roles";

export interface RolePrivilegesInputs extends Versioned {
    instanceUrl: string;
    roleName: string;
    /** Each privilege at its least depth; deeper grants made by others are left alone. */
    privileges: PrivilegeGrant[];
    /** The solution version the role came with; an import can reset the role, so a new version re-applies. */
    solutionVersion: string;
}

/** Depth of each managed privilege on the role; null when the role lacks it. */
export type DepthsByName = Record<string, PrivilegeDepth | null>;

export interface RolePrivilegesOutputs extends RolePrivilegesInputs, Warned {
    roleId: string;
    /** What each privilege was before this stack first touched it: delete restores these. */
    previousDepths: DepthsByName;
    /** What each privilege is now, as last read: a lower value than asked for is drift. */
    currentDepths: DepthsByName;
}

interface PrivilegeRow {
    privilegeid: string;
    name: string;
    canbebasic: boolean;
    canbelocal: boolean;
    canbedeep: boolean;
    canbeglobal: boolean;
}

interface RolePrivilege {
    Depth: PrivilegeDepth;
    PrivilegeId: string;
    BusinessUnitId: string;
    PrivilegeName: string;
}

const rank = (depth: PrivilegeDepth | null | undefined) => (depth ? depthRank(depth) : -1);

const REPLACING_KEYS = ["instanceUrl", "roleName"] as const;

/**
 * Least privilege, as the user must know it: grants beyond the guide's (an override such as
 * `allowElevatedPrivileges`), and deeper grants someone else made, which this stack leaves alone.
 */
function privilegeWarnings(inputs: RolePrivilegesInputs, current: DepthsByName): string[] {
    const warnings: string[] = [];
    for (const grant of inputs.privileges) {
        const guide = GUIDE_ROLE_PRIVILEGES.find((g) => g.name.toLowerCase() === grant.name.toLowerCase());
        if (!guide) {
            warnings.push(`Role "${inputs.roleName}" is granted ${grant.name} at ${grant.depth}, which the guide does not ask for.`);
        } else if (rank(grant.depth) > rank(guide.depth)) {
            warnings.push(`Role "${inputs.roleName}" is granted ${grant.name} at ${grant.depth}, deeper than the guide's ${guide.depth}.`);
        }
        if (rank(current[grant.name]) > rank(grant.depth)) {
            warnings.push(
                `Role "${inputs.roleName}" already holds ${grant.name} at ${current[grant.name]}, deeper than the ${grant.depth} asked for; this stack leaves grants it did not make alone.`,
            );
        }
    }
    return warnings;
}

/** Privilege rows by name, refusing names that do not exist and depths they cannot take before any write. */
async function lookUpPrivileges(client: DataverseClient, grants: PrivilegeGrant[]): Promise<Map<string, PrivilegeRow>> {
    const rows =
        grants.length === 0
            ? []
            : await client.list<PrivilegeRow>("privileges", {
                  $select: "privilegeid,name,canbebasic,canbelocal,canbedeep,canbeglobal",
                  $filter: grants.map((g) => `name eq ${odataString(g.name)}`).join(" or "),
              });
    const byName = new Map(rows.map((r) => [r.name.toLowerCase(), r]));
    const missing = grants.filter((g) => !byName.has(g.name.toLowerCase())).map((g) => g.name);
    if (missing.length > 0) {
        throw new Error(`No such privilege on ${client.instanceUrl}: ${missing.join(", ")} (rolePrivileges)`);
    }
    for (const grant of grants) {
        const row = byName.get(grant.name.toLowerCase())!;
        const allowed = { Basic: row.canbebasic, Local: row.canbelocal, Deep: row.canbedeep, Global: row.canbeglobal }[grant.depth];
        if (!allowed) {
            throw new Error(`${grant.name} cannot be granted at ${grant.depth} depth (rolePrivileges)`);
        }
    }
    return byName;
}

async function readDepths(client: DataverseClient, roleId: string): Promise<Map<string, RolePrivilege>> {
    const result = await client.callFunction<{ RolePrivileges: RolePrivilege[] }>("RetrieveRolePrivilegesRole", {
        RoleId: odataGuid(roleId),
    });
    return new Map(result.RolePrivileges.map((p) => [p.PrivilegeId.toLowerCase(), p]));
}

function depthsOf(names: string[], privileges: Map<string, PrivilegeRow>, held: Map<string, RolePrivilege>): DepthsByName {
    return Object.fromEntries(
        names.map((name) => {
            const row = privileges.get(name.toLowerCase());
            return [name, (row && held.get(row.privilegeid.toLowerCase())?.Depth) ?? null];
        }),
    );
}

/**
 * Puts back the recorded depth of each named privilege that is now deeper than it was: removes it, or lowers it by
 * removing and adding it again. Privileges at or below their recorded depth are left alone.
 */
async function restore(
    client: DataverseClient,
    roleId: string,
    businessUnitId: string,
    names: string[],
    previousDepths: DepthsByName,
    privileges: Map<string, PrivilegeRow>,
    held: Map<string, RolePrivilege>,
): Promise<void> {
    const now = depthsOf(names, privileges, held);
    const targets = names
        .filter((name) => rank(previousDepths[name]) < rank(now[name]))
        .map((name) => ({ row: privileges.get(name.toLowerCase())!, depth: previousDepths[name] ?? null }));
    for (const { row } of targets) {
        await client.boundAction(
            "roles",
            roleId,
            "RemovePrivilegeRole",
            {
                Privilege: { "@odata.type": "Microsoft.Dynamics.CRM.privilege", privilegeid: row.privilegeid },
            },
            { idempotent: true },
        );
    }
    const readd = targets.filter((t) => t.depth !== null);
    if (readd.length > 0) {
        await client.boundAction(
            "roles",
            roleId,
            "AddPrivilegesRole",
            {
                Privileges: readd.map((t) => ({
                    Depth: t.depth,
                    PrivilegeId: t.row.privilegeid,
                    BusinessUnitId: businessUnitId,
                    PrivilegeName: t.row.name,
                })),
            },
            { idempotent: true },
        );
    }
}

/**
 * Raises what is missing, records what each privilege was before, and puts back what a dropped grant changed.
 * Never lowers a deeper grant someone else made.
 */
async function apply(inputs: RolePrivilegesInputs, olds?: RolePrivilegesOutputs): Promise<RolePrivilegesOutputs> {
    const client = sharedClient(inputs.instanceUrl);
    const businessUnitId = await rootBusinessUnitId(client);
    // Inherited copies in child business units follow the root copy.
    const role = await findRole(client, inputs.roleName, businessUnitId);
    const dropped = (olds?.privileges ?? []).filter((o) => !inputs.privileges.some((n) => n.name.toLowerCase() === o.name.toLowerCase()));
    const privileges = await lookUpPrivileges(client, [...inputs.privileges, ...dropped]);
    const held = await readDepths(client, role.roleid);
    const sameRole = olds?.roleId === role.roleid;

    const previousDepths: DepthsByName = {};
    const current = depthsOf(
        inputs.privileges.map((g) => g.name),
        privileges,
        held,
    );
    for (const grant of inputs.privileges) {
        previousDepths[grant.name] = sameRole && grant.name in olds.previousDepths ? olds.previousDepths[grant.name] : current[grant.name];
    }
    const missing = inputs.privileges.filter((g) => rank(current[g.name]) < rank(g.depth));
    if (missing.length > 0) {
        await client.boundAction(
            "roles",
            role.roleid,
            "AddPrivilegesRole",
            {
                Privileges: missing.map((g) => {
                    const row = privileges.get(g.name.toLowerCase())!;
                    return { Depth: g.depth, PrivilegeId: row.privilegeid, BusinessUnitId: businessUnitId, PrivilegeName: row.name };
                }),
            },
            { idempotent: true },
        );
    }
    if (sameRole && dropped.length > 0) {
        await restore(
            client,
            role.roleid,
            businessUnitId,
            dropped.map((d) => d.name),
            olds.previousDepths,
            privileges,
            held,
        );
    }

    const after = depthsOf(
        inputs.privileges.map((g) => g.name),
        privileges,
        await readDepths(client, role.roleid),
    );
    const short = inputs.privileges.filter((g) => rank(after[g.name]) < rank(g.depth));
    if (short.length > 0) {
        // AddPrivilegesRole's behaviour on an existing privilege is undocumented: fail loudly if it did not raise it.
        throw new Error(
            `Dataverse did not apply ${short.map((g) => `${g.name} at ${g.depth} (now ${after[g.name] ?? "none"})`).join(", ")} to role "${inputs.roleName}".`,
        );
    }
    const warnings = warningCollector();
    privilegeWarnings(inputs, after).forEach(warnings.add);
    return { ...inputs, roleId: role.roleid, previousDepths, currentDepths: after, warnings: warnings.list };
}

export const rolePrivilegesProvider: pulumi.dynamic.ResourceProvider = {
    async check(_olds: RolePrivilegesInputs, news: RolePrivilegesInputs) {
        const failures: CheckFailure[] = [];
        validateField(failures, "instanceUrl", news.instanceUrl, mustBeInstanceUrl);
        validateField(failures, "roleName", news.roleName, mustNotBeEmpty);
        validateField(failures, "privileges", news.privileges, (v) => {
            if (!Array.isArray(v)) throw new Error("must be a list");
            v.forEach((g: PrivilegeGrant, i) => {
                if (isUnknown(g)) return;
                if (typeof g?.name !== "string" || !/^prv\w+$/.test(g.name))
                    throw new Error(`[${i}].name must be a privilege name such as prvReadAsyncOperation`);
                if (!PRIVILEGE_DEPTHS.includes(g.depth)) throw new Error(`[${i}].depth must be one of ${PRIVILEGE_DEPTHS.join(", ")}`);
            });
        });
        return { inputs: news, failures };
    },

    async diff(_id: string, olds: RolePrivilegesOutputs, news: RolePrivilegesInputs) {
        const replaces = knownChanges(olds, news, REPLACING_KEYS);
        const drifted = Array.isArray(news.privileges) && news.privileges.some((g) => rank(olds.currentDepths?.[g.name]) < rank(g.depth));
        const changed =
            JSON.stringify(olds.privileges) !== JSON.stringify(news.privileges) || olds.solutionVersion !== news.solutionVersion;
        return {
            changes: replaces.length > 0 || anyUnknown(news, REPLACING_KEYS) || drifted || changed || providerChanged(olds, news),
            replaces,
        };
    },

    async create(inputs: RolePrivilegesInputs) {
        const outs = await apply(inputs);
        return { id: outs.roleId, outs };
    },

    async read(id: string, props: RolePrivilegesOutputs) {
        const client = sharedClient(props.instanceUrl);
        try {
            const privileges = await lookUpPrivileges(client, props.privileges);
            const currentDepths = depthsOf(
                props.privileges.map((g) => g.name),
                privileges,
                await readDepths(client, props.roleId),
            );
            return { id, props: { ...props, currentDepths, warnings: privilegeWarnings(props, currentDepths) } };
        } catch (err) {
            // The role went with its solution: nothing of ours is left.
            if (isNotFound(err)) return { id: "", props: {} };
            throw err;
        }
    },

    async update(_id: string, olds: RolePrivilegesOutputs, news: RolePrivilegesInputs) {
        return { outs: await apply(news, olds) };
    },

    async delete(_id: string, props: RolePrivilegesOutputs) {
        const client = sharedClient(props.instanceUrl);
        try {
            const privileges = await lookUpPrivileges(client, props.privileges);
            const held = await readDepths(client, props.roleId);
            const businessUnitId = await rootBusinessUnitId(client);
            await restore(
                client,
                props.roleId,
                businessUnitId,
                props.privileges.map((g) => g.name),
                props.previousDepths,
                privileges,
                held,
            );
        } catch (err) {
            if (!isNotFound(err)) throw err;
        }
    },
};

/** Arguments of {@link RolePrivileges}. */
export interface RolePrivilegesArgs {
    /** The Dynamics 365 instance, `https://<org>.crm<N>.dynamics.com`. */
    readonly instanceUrl: pulumi.Input<string>;
    /** The security role to edit (its root business unit copy). */
    readonly roleName: pulumi.Input<string>;
    /** Privileges the role must hold, each at least at its depth. */
    readonly privileges: pulumi.Input<PrivilegeGrant[]>;
    /** Version of the solution that owns the role; a change re-applies the privileges after an import. */
    readonly solutionVersion: pulumi.Input<string>;
}

/** The guide's step 4b: the extra privileges the Lead Writer role needs. */
export class RolePrivileges extends pulumi.dynamic.Resource {
    declare readonly roleId: pulumi.Output<string>;
    declare readonly previousDepths: pulumi.Output<DepthsByName>;
    declare readonly currentDepths: pulumi.Output<DepthsByName>;
    /** What the user must act on, such as grants beyond the guide's; gathered into the stack's `warnings`. */
    declare readonly warnings: pulumi.Output<string[]>;

    constructor(name: string, args: RolePrivilegesArgs, opts?: pulumi.CustomResourceOptions) {
        super(
            rolePrivilegesProvider,
            name,
            {
                roleId: undefined,
                previousDepths: undefined,
                currentDepths: undefined,
                warnings: undefined,
                ...args,
                providerVersion: PROVIDER_VERSION,
            },
            opts,
            "dataverse",
            "RolePrivileges",
        );
    }
}
