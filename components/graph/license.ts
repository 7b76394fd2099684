import * as pulumi from "@pulumi/pulumi";
import { sleep } from "../http/requestCore";
import { CheckFailure, mustBeGuid, progress, providerChanged, validateField, Versioned } from "../dataverse/common";
import { PROVIDER_VERSION } from "../dataverse/providerVersion";
import { GraphClient, GraphError, sharedGraphClient } from "./client";

/**
 * A licence assigned to a directory user, by SKU part number. The azuread provider has no licence resource, so this
 * is a dynamic provider over Microsoft Graph: `GET subscribedSkus` finds the SKU, `POST users/{id}/assignLicense`
 * adds and removes it.
 */

export interface UserLicenseInputs extends Versioned {
    /** Object id of the directory user. */
    userId: string;
    /** Sign-in name of the user, for messages. */
    userPrincipalName: string;
    /** SKU part number, e.g. `DYN365_ENTERPRISE_SALES`. */
    skuPartNumber: string;
}

export interface UserLicenseOutputs extends UserLicenseInputs {
    /** The SKU's id in this tenant. */
    skuId: string;
    /** False when a refresh found the licence removed: the next `pulumi up` assigns it again. */
    assigned: boolean;
}

interface SubscribedSku {
    skuId: string;
    skuPartNumber: string;
    appliesTo?: string;
    capabilityStatus?: string;
    consumedUnits: number;
    prepaidUnits: { enabled: number };
}

interface DirectoryUser {
    id: string;
    userPrincipalName?: string;
    usageLocation?: string | null;
    assignedLicenses: { skuId: string }[];
}

/** How long to wait for a new user to become visible to Graph (directory replication). */
const USER_WAIT = { attempts: 6, firstDelayMs: 2_000, maxDelayMs: 30_000 };

const isGraphNotFound = (err: unknown) => err instanceof GraphError && err.status === 404;

/** The tenant's SKU with this part number; a clear error listing what the tenant has when there is none. */
async function findSku(graph: GraphClient, skuPartNumber: string): Promise<SubscribedSku> {
    const skus = await graph.list<SubscribedSku>("subscribedSkus", {
        $select: "skuId,skuPartNumber,appliesTo,capabilityStatus,consumedUnits,prepaidUnits",
    });
    const sku = skus.find((s) => s.skuPartNumber.toLowerCase() === skuPartNumber.toLowerCase());
    if (!sku) {
        const available = skus.map((s) => s.skuPartNumber).sort();
        throw new Error(
            `The tenant has no subscription with SKU part number "${skuPartNumber}" (config serviceAccountLicenseSku). Subscribed SKUs: ${available.length > 0 ? available.join(", ") : "none"}.`,
        );
    }
    return sku;
}

/** The user with its licences, or undefined when Graph does not know it. */
async function readUser(graph: GraphClient, userId: string): Promise<DirectoryUser | undefined> {
    try {
        return await graph.get<DirectoryUser>(`users/${encodeURIComponent(userId)}`, {
            $select: "id,userPrincipalName,usageLocation,assignedLicenses",
        });
    } catch (err) {
        if (isGraphNotFound(err)) return undefined;
        throw err;
    }
}

/** Reads a user that was created moments ago, waiting (bounded) for directory replication. */
async function waitForUser(graph: GraphClient, inputs: UserLicenseInputs): Promise<DirectoryUser> {
    let delay = USER_WAIT.firstDelayMs;
    for (let attempt = 1; ; attempt++) {
        const user = await readUser(graph, inputs.userId);
        if (user) return user;
        if (attempt >= USER_WAIT.attempts) {
            throw new Error(`Microsoft Graph does not know user ${inputs.userPrincipalName} (${inputs.userId}) after ${attempt} attempts.`);
        }
        progress(
            `Waiting ${Math.round(delay / 1000)} s for user ${inputs.userPrincipalName} to appear in Microsoft Graph (attempt ${attempt} of ${USER_WAIT.attempts}).`,
        );
        await sleep(delay);
        delay = Math.min(delay * 2, USER_WAIT.maxDelayMs);
    }
}

const hasSku = (user: DirectoryUser, skuId: string) => user.assignedLicenses.some((l) => l.skuId.toLowerCase() === skuId.toLowerCase());

