import * as pulumi from "@pulumi/pulumi";
import { odataGuid, sharedClient, sleep } from "./client";
import {
    CheckFailure,
    describeDelay,
    isNotFound,
    mustBeGuid,
    mustBeInstanceUrl,
    progress,
    providerChanged,
    validateField,
    Versioned,
} from "./common";
import { PROVIDER_VERSION } from "./providerVersion";

/**
 * The Dataverse user of a licensed directory user. Dataverse creates it itself when it synchronises the licensed
 * user (minutes, sometimes longer); this resource waits for that row with a bounded, visible retry. It never calls
 * the admin API's `addAppUser`, which would make the user a System Administrator.
 */

export interface SyncedUserInputs extends Versioned {
    instanceUrl: string;
    /** Object id of the directory user (`azureactivedirectoryobjectid` of its `systemuser`). */
    objectId: string;
    /** Sign-in name, for progress and error messages. */
    userPrincipalName: string;
    /** The licence the synchronisation waits for; a new licence means waiting again. */
    licenseSkuId: string;
}

export interface SyncedUserOutputs extends SyncedUserInputs {
    systemUserId: string;
    businessUnitId: string;
    /** True when a refresh found the user disabled (its licence removed, say): the next `pulumi up` waits again. */
    isDisabled: boolean;
}

interface SystemUserRow {
    systemuserid: string;
    isdisabled: boolean;
    _businessunitid_value: string;
}

const COLUMNS = "systemuserid,isdisabled,_businessunitid_value";

/** Polls for about 12 minutes in all: Dataverse's background synchronisation of a newly licensed user is not instant. */
const SYNC_WAIT = { attempts: 12, firstDelayMs: 2_000, maxDelayMs: 120_000 };

async function findUser(inputs: SyncedUserInputs): Promise<SystemUserRow | undefined> {
    const rows = await sharedClient(inputs.instanceUrl).list<SystemUserRow>("systemusers", {
        $select: COLUMNS,
        $filter: `azureactivedirectoryobjectid eq ${odataGuid(inputs.objectId)}`,
    });
    return rows[0];
}

async function waitForSync(inputs: SyncedUserInputs): Promise<SyncedUserOutputs> {
    for (let attempt = 1; ; attempt++) {
        const row = await findUser(inputs);
        if (row && !row.isdisabled) {
            return { ...inputs, systemUserId: row.systemuserid, businessUnitId: row._businessunitid_value, isDisabled: false };
        }
        const state = row ? "is still disabled" : "is not there yet";
        if (attempt >= SYNC_WAIT.attempts) {
            throw new Error(
                `Dataverse has not synchronised ${inputs.userPrincipalName} (object id ${inputs.objectId}) after ${attempt} attempts: its user ${state}. Check that the licence includes Dynamics 365 and that the user is a member of the environment's security group, if it has one; then run 'pulumi up' again.`,
            );
        }
        const delay = sharedClient(inputs.instanceUrl).propagationDelay(attempt, SYNC_WAIT);
        progress(
            `Waiting ${describeDelay(delay)} for Dataverse to synchronise ${inputs.userPrincipalName}: its user ${state} (attempt ${attempt} of ${SYNC_WAIT.attempts}).`,
        );
        await sleep(delay);
    }
}

export const syncedUserProvider: pulumi.dynamic.ResourceProvider = {
    async check(_olds: SyncedUserInputs, news: SyncedUserInputs) {
        const failures: CheckFailure[] = [];
        validateField(failures, "instanceUrl", news.instanceUrl, mustBeInstanceUrl);
        validateField(failures, "objectId", news.objectId, mustBeGuid);
        validateField(failures, "licenseSkuId", news.licenseSkuId, mustBeGuid);
        return { inputs: news, failures };
    },

    async diff(_id: string, olds: SyncedUserOutputs, news: SyncedUserInputs) {
        const replaces = (["instanceUrl", "objectId"] as const).filter((k) => olds[k].toLowerCase() !== news[k].toLowerCase());
        const changes =
            replaces.length > 0 ||
            olds.isDisabled ||
            olds.licenseSkuId !== news.licenseSkuId ||
            olds.userPrincipalName !== news.userPrincipalName;
        return { changes: changes || providerChanged(olds, news), replaces };
    },

    async create(inputs: SyncedUserInputs) {
        const outs = await waitForSync(inputs);
        return { id: outs.systemUserId, outs };
    },

    async read(id: string, props: SyncedUserOutputs) {
        try {
            const row = await sharedClient(props.instanceUrl).get<SystemUserRow>(`systemusers(${odataGuid(id)})`, { $select: COLUMNS });
            return { id, props: { ...props, isDisabled: row.isdisabled, businessUnitId: row._businessunitid_value } };
        } catch (err) {
            if (isNotFound(err)) return { id: "", props: {} };
            throw err;
        }
    },

    async update(_id: string, _olds: SyncedUserOutputs, news: SyncedUserInputs) {
        return { outs: await waitForSync(news) };
    },

    // Dataverse never deletes a synchronised user: it disables it once the licence is gone or the directory user is
    // deleted, which the licence and the directory user do on their own destroy. Nothing is left to undo here.
    async delete() {
        return;
    },
};

/** Arguments of {@link SyncedUser}. */
export interface SyncedUserArgs {
    /** The Dynamics 365 instance, `https://<org>.crm<N>.dynamics.com`. */
    readonly instanceUrl: pulumi.Input<string>;
    /** Object id of the licensed directory user. */
    readonly objectId: pulumi.Input<string>;
    /** The user's sign-in name, for progress and error messages. */
    readonly userPrincipalName: pulumi.Input<string>;
    /** Id of the licence's SKU; the wait starts once it is assigned. */
    readonly licenseSkuId: pulumi.Input<string>;
}

/** The Office 365 path's Dataverse user: the `systemuser` Dataverse makes for the licensed service account. */
export class SyncedUser extends pulumi.dynamic.Resource {
    declare readonly systemUserId: pulumi.Output<string>;
    declare readonly businessUnitId: pulumi.Output<string>;
    declare readonly isDisabled: pulumi.Output<boolean>;

    constructor(name: string, args: SyncedUserArgs, opts?: pulumi.CustomResourceOptions) {
        super(
            syncedUserProvider,
            name,
            { systemUserId: undefined, businessUnitId: undefined, isDisabled: undefined, ...args, providerVersion: PROVIDER_VERSION },
            opts,
            "dataverse",
            "SyncedUser",
        );
    }
}
