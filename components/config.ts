import * as pulumi from "@pulumi/pulumi";

/** How Microsoft's lead service signs in to the Dynamics 365 instance (Partner Center's "Authentication method"). */
export type AuthMethod = "azureAD" | "office365";

/** Who may sign in to the app registration; the guide asks for "Accounts in any organizational directory". */
export type SignInAudience = "AzureADMyOrg" | "AzureADMultipleOrgs";

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

/** The whole stack configuration, validated. Field names are the config keys. */
export interface StackConfig {
    /** `https://<org>.crm<N>.dynamics.com`, normalised to the origin without a trailing slash. */
    instanceUrl: string;
    authMethod: AuthMethod;
    /** Partner Center's contact e-mails, in the `;`-separated form its form takes. */
    contactEmails: string[];
    appDisplayName: string;
    signInAudience: SignInAudience;
    redirectUri: string;
    grantAdminConsent: boolean;
    /** Days between client-secret rotations; each secret is valid for two periods so the previous one overlaps. */
    clientSecretRotationDays: number;
    leadWriterRoleName: string;
    /** Business unit of the application user; undefined means the root business unit. */
    businessUnitId?: string;
    /** Local path or https URL of the managed solution zip. */
    solutionSource: string;
    solutionImportTimeoutMinutes: number;
    /** Keep the solution installed when the stack is destroyed. */
    retainSolutionOnDelete: boolean;
    rolePrivileges: PrivilegeGrant[];
    /** Write a test lead as the app during `pulumi up`, as Partner Center's "Validate" button does. */
    validateOnUp: boolean;
    /** ARM id of an existing Key Vault that receives the current client secret; none by default. */
    keyVaultId?: string;
}

/** The raw stack values, as strings, keyed by config key (what `pulumi config get` would print). */
export type RawConfig = Readonly<Record<string, string | undefined>>;

/** Thrown when the stack config is invalid; `problems` holds one line per bad key. */
export class ConfigError extends Error {
    constructor(public readonly problems: readonly string[]) {
        super(`Invalid stack configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
        this.name = "ConfigError";
    }
}

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
// Not RFC 5322: the pragmatic shape Partner Center itself accepts (local@domain.tld, no spaces).
const EMAIL = /^[^\s@;,]+@[^\s@;,]+\.[^\s@;,]+$/;
const DYNAMICS_HOST = /^[a-z0-9][a-z0-9-]*\.crm\d*\.dynamics\.com$/;

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

export function parseEmailList(value: string): string[] {
    const emails = value
        .split(";")
        .map((e) => e.trim())
        .filter((e) => e.length > 0);
    if (emails.length === 0) {
        throw new Error("is empty; expected one or more e-mail addresses separated by ';'");
    }
    const bad = emails.filter((e) => !EMAIL.test(e));
    if (bad.length > 0) {
        throw new Error(
            `has invalid address(es) ${bad.map((b) => `"${b}"`).join(", ")}; expected addresses separated by ';', e.g. "leads@contoso.com;sales@contoso.com"`,
        );
    }
    return emails;
}

function parseEnum<T extends string>(value: string, allowed: readonly T[]): T {
    const match = allowed.find((a) => a === value);
    if (match === undefined) {
        throw new Error(`"${value}" is not one of ${allowed.map((a) => `"${a}"`).join(", ")}`);
    }
    return match;
}

function parseBoolean(value: string): boolean {
    if (value === "true") return true;
    if (value === "false") return false;
    throw new Error(`"${value}" is not a boolean; expected true or false`);
}

function parseInteger(value: string, min: number, max: number, unit: string): number {
    if (!/^\d+$/.test(value.trim())) {
        throw new Error(`"${value}" is not a whole number of ${unit}; expected ${min} to ${max}`);
    }
    const n = Number(value);
    if (n < min || n > max) {
        throw new Error(`${n} ${unit} is out of range; expected ${min} to ${max}`);
    }
    return n;
}

function parseHttpsUrl(value: string): string {
    let url: URL;
    try {
        url = new URL(value);
    } catch {
        throw new Error(`"${value}" is not a URL; expected an https:// URL`);
    }
    if (url.protocol !== "https:") {
        throw new Error(`"${value}" must use https`);
    }
    return url.toString();
}

function parseSolutionSource(value: string): string {
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) {
        return parseHttpsUrl(value);
    }
    if (!value.toLowerCase().endsWith(".zip")) {
        throw new Error(`"${value}" is neither an https URL nor a path to a .zip file`);
    }
    return value;
}

