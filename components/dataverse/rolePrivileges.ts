import * as pulumi from "@pulumi/pulumi";
import { GUIDE_ROLE_PRIVILEGES, PrivilegeDepth, PrivilegeGrant, PRIVILEGE_DEPTHS } from "../guide";
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
import { findRootRole, rootBusinessUnitId } from "./roles";

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
    /** The root business unit the role belongs to; restoring a depth names it. */
    businessUnitId: string;
    /** Id of each managed privilege, kept so that refresh and destroy need not look them up again. */
    privilegeIds: Record<string, string>;
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

/** Privilege id by the name the configuration gives it. */
type PrivilegeIds = Record<string, string>;

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

/** Privilege ids by name, refusing names that do not exist and depths they cannot take before any write. */
async function lookUpPrivileges(client: DataverseClient, grants: PrivilegeGrant[]): Promise<PrivilegeIds> {
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
    return Object.fromEntries(grants.map((g) => [g.name, byName.get(g.name.toLowerCase())!.privilegeid]));
}

/** The ids stored in state when they cover every name; older state did not keep them. */
function storedIds(props: Partial<RolePrivilegesOutputs>, names: string[]): PrivilegeIds | undefined {
    const ids = props.privilegeIds;
    return ids && names.every((name) => typeof ids[name] === "string") ? ids : undefined;
}

async function readDepths(client: DataverseClient, roleId: string): Promise<Map<string, RolePrivilege>> {
    const result = await client.callFunction<{ RolePrivileges: RolePrivilege[] }>("RetrieveRolePrivilegesRole", {
        RoleId: odataGuid(roleId),
    });
    return new Map(result.RolePrivileges.map((p) => [p.PrivilegeId.toLowerCase(), p]));
}

function depthsOf(names: string[], ids: PrivilegeIds, held: Map<string, RolePrivilege>): DepthsByName {
    return Object.fromEntries(names.map((name) => [name, held.get(ids[name]?.toLowerCase() ?? "")?.Depth ?? null]));
}

/** Waits for every write of a batch before reporting the first failure, so none is left running unseen. */
async function settleAll(writes: Promise<unknown>[]): Promise<void> {
    const results = await Promise.allSettled(writes);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed) throw failed.reason;
}

function addPrivileges(
    client: DataverseClient,
    roleId: string,
    businessUnitId: string,
    grants: { name: string; privilegeid: string; depth: PrivilegeDepth }[],
): Promise<unknown> {
    return client.boundAction(
        "roles",
        roleId,
        "AddPrivilegesRole",
        {
            Privileges: grants.map((g) => ({
                Depth: g.depth,
                PrivilegeId: g.privilegeid,
                BusinessUnitId: businessUnitId,
                PrivilegeName: g.name,
            })),
        },
        { idempotent: true },
    );
}

/**
 * Puts back the recorded depth of each named privilege that is now deeper than it was: removes it, or lowers it by
 * removing and adding it again. Privileges at or below their recorded depth are left alone. The removals do not
 * depend on each other and go out together; the re-adds follow in one call.
 */
async function restore(
    client: DataverseClient,
    roleId: string,
    businessUnitId: string,
    names: string[],
    previousDepths: DepthsByName,
    ids: PrivilegeIds,
    held: Map<string, RolePrivilege>,
): Promise<void> {
    const now = depthsOf(names, ids, held);
    const targets = names
        .filter((name) => rank(previousDepths[name]) < rank(now[name]))
        .map((name) => ({ name, privilegeid: ids[name], depth: previousDepths[name] ?? null }));
    await settleAll(
        targets.map((t) =>
            client.boundAction(
                "roles",
                roleId,
                "RemovePrivilegeRole",
                { Privilege: { "@odata.type": "Microsoft.Dynamics.CRM.privilege", privilegeid: t.privilegeid } },
                { idempotent: true },
            ),
        ),
    );
    const readd = targets.flatMap((t) => (t.depth === null ? [] : [{ ...t, depth: t.depth }]));
    if (readd.length > 0) {
        await addPrivileges(client, roleId, businessUnitId, readd);
    }
}

/**
 * Raises what is missing, records what each privilege was before, and puts back what a dropped grant changed.
 * Never lowers a deeper grant someone else made.
 */
