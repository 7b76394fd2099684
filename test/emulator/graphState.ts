/**
 * The directory side of the emulator (Microsoft Graph): users, the tenant's subscribed SKUs, and the Dataverse
 * synchronisations a licence change has started. Kept free of imports so `state.ts` can seed it.
 */

export interface DirectoryUserRow {
    id: string;
    userPrincipalName: string;
    displayName: string;
    /** Two-letter country code; Microsoft 365 assigns no licence without one. */
    usageLocation: string | null;
    accountEnabled: boolean;
    assignedLicenses: { skuId: string; disabledPlans: string[] }[];
}

export interface SubscribedSkuRow {
    skuId: string;
    skuPartNumber: string;
    /** Seats bought and active (`prepaidUnits.enabled`); `consumedUnits` is counted from the users holding the SKU. */
    enabled: number;
    /** Whether a licence of this SKU makes Dataverse synchronise the user (a Dynamics 365 licence does). */
    includesDataverse: boolean;
}

/** A synchronisation Dataverse carries out some requests after a licence was added or removed. */
export interface PendingSync {
    objectId: string;
    /** "licensed": the user's systemuser appears (or is enabled); "unlicensed": it is disabled. */
    outcome: "licensed" | "unlicensed";
    /** Requests still to pass before it applies. */
    requestsLeft: number;
}

export interface GraphState {
    users: DirectoryUserRow[];
    skus: SubscribedSkuRow[];
    pendingSyncs: PendingSync[];
    /** How many requests pass between a licence change and Dataverse's synchronisation of it (default 2). */
    syncDelayRequests: number;
}

export const DYNAMICS_SALES_SKU_ID = "1e1a282c-9c54-43a2-9310-98ef728faace";
export const OFFICE_E3_SKU_ID = "6fd2c87f-b296-42f0-b197-1e91e994b900";

export function createGraphState(): GraphState {
    return {
        users: [],
        skus: [
            { skuId: DYNAMICS_SALES_SKU_ID, skuPartNumber: "DYN365_ENTERPRISE_SALES", enabled: 2, includesDataverse: true },
            { skuId: OFFICE_E3_SKU_ID, skuPartNumber: "ENTERPRISEPACK", enabled: 5, includesDataverse: false },
        ],
        pendingSyncs: [],
        syncDelayRequests: 2,
    };
}