function parsePrivileges(value: string): PrivilegeGrant[] {
    let parsed: unknown;
    try {
        parsed = JSON.parse(value);
    } catch {
        throw new Error(`is not JSON; expected a list like [{"name":"prvReadAsyncOperation","depth":"Global"}]`);
    }
    if (!Array.isArray(parsed) || parsed.length === 0) {
        throw new Error(`must be a non-empty list like [{"name":"prvReadAsyncOperation","depth":"Global"}]`);
    }
    const seen = new Set<string>();
    return parsed.map((entry: unknown, i: number): PrivilegeGrant => {
        const item = entry as { name?: unknown; depth?: unknown } | null;
        if (typeof item !== "object" || item === null || typeof item.name !== "string" || !/^prv[A-Za-z0-9]+$/.test(item.name)) {
            throw new Error(`[${i}].name must be a privilege name such as "prvReadAsyncOperation"`);
        }
        if (typeof item.depth !== "string" || !PRIVILEGE_DEPTHS.includes(item.depth as PrivilegeDepth)) {
            throw new Error(
                `[${i}].depth must be one of ${PRIVILEGE_DEPTHS.map((d) => `"${d}"`).join(", ")} (User = Basic, Organization = Global)`,
            );
        }
        if (seen.has(item.name.toLowerCase())) {
            throw new Error(`[${i}] names "${item.name}" twice`);
        }
        seen.add(item.name.toLowerCase());
        return { name: item.name, depth: item.depth as PrivilegeDepth };
    });
}

/**
 * Validates the raw stack values. Every problem is reported at once, each naming its key, so one `pulumi up`
 * shows the whole list instead of one error per attempt.
 */
export function parseStackConfig(raw: RawConfig, namespace = "lead-management"): StackConfig {
    const problems: string[] = [];
    const key = (k: string) => `${namespace}:${k}`;

    function read<T>(name: string, parse: (v: string) => T, fallback?: T): T | undefined {
        const value = raw[name];
        if (value === undefined || value.trim() === "") {
            if (fallback === undefined) {
                problems.push(`${key(name)} is required (pulumi config set ${key(name)} <value>)`);
            }
            return fallback;
        }
        try {
            return parse(value.trim());
        } catch (err) {
            problems.push(`${key(name)}: ${(err as Error).message}`);
            return undefined;
        }
    }
    function optional<T>(name: string, parse: (v: string) => T): T | undefined {
        const value = raw[name];
        return value === undefined || value.trim() === "" ? undefined : read(name, parse);
    }

    const config = {
        instanceUrl: read("instanceUrl", normaliseInstanceUrl),
        authMethod: read("authMethod", (v) => parseEnum<AuthMethod>(v, ["azureAD", "office365"]), "azureAD"),
        contactEmails: read("contactEmails", parseEmailList),
        appDisplayName: read("appDisplayName", (v) => v, "Marketplace Lead Writer"),
        signInAudience: read(
            "signInAudience",
            (v) => parseEnum<SignInAudience>(v, ["AzureADMyOrg", "AzureADMultipleOrgs"]),
            "AzureADMultipleOrgs",
        ),
        redirectUri: read("redirectUri", parseHttpsUrl, "https://localhost/marketplace-leads/auth"),
        grantAdminConsent: read("grantAdminConsent", parseBoolean, false),
        // Azure AD caps secrets at 24 months, and each secret lives two periods, so one period is at most a year.
        clientSecretRotationDays: read("clientSecretRotationDays", (v) => parseInteger(v, 7, 365, "days"), 180),
        leadWriterRoleName: read("leadWriterRoleName", (v) => v, DEFAULT_ROLE_NAME),
        businessUnitId: optional("businessUnitId", (v) => {
            if (!isGuid(v)) throw new Error(`"${v}" is not a GUID; expected xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`);
            return v.toLowerCase();
        }),
        solutionSource: read("solutionSource", parseSolutionSource, GUIDE_SOLUTION_URL),
        solutionImportTimeoutMinutes: read("solutionImportTimeoutMinutes", (v) => parseInteger(v, 1, 240, "minutes"), 30),
        retainSolutionOnDelete: read("retainSolutionOnDelete", parseBoolean, false),
        rolePrivileges: read(
            "rolePrivileges",
            parsePrivileges,
            GUIDE_ROLE_PRIVILEGES.map((p) => ({ ...p })),
        ),
        validateOnUp: read("validateOnUp", parseBoolean, false),
        keyVaultId: optional("keyVaultId", (v) => v),
    };
    if (config.authMethod === "office365") {
        problems.push(`${key("authMethod")}: "office365" is not supported yet; use "azureAD" (the guide's recommended path)`);
    }
    if (problems.length > 0) {
        throw new ConfigError(problems);
    }
    return config as StackConfig;
}

/** Every config key the project reads; `Pulumi.yaml` declares the same set. */
export const CONFIG_KEYS: readonly (keyof StackConfig)[] = [
    "instanceUrl",
    "authMethod",
    "contactEmails",
    "appDisplayName",
    "signInAudience",
    "redirectUri",
    "grantAdminConsent",
    "clientSecretRotationDays",
    "leadWriterRoleName",
    "businessUnitId",
    "solutionSource",
    "solutionImportTimeoutMinutes",
    "retainSolutionOnDelete",
    "rolePrivileges",
    "validateOnUp",
    "keyVaultId",
];

/** Reads this stack's config through Pulumi and validates it before any resource is declared. */
export function loadStackConfig(): StackConfig {
    const config = new pulumi.Config();
    const raw: Record<string, string | undefined> = {};
    for (const k of CONFIG_KEYS) {
        raw[k] = config.get(k);
    }
    return parseStackConfig(raw, config.name);
}
