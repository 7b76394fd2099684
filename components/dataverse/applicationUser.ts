import * as pulumi from "@pulumi/pulumi";
import { sharedClient, DataverseClient, DataverseError, ErrorCodes, odataGuid, sleep } from "./client";
import {
    anyUnknown,
    CheckFailure,
    describeDelay,
    ignoreNotFound,
    isNotFound,
    knownChanges,
    mustBeGuid,
    mustBeInstanceUrl,
    progress,
    validateField,
    warn,
    providerChanged,
    Versioned,
    Warned,
    warningCollector,
} from "./common";
import { PROVIDER_VERSION } from "./providerVersion";
import { rootBusinessUnitId } from "./roles";

export interface ApplicationUserInputs extends Versioned {
    instanceUrl: string;
    /** The Entra application (client) id the user is bound to. */
    applicationId: string;
    /** Business unit of the user; empty for the root business unit. */
    businessUnitId?: string;
}

export interface ApplicationUserOutputs extends ApplicationUserInputs, Warned {
    systemUserId: string;
    /** The business unit the user is in (the root one when none was given). */
    resolvedBusinessUnitId: string;
    isDisabled: boolean;
}

interface SystemUserRow {
    systemuserid: string;
    applicationid: string;
    isdisabled: boolean;
    deletedstate?: number | null;
    _businessunitid_value: string;
}

const USER_COLUMNS = "systemuserid,applicationid,isdisabled,deletedstate,_businessunitid_value";

/** How long to wait for a new service principal to become visible to Dataverse (about four minutes in all). */
const SERVICE_PRINCIPAL_WAIT = { attempts: 8, firstDelayMs: 5_000, maxDelayMs: 60_000 };

/** Tries of the permanent delete while it meets "owns records": the user's own settings row can still be settling. */
const PURGE_ATTEMPTS = 4;

const REPLACING_KEYS = ["instanceUrl", "applicationId", "businessUnitId"] as const;

async function usersFor(client: DataverseClient, applicationId: string): Promise<SystemUserRow[]> {
    return client.list<SystemUserRow>("systemusers", {
        $select: USER_COLUMNS,
        $filter: `applicationid eq ${odataGuid(applicationId)}`,
    });
}

const isSoftDeleted = (row: SystemUserRow) => (row.deletedstate ?? 0) !== 0;

/** Removes a soft-deleted leftover for good, so that a new user for the same app can be created. */
async function purge(client: DataverseClient, row: SystemUserRow): Promise<void> {
    progress(`Removing the deleted application user ${row.systemuserid} left over for app ${row.applicationid}.`);
    try {
        await ignoreNotFound(client.remove("systemusers", row.systemuserid));
    } catch (err) {
        throw new Error(
            `A deleted application user (${row.systemuserid}) for app ${row.applicationid} still exists and could not be removed: ${(err as Error).message}. Reassign the records it owns, or restore it in the Power Platform admin center, then run 'pulumi up' again.`,
            { cause: err },
        );
    }
}

/** Creates the user, waiting (bounded) for the app's service principal to reach Dataverse. */
async function createUser(client: DataverseClient, applicationId: string, businessUnitId: string): Promise<void> {
    for (let attempt = 1; ; attempt++) {
        try {
            await client.create("systemusers", {
                applicationid: applicationId,
                accessmode: 4, // non-interactive
                "businessunitid@odata.bind": `/businessunits(${odataGuid(businessUnitId)})`,
            });
            return;
        } catch (err) {
            const missingApp = err instanceof DataverseError && err.hasCode(ErrorCodes.azureApplicationIdNotFound);
            if (!missingApp || attempt >= SERVICE_PRINCIPAL_WAIT.attempts) {
                if (missingApp) {
                    throw new Error(
                        `Dataverse still does not see the service principal of app ${applicationId} after ${attempt} attempts. Check that it exists in the instance's tenant, then run 'pulumi up' again. (${(err as Error).message})`,
                        { cause: err },
                    );
                }
                throw err;
            }
            const delay = client.propagationDelay(attempt, SERVICE_PRINCIPAL_WAIT);
            progress(
                `Waiting ${describeDelay(delay)} for the service principal of app ${applicationId} to reach Dataverse (attempt ${attempt} of ${SERVICE_PRINCIPAL_WAIT.attempts}).`,
            );
            await sleep(delay);
        }
    }
}

/**
 * Adopt-or-create keyed on the application id: an active user is adopted (and re-enabled), a soft-deleted
 * leftover is purged, and a create whose answer was lost or that lost a race is settled by reading again.
 */
