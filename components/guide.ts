/**
 * What the Marketplace guide prescribes, in one module that does not load Pulumi: the instance URL's form, the Lead
 * Writer role's privileges and their depths, the solution package and the defaults the stack config starts from.
 * The stack config validates against it; the dynamic providers' serialized code, `npm run validate` and the tests
 * use it without the Pulumi runtime.
 */

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const DYNAMICS_HOST = /^[a-z0-9][a-z0-9-]*\.crm\d*\.dynamics\.com$/;

/** Dataverse privilege depth, by the names the Web API's `PrivilegeDepth` enum uses. */
export type PrivilegeDepth = "Basic" | "Local" | "Deep" | "Global";

export const PRIVILEGE_DEPTHS: readonly PrivilegeDepth[] = ["Basic", "Local", "Deep", "Global"];

/** One privilege the Lead Writer role must hold, at least at `depth`. */
export interface PrivilegeGrant {
    /** Privilege name as in the `privileges` table, e.g. `prvReadAsyncOperation`. */
    name: string;
    depth: PrivilegeDepth;
}

/**
 * The guide's step 4: Core Records → User Entity UI Settings (Create, Read, Write at User depth) and
 * Customization → System Job (Read, Write, AppendTo at Organization depth).
 */
export const GUIDE_ROLE_PRIVILEGES: readonly PrivilegeGrant[] = [
    { name: "prvCreateUserEntityUISettings", depth: "Basic" },
    { name: "prvReadUserEntityUISettings", depth: "Basic" },
    { name: "prvWriteUserEntityUISettings", depth: "Basic" },
    { name: "prvReadAsyncOperation", depth: "Global" },
    { name: "prvWriteAsyncOperation", depth: "Global" },
    { name: "prvAppendToAsyncOperation", depth: "Global" },
];

/** The managed solution the guide tells publishers to download and import. */
export const GUIDE_SOLUTION_URL =
    "https://mpsapiprodwus.blob.core.windows.net/documentation/MicrosoftMarketplacesLeadIntegrationSolution_1_0_0_0_target_CRM_6.1_managed.zip";

export const DEFAULT_ROLE_NAME = "Microsoft Marketplace Lead Writer";

/** The SKU part number of "Dynamics 365 Sales Enterprise Edition", the licence the Office 365 path assigns by default. */
export const DEFAULT_LICENSE_SKU = "DYN365_ENTERPRISE_SALES";

/** The guide asks to renew the service account's password every 90 days. */
export const DEFAULT_PASSWORD_ROTATION_DAYS = 90;

export function isGuid(value: string): boolean {
    return GUID.test(value);
}

/**
 * Checks an instance URL and returns its origin. Shared by the config and the dynamic providers so both
 * accept exactly the same forms.
 */
export function normaliseInstanceUrl(value: string): string {
    let url: URL;
    try {
        url = new URL(value.trim());
    } catch {
        throw new Error(`"${value}" is not a URL; expected https://<org>.crm<N>.dynamics.com`);
    }
    if (url.protocol !== "https:") {
        throw new Error(`"${value}" must use https; expected https://<org>.crm<N>.dynamics.com`);
    }
    if (!DYNAMICS_HOST.test(url.hostname.toLowerCase())) {
        throw new Error(`host "${url.hostname}" is not a Dynamics 365 instance; expected https://<org>.crm<N>.dynamics.com`);
    }
    if ((url.pathname !== "/" && url.pathname !== "") || url.search || url.hash || url.port || url.username) {
        throw new Error(
            `"${value}" must be the instance origin only (no path, query, port or credentials); expected https://<org>.crm<N>.dynamics.com`,
        );
    }
    return `https://${url.hostname.toLowerCase()}`;
}