/** Assigns the licence unless the user already holds it (adopted, no write). */
async function ensureLicense(inputs: UserLicenseInputs): Promise<UserLicenseOutputs> {
    const graph = sharedGraphClient();
    const sku = await findSku(graph, inputs.skuPartNumber);
    const user = await waitForUser(graph, inputs);
    const outs = { ...inputs, skuId: sku.skuId, assigned: true };
    if (hasSku(user, sku.skuId)) return outs;

    const free = sku.prepaidUnits.enabled - sku.consumedUnits;
    if (free <= 0) {
        throw new Error(
            `No free seat of ${sku.skuPartNumber} for ${inputs.userPrincipalName}: ${sku.prepaidUnits.enabled} enabled, ${sku.consumedUnits} assigned. Buy a licence or free one in the Microsoft 365 admin center, then run 'pulumi up' again.`,
        );
    }
    if (!user.usageLocation) {
        throw new Error(
            `User ${inputs.userPrincipalName} has no usage location, without which Microsoft 365 assigns no licence; set serviceAccountUsageLocation.`,
        );
    }
    try {
        await graph.request("POST", `users/${encodeURIComponent(inputs.userId)}/assignLicense`, {
            body: { addLicenses: [{ skuId: sku.skuId, disabledPlans: [] }], removeLicenses: [] },
            // Assigning a licence the user holds changes nothing: a replay after a lost answer is harmless.
            idempotent: true,
        });
    } catch (err) {
        // Another assignment may have taken the last seat between the count above and this call.
        if (err instanceof GraphError && /available licenses/i.test(err.message)) {
            throw new Error(
                `No free seat of ${sku.skuPartNumber} for ${inputs.userPrincipalName} (${err.message}). Buy a licence or free one, then run 'pulumi up' again.`,
                { cause: err },
            );
        }
        throw err;
    }
    progress(`Assigned a ${sku.skuPartNumber} licence to ${inputs.userPrincipalName}.`);
    return outs;
}

export const userLicenseProvider: pulumi.dynamic.ResourceProvider = {
    async check(_olds: UserLicenseInputs, news: UserLicenseInputs) {
        const failures: CheckFailure[] = [];
        validateField(failures, "userId", news.userId, mustBeGuid);
        validateField(failures, "skuPartNumber", news.skuPartNumber, (v) => {
            if (typeof v !== "string" || !/^[A-Za-z0-9_]+$/.test(v)) {
                throw new Error(`"${String(v)}" is not a SKU part number such as DYN365_ENTERPRISE_SALES`);
            }
        });
        return { inputs: news, failures };
    },

    async diff(_id: string, olds: UserLicenseOutputs, news: UserLicenseInputs) {
        const replaces = (["userId", "skuPartNumber"] as const).filter(
            (k) => (olds[k] ?? "").toLowerCase() !== (news[k] ?? "").toLowerCase(),
        );
        // A licence someone removed is drift: the update assigns it again.
        return { changes: replaces.length > 0 || olds.assigned === false || providerChanged(olds, news), replaces };
    },

    async create(inputs: UserLicenseInputs) {
        const outs = await ensureLicense(inputs);
        return { id: `${outs.userId}/${outs.skuId}`, outs };
    },

    async read(id: string, props: UserLicenseOutputs) {
        const user = await readUser(sharedGraphClient(), props.userId);
        if (!user) return { id: "", props: {} };
        return { id, props: { ...props, assigned: hasSku(user, props.skuId) } };
    },

    async update(_id: string, _olds: UserLicenseOutputs, news: UserLicenseInputs) {
        return { outs: await ensureLicense(news) };
    },

    async delete(_id: string, props: UserLicenseOutputs) {
        const graph = sharedGraphClient();
        const user = await readUser(graph, props.userId);
        if (!user || !hasSku(user, props.skuId)) return;
        try {
            await graph.request("POST", `users/${encodeURIComponent(props.userId)}/assignLicense`, {
                body: { addLicenses: [], removeLicenses: [props.skuId] },
                idempotent: true,
            });
        } catch (err) {
            if (!isGraphNotFound(err)) throw err;
        }
    },
};

/** Arguments of {@link UserLicense}. */
export interface UserLicenseArgs {
    /** Object id of the directory user that gets the licence. */
    readonly userId: pulumi.Input<string>;
    /** The user's sign-in name, for progress and error messages. */
    readonly userPrincipalName: pulumi.Input<string>;
    /** SKU part number of the licence, found among the tenant's subscribed SKUs. */
    readonly skuPartNumber: pulumi.Input<string>;
}

/** A licence assigned to a directory user through Microsoft Graph; removed on destroy. */
export class UserLicense extends pulumi.dynamic.Resource {
    declare readonly skuId: pulumi.Output<string>;
    declare readonly assigned: pulumi.Output<boolean>;

    constructor(name: string, args: UserLicenseArgs, opts?: pulumi.CustomResourceOptions) {
        super(
            userLicenseProvider,
            name,
            { skuId: undefined, assigned: undefined, ...args, providerVersion: PROVIDER_VERSION },
            opts,
            "graph",
            "UserLicense",
        );
    }
}