async function ensureUser(inputs: ApplicationUserInputs): Promise<ApplicationUserOutputs> {
    const client = sharedClient(inputs.instanceUrl);
    const warnings = warningCollector();
    // The business unit and the first look for the user do not depend on each other: one round trip for both.
    const [businessUnitId, firstRows] = await Promise.all([
        inputs.businessUnitId || rootBusinessUnitId(client),
        usersFor(client, inputs.applicationId),
    ]);
    for (let round = 1; ; round++) {
        const rows = round === 1 ? firstRows : await usersFor(client, inputs.applicationId);
        const active = rows.find((r) => !isSoftDeleted(r));
        if (active) {
            if (active._businessunitid_value.toLowerCase() !== businessUnitId.toLowerCase()) {
                throw new Error(
                    `The application user for app ${inputs.applicationId} already exists in business unit ${active._businessunitid_value}, not ${businessUnitId}. Move it in the Power Platform admin center or set businessUnitId to ${active._businessunitid_value}.`,
                );
            }
            if (active.isdisabled) {
                await client.update("systemusers", active.systemuserid, { isdisabled: false });
                warnings.add(
                    `Application user ${active.systemuserid} for app ${inputs.applicationId} was disabled in Dataverse and has been enabled again. If someone disabled it on purpose (to stop the lead service), remove this stack's lead management instead.`,
                );
            }
            return {
                ...inputs,
                systemUserId: active.systemuserid,
                resolvedBusinessUnitId: businessUnitId,
                isDisabled: false,
                warnings: warnings.list,
            };
        }
        if (round > 3) {
            throw new Error(
                `Could not create the application user for app ${inputs.applicationId}: Dataverse neither accepts it nor lists it.`,
            );
        }
        for (const leftover of rows.filter(isSoftDeleted)) {
            await purge(client, leftover);
        }
        try {
            await createUser(client, inputs.applicationId, businessUnitId);
        } catch (err) {
            const settledByReading = err instanceof DataverseError && (err.ambiguous || err.hasCode(ErrorCodes.duplicateApplicationUser));
            if (!settledByReading) throw err;
        }
    }
}

export const applicationUserProvider: pulumi.dynamic.ResourceProvider = {
    async check(_olds: ApplicationUserInputs, news: ApplicationUserInputs) {
        const failures: CheckFailure[] = [];
        validateField(failures, "instanceUrl", news.instanceUrl, mustBeInstanceUrl);
        validateField(failures, "applicationId", news.applicationId, mustBeGuid);
        if (news.businessUnitId) {
            validateField(failures, "businessUnitId", news.businessUnitId, mustBeGuid);
        }
        return { inputs: news, failures };
    },

    async diff(_id: string, olds: ApplicationUserOutputs, news: ApplicationUserInputs) {
        // A value preview does not know yet is a change, never a replacement: the `up` may find it unchanged.
        const replaces = knownChanges(olds, news, REPLACING_KEYS, (a, b) => (a ?? "").toLowerCase() === (b ?? "").toLowerCase());
        // A user someone disabled is drift: the update enables it again.
        // Dataverse allows one user per app and instance: moving it to another business unit must delete first.
        const sameUser = olds.applicationId === news.applicationId && olds.instanceUrl === news.instanceUrl;
        return {
            changes: replaces.length > 0 || anyUnknown(news, REPLACING_KEYS) || olds.isDisabled || providerChanged(olds, news),
            replaces,
            deleteBeforeReplace: replaces.length > 0 && sameUser,
        };
    },

    async create(inputs: ApplicationUserInputs) {
        const outs = await ensureUser(inputs);
        return { id: outs.systemUserId, outs };
    },

    async read(id: string, props: ApplicationUserOutputs) {
        const client = sharedClient(props.instanceUrl);
        let row: SystemUserRow;
        try {
            row = await client.get<SystemUserRow>(`systemusers(${odataGuid(id)})`, { $select: USER_COLUMNS });
        } catch (err) {
            if (isNotFound(err)) return { id: "", props: {} };
            throw err;
        }
        if (isSoftDeleted(row)) {
            return { id: "", props: {} };
        }
        return {
            id,
            props: {
                ...props,
                isDisabled: row.isdisabled,
                resolvedBusinessUnitId: row._businessunitid_value,
                // Read states what is true now: a user disabled in Dataverse, which the next `pulumi up` enables.
                warnings: row.isdisabled
                    ? [
                          `Application user ${id} is disabled in Dataverse; the next 'pulumi up' enables it again unless you remove it from the stack.`,
                      ]
                    : [],
            },
        };
    },

    async update(_id: string, _olds: ApplicationUserOutputs, news: ApplicationUserInputs) {
        return { outs: await ensureUser(news) };
    },

    async delete(id: string, props: ApplicationUserOutputs) {
        const client = sharedClient(props.instanceUrl);
        // Only a disabled application user can be deleted. Disabling without reading first saves a round trip: a user
        // already gone answers 404, and one that a crashed destroy left soft-deleted is read and finished instead.
        try {
            await client.update("systemusers", id, { isdisabled: true });
        } catch (err) {
            if (isNotFound(err)) return;
            const row = await ignoreNotFound(client.get<SystemUserRow>(`systemusers(${odataGuid(id)})`, { $select: USER_COLUMNS }));
            if (!row) return;
            if (!isSoftDeleted(row)) throw err;
            return purgeOrKeep(client, id);
        }
        // The first DELETE soft-deletes (or, on a row already soft-deleted, removes it), the second removes it for good.
        try {
            if ((await ignoreNotFound(client.remove("systemusers", id).then(() => true))) === undefined) return;
        } catch (err) {
            if (!(err instanceof DataverseError && err.hasCode(ErrorCodes.userOwnsRecords))) throw err;
        }
        await purgeOrKeep(client, id);
    },
};