async function apply(inputs: RolePrivilegesInputs, olds?: RolePrivilegesOutputs): Promise<RolePrivilegesOutputs> {
    const client = sharedClient(inputs.instanceUrl);
    const dropped = (olds?.privileges ?? []).filter((o) => !inputs.privileges.some((n) => n.name.toLowerCase() === o.name.toLowerCase()));
    // Privileges are edited on the root business unit's copy; the copies in child units follow it. The role and
    // the privilege rows do not depend on each other, so they are looked up together.
    const [{ businessUnitId, role }, ids] = await Promise.all([
        findRootRole(client, inputs.roleName),
        lookUpPrivileges(client, [...inputs.privileges, ...dropped]),
    ]);
    const held = await readDepths(client, role.roleid);
    const sameRole = olds?.roleId === role.roleid;
    const names = inputs.privileges.map((g) => g.name);

    const previousDepths: DepthsByName = {};
    const current = depthsOf(names, ids, held);
    for (const grant of inputs.privileges) {
        previousDepths[grant.name] = sameRole && grant.name in olds.previousDepths ? olds.previousDepths[grant.name] : current[grant.name];
    }
    const missing = inputs.privileges.filter((g) => rank(current[g.name]) < rank(g.depth));
    // Raising and restoring touch different privileges: both go out at once.
    await settleAll([
        missing.length > 0
            ? addPrivileges(
                  client,
                  role.roleid,
                  businessUnitId,
                  missing.map((g) => ({ name: g.name, privilegeid: ids[g.name], depth: g.depth })),
              )
            : Promise.resolve(),
        sameRole && dropped.length > 0
            ? restore(
                  client,
                  role.roleid,
                  businessUnitId,
                  dropped.map((d) => d.name),
                  olds.previousDepths,
                  ids,
                  held,
              )
            : Promise.resolve(),
    ]);

    // Adding a privilege the role lacks is what AddPrivilegesRole is documented to do. What it does to one the
    // role already holds is not: when a raise relied on that, read again and fail loudly if it did not happen.
    const raisedHeld = missing.some((g) => current[g.name] !== null);
    const after = raisedHeld
        ? depthsOf(names, ids, await readDepths(client, role.roleid))
        : { ...current, ...Object.fromEntries(missing.map((g) => [g.name, g.depth])) };
    const short = inputs.privileges.filter((g) => rank(after[g.name]) < rank(g.depth));
    if (short.length > 0) {
        throw new Error(
            `Dataverse did not apply ${short.map((g) => `${g.name} at ${g.depth} (now ${after[g.name] ?? "none"})`).join(", ")} to role "${inputs.roleName}".`,
        );
    }
    const warnings = warningCollector();
    privilegeWarnings(inputs, after).forEach(warnings.add);
    return {
        ...inputs,
        roleId: role.roleid,
        businessUnitId,
        privilegeIds: Object.fromEntries(names.map((name) => [name, ids[name]])),
        previousDepths,
        currentDepths: after,
        warnings: warnings.list,
    };
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
        const names = props.privileges.map((g) => g.name);
        try {
            // With the ids from state this is one request; older state looks them up alongside.
            const [ids, held] = await Promise.all([
                storedIds(props, names) ?? lookUpPrivileges(client, props.privileges),
                readDepths(client, props.roleId),
            ]);
            const privilegeIds = Object.fromEntries(names.map((name) => [name, ids[name]]));
            const currentDepths = depthsOf(names, ids, held);
            return { id, props: { ...props, privilegeIds, currentDepths, warnings: privilegeWarnings(props, currentDepths) } };
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
        const names = props.privileges.map((g) => g.name);
        try {
            // Older state kept neither the ids nor the business unit: look them up alongside the depths.
            const [ids, held, businessUnitId] = await Promise.all([
                storedIds(props, names) ?? lookUpPrivileges(client, props.privileges),
                readDepths(client, props.roleId),
                props.businessUnitId || rootBusinessUnitId(client),
            ]);
            await restore(client, props.roleId, businessUnitId, names, props.previousDepths, ids, held);
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
    declare readonly businessUnitId: pulumi.Output<string>;
    declare readonly privilegeIds: pulumi.Output<Record<string, string>>;
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
                businessUnitId: undefined,
                privilegeIds: undefined,
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