/**
 * The permanent delete. "Owns records" is retried a few times, since the user's own settings row can still be
 * settling (contract: Application user); when it stays, the user is left disabled and soft-deleted (it can do
 * nothing), and the warning names the records that keep it.
 */
async function purgeOrKeep(client: DataverseClient, id: string): Promise<void> {
    for (let attempt = 1; ; attempt++) {
        try {
            await ignoreNotFound(client.remove("systemusers", id));
            return;
        } catch (err) {
            if (!(err instanceof DataverseError && err.hasCode(ErrorCodes.userOwnsRecords))) throw err;
            if (attempt >= PURGE_ATTEMPTS) break;
            await sleep(client.backoffDelay(attempt));
        }
    }
    // Leads are what the lead service writes; one cheap query names a few of them.
    const leads = await client
        .list<{ leadid: string; subject?: string | null }>("leads", {
            $select: "leadid,subject",
            $filter: `_ownerid_value eq ${odataGuid(id)}`,
            $top: "5",
        })
        .catch(() => undefined);
    const owned =
        leads === undefined
            ? "records (they could not be listed)"
            : leads.length === 0
              ? "records other than leads"
              : `leads such as ${leads.map((l) => `${l.leadid}${l.subject ? ` ("${l.subject}")` : ""}`).join(", ")}`;
    warn(
        `Application user ${id} is disabled and deleted, but Dataverse keeps its record because it owns ${owned}. Reassign them to another user, then delete the user for good in the Power Platform admin center.`,
    );
}

/** Arguments of {@link ApplicationUser}. */
export interface ApplicationUserArgs {
    /** The Dynamics 365 instance, `https://<org>.crm<N>.dynamics.com`. */
    readonly instanceUrl: pulumi.Input<string>;
    /** Application (client) id of the app registration; its service principal must exist in the tenant. */
    readonly applicationId: pulumi.Input<string>;
    /** Business unit of the user; the root business unit when omitted. */
    readonly businessUnitId?: pulumi.Input<string>;
}

/** The guide's step 2b: a Dataverse application user bound to the app registration. */
export class ApplicationUser extends pulumi.dynamic.Resource {
    declare readonly systemUserId: pulumi.Output<string>;
    declare readonly resolvedBusinessUnitId: pulumi.Output<string>;
    declare readonly isDisabled: pulumi.Output<boolean>;
    /** What the user must act on, such as a user someone had disabled; gathered into the stack's `warnings`. */
    declare readonly warnings: pulumi.Output<string[]>;

    constructor(name: string, args: ApplicationUserArgs, opts?: pulumi.CustomResourceOptions) {
        super(
            applicationUserProvider,
            name,
            {
                systemUserId: undefined,
                resolvedBusinessUnitId: undefined,
                isDisabled: undefined,
                warnings: undefined,
                businessUnitId: "",
                ...args,
                providerVersion: PROVIDER_VERSION,
            },
            opts,
            "dataverse",
            "ApplicationUser",
        );
    }
}
