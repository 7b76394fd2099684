import * as fs from "fs";
import * as pulumi from "@pulumi/pulumi";
import {
    DEFAULT_LICENSE_SKU,
    DEFAULT_PASSWORD_ROTATION_DAYS,
    DEFAULT_ROLE_NAME,
    GUIDE_ROLE_PRIVILEGES,
    GUIDE_SOLUTION_URL,
    isGuid,
    normaliseInstanceUrl,
    PrivilegeDepth,
    PrivilegeGrant,
    PRIVILEGE_DEPTHS,
} from "./guide";
import { redactUrl, redactUrls } from "./redact";

/** How Microsoft's lead service signs in to the Dynamics 365 instance (Partner Center's "Authentication method"). */
export type AuthMethod = "azureAD" | "office365";

/** Who may sign in to the app registration; the guide asks for "Accounts in any organizational directory". */
export type SignInAudience = "AzureADMyOrg" | "AzureADMultipleOrgs";

/** Every config key the project reads; `Pulumi.yaml` declares the same set. */
export const CONFIG_KEYS = [
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
    "solutionSha256",
    "solutionImportTimeoutMinutes",
    "retainSolutionOnDelete",
    "rolePrivileges",
    "allowElevatedPrivileges",
    "validateOnUp",
    "keyVaultId",
    "serviceAccountUserPrincipalName",
    "serviceAccountUsageLocation",
    "serviceAccountPasswordRotationDays",
    "serviceAccountLicenseSku",
] as const;

export type ConfigKey = (typeof CONFIG_KEYS)[number];

/** The Office 365 service account (the guide's second sign-in path), from the `serviceAccount*` keys. */
export interface ServiceAccountConfig {
    /** `user@domain` of the directory user the lead service signs in as. */
    userPrincipalName: string;
    /** ISO 3166-1 alpha-2 country code; Azure AD assigns no licence to a user without one. */
    usageLocation: string;
    /** Days between password renewals, at most the guide's 90. */
    passwordRotationDays: number;
    /** SKU part number of the Dynamics 365 licence, as `GET /subscribedSkus` lists it. */
    licenseSkuPartNumber: string;
}

/** The whole stack configuration, validated. Top-level field names are the config keys. */
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
    /** SHA-256 the solution package must have (64 lower-case hex digits); undefined pins it at first import. */
    solutionSha256?: string;
    solutionImportTimeoutMinutes: number;
    /** Keep the solution installed when the stack is destroyed. */
    retainSolutionOnDelete: boolean;
    rolePrivileges: PrivilegeGrant[];
    /** Lets `leadWriterRoleName` and `rolePrivileges` go beyond the guide; every run then warns. */
    allowElevatedPrivileges: boolean;
    /** What the override let through, one line each; empty when the stack stays within the guide. */
    elevatedPrivileges: readonly string[];
    /** Write and read back a test lead during `pulumi up`, as Partner Center's "Validate" button does. */
    validateOnUp: boolean;
    /** ARM id of an existing Key Vault that also receives the client secret; undefined means no hand-off. */
    keyVaultId?: string;
    /** Present exactly when `authMethod` is `office365`. */
    serviceAccount?: ServiceAccountConfig;
    /** Keys the stack stores as secrets (`pulumi config set --secret`): their values reach resources as secrets. */
    secretKeys: readonly ConfigKey[];
}

/**
 * The raw stack values, as strings, keyed by config key (what `pulumi config get` would print). Keys this program
 * does not read are refused, so a misspelt key is not silently ignored.
 */
export type RawConfig = Readonly<Partial<Record<ConfigKey, string>> & Record<string, string | undefined>>;

/** Thrown when the stack config is invalid; `problems` holds one line per bad key. */
export class ConfigError extends Error {
    constructor(public readonly problems: readonly string[]) {
        super(`Invalid stack configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
        this.name = "ConfigError";
    }
}

// Dot-atom local part (RFC 5322 without quoted strings or comments): no leading, trailing or doubled dots.
const EMAIL_LOCAL = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$/;
// Azure AD user names allow fewer symbols than e-mail: letters, digits and ' . - _ ! # ^ ~.
const UPN_LOCAL = /^[A-Za-z0-9'_!#^~-]+(?:\.[A-Za-z0-9'_!#^~-]+)*$/;
const DOMAIN_LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
const TOP_LEVEL_DOMAIN = /^[A-Za-z]{2,63}$/;
const SHA256_HEX = /^[0-9a-f]{64}$/i;
const PRIVILEGE_NAME = /^prv[A-Za-z0-9_]{1,97}$/;

// Graph documents 256 characters for application.displayName, but the Entra admin center's name fields stop at
// 120; keeping to 120 keeps the app editable in the portal the guide sends publishers to.
export const MAX_APP_DISPLAY_NAME = 120;
// Azure AD's limit on a redirect URI ("Redirect URI (reply URL) restrictions").
const MAX_REDIRECT_URI = 256;

/**
 * Dataverse's predefined roles that grant more than a user's own records: administration, customisation,
 * environment-wide reads or writes, or impersonation of other users. Source: Microsoft Learn, "Configure user
 * security in an environment" → "Predefined security roles" (power-platform/admin/database-security). Basic User
 * (formerly Common Data Service User), App Opener and Office Collaborator are left out: they reach only the user's
 * own or shared records, so naming one is a mistake the role lookup reports, not an escalation.
 */
export const ADMINISTRATIVE_ROLE_NAMES: readonly string[] = [
    "System Administrator",
    "System Customizer",
    "Environment Admin",
    "Environment Maker",
    "Service Reader",
    "Service Writer",
    "Service Deleted",
    "Delegate",
    "Support User",
];

/** Why a DNS domain is not one a mailbox or a user can live in, or undefined when it is. */
function domainProblem(domain: string): string | undefined {
    if (domain.length > 253) return "a domain longer than 253 characters";
    const labels = domain.split(".");
    if (labels.length < 2) return "a domain without a top-level domain";
    if (labels.some((l) => l === "")) return "an empty domain label (leading, trailing or doubled dot)";
    const bad = labels.find((l) => !DOMAIN_LABEL.test(l));
    if (bad !== undefined) return `domain label "${bad}" (letters, digits and inner hyphens only, at most 63)`;
    if (!TOP_LEVEL_DOMAIN.test(labels[labels.length - 1])) return "a top-level domain that is not two or more letters";
    return undefined;
}

/** Why `address` is not a plain `local@domain.tld` mailbox, or undefined when it is. */
function emailProblem(address: string): string | undefined {
    const at = address.lastIndexOf("@");
    if (at <= 0 || at === address.length - 1) return "not of the form local@domain";
    const local = address.slice(0, at);
    if (local.includes('"')) return "a quoted local part, which Partner Center does not take";
    if (local.length > 64) return "a local part longer than 64 characters";
    if (!EMAIL_LOCAL.test(local)) return "a local part with spaces, '@', ';', ',' or a leading, trailing or doubled dot";
    if (address.length > 254) return "longer than 254 characters";
    return domainProblem(address.slice(at + 1));
}

export function parseEmailList(value: string): string[] {
    const emails = value
        .split(";")
        .map((e) => e.trim())
        .filter((e) => e.length > 0);
    if (emails.length === 0) {
        throw new Error("is empty; expected one or more e-mail addresses separated by ';'");
    }
    const bad = emails.map((e) => [e, emailProblem(e)] as const).filter(([, problem]) => problem !== undefined);
    if (bad.length > 0) {
        throw new Error(
            `has invalid address(es) ${bad.map(([e, problem]) => `"${e}" (${problem})`).join(", ")}; expected addresses separated by ';', e.g. "leads@contoso.com;sales@contoso.com"`,
        );
    }
    const seen = new Set<string>();
    const duplicates = emails.filter((e) => seen.size === seen.add(e.toLowerCase()).size);
    if (duplicates.length > 0) {
        throw new Error(`lists ${duplicates.map((d) => `"${d}"`).join(", ")} more than once (addresses compare case-insensitively)`);
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
    if (!/^\d+$/.test(value)) {
        throw new Error(`"${value}" is not a whole number of ${unit}; expected ${min} to ${max}`);
    }
    const n = Number(value);
    if (n < min || n > max) {
        throw new Error(`${n} ${unit} is out of range; expected ${min} to ${max}`);
    }
    return n;
}

function parseText(value: string, maxLength: number): string {
    if (value.length > maxLength) {
        throw new Error(`is ${value.length} characters long; at most ${maxLength} are allowed`);
    }
    return value;
}

/** An https URL without credentials; the message quotes it with its query string redacted. */
function parseHttpsUrl(value: string): URL {
    let url: URL;
    try {
        url = new URL(value);
    } catch {
        throw new Error(`"${redactUrl(value)}" is not a URL; expected an https:// URL`);
    }
    if (url.protocol !== "https:") {
        throw new Error(`"${redactUrl(value)}" must use https`);
    }
    if (url.username || url.password) {
        throw new Error(`"${url.protocol}//…@${url.host}" must not carry a user name or password`);
    }
    return url;
}

function parseRedirectUri(value: string): string {
    const url = parseHttpsUrl(value);
    // Azure AD refuses fragments in redirect URIs; a wildcard is refused for the multi-tenant audience the guide asks for.
    if (value.includes("#")) {
        throw new Error(`"${value}" has a fragment (#…), which Azure AD does not allow in a redirect URI`);
    }
    if (value.includes("*")) {
        throw new Error(`"${redactUrl(value)}" has a wildcard (*), which Azure AD does not allow here`);
    }
    if (value.length > MAX_REDIRECT_URI) {
        throw new Error(`is ${value.length} characters long; Azure AD allows at most ${MAX_REDIRECT_URI}`);
    }
    return url.toString();
}

/** A URL is checked for shape only (no network at config time); a local file must exist and be readable now. */
function parseSolutionSource(value: string): string {
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) {
        return parseHttpsUrl(value).toString();
    }
    if (!value.toLowerCase().endsWith(".zip")) {
        throw new Error(`"${value}" is neither an https URL nor a path to a .zip file`);
    }
    let stat: fs.Stats;
    try {
        stat = fs.statSync(value);
    } catch {
        throw new Error(`"${value}" does not exist (relative paths start at the project directory, ${process.cwd()})`);
    }
    if (!stat.isFile()) {
        throw new Error(`"${value}" is not a file`);
    }
    try {
        fs.accessSync(value, fs.constants.R_OK);
    } catch {
        throw new Error(`"${value}" is not readable by this user`);
    }
    return value;
}

function parseSha256(value: string): string {
    if (!SHA256_HEX.test(value)) {
        throw new Error(`is not a SHA-256 digest; expected 64 hexadecimal digits (e.g. the output of sha256sum)`);
    }
    return value.toLowerCase();
}

function parseKeyVaultId(value: string): string {
    const shape = "/subscriptions/<subscription id>/resourceGroups/<group>/providers/Microsoft.KeyVault/vaults/<name>";
    const match = /^\/subscriptions\/([^/]+)\/resourceGroups\/([^/]+)\/providers\/Microsoft\.KeyVault\/vaults\/([^/]+)$/i.exec(value);
    if (!match) {
        throw new Error(`"${value}" is not a Key Vault resource id; expected ${shape}`);
    }
    const [, subscription, group, vault] = match;
    if (!isGuid(subscription)) {
        throw new Error(`subscription "${subscription}" is not a GUID; expected ${shape}`);
    }
    // Resource group: 1-90 letters, digits, '_', '-', '.', '(' or ')', not ending in '.'.
    if (!/^[\p{L}\p{N}_().-]{1,90}$/u.test(group) || group.endsWith(".")) {
        throw new Error(`resource group "${group}" is not a valid name (1-90 letters, digits, _ - . ( ), not ending in '.')`);
    }
    // Vault: 3-24 letters, digits and hyphens, starting with a letter, ending with a letter or digit, no "--".
    if (!/^[A-Za-z][A-Za-z0-9-]{1,22}[A-Za-z0-9]$/.test(vault) || vault.includes("--")) {
        throw new Error(
            `vault name "${vault}" is not valid (3-24 letters, digits and hyphens, starting with a letter, ending with a letter or digit, no "--")`,
        );
    }
    return value;
}

function parseUserPrincipalName(value: string): string {
    const at = value.lastIndexOf("@");
    if (at <= 0 || at === value.length - 1 || value.indexOf("@") !== at) {
        throw new Error(`"${value}" is not a user principal name; expected user@domain, e.g. lead-writer@contoso.onmicrosoft.com`);
    }
    const local = value.slice(0, at);
    if (local.length > 64 || !UPN_LOCAL.test(local)) {
        throw new Error(
            `"${value}" has an invalid user name; Azure AD allows up to 64 letters, digits and ' . - _ ! # ^ ~, without a leading, trailing or doubled dot`,
        );
    }
    const problem = domainProblem(value.slice(at + 1));
    if (problem) {
        throw new Error(`"${value}" has ${problem}; expected user@domain with a domain verified in the tenant`);
    }
    return value;
}

function parseUsageLocation(value: string): string {
    if (!/^[A-Z]{2}$/.test(value)) {
        throw new Error(`"${value}" is not an ISO 3166-1 alpha-2 country code; expected two upper-case letters, e.g. US or DE`);
    }
    return value;
}

function parseSkuPartNumber(value: string): string {
    // Part numbers are mostly upper case, but some are not (e.g. Dynamics_365_for_Operations).
    if (!/^[A-Za-z0-9_]{1,64}$/.test(value)) {
        throw new Error(`"${value}" is not a SKU part number; expected letters, digits and '_' such as ${DEFAULT_LICENSE_SKU}`);
    }
    return value;
}

const PRIVILEGES_EXAMPLE = `[{"name":"prvReadAsyncOperation","depth":"Global"}]`;

function parsePrivileges(value: string): PrivilegeGrant[] {
    let parsed: unknown;
    try {
        parsed = JSON.parse(value);
    } catch {
        throw new Error(`is not JSON; expected a list like ${PRIVILEGES_EXAMPLE}`);
    }
    if (!Array.isArray(parsed) || parsed.length === 0) {
        throw new Error(`must be a non-empty list like ${PRIVILEGES_EXAMPLE}`);
    }
    const seen = new Set<string>();
    return parsed.map((entry: unknown, i: number): PrivilegeGrant => {
        if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
            throw new Error(`[${i}] must be an object like {"name":"prvReadAsyncOperation","depth":"Global"}`);
        }
        const extra = Object.keys(entry).filter((k) => k !== "name" && k !== "depth");
        if (extra.length > 0) {
            throw new Error(`[${i}] has unknown field(s) ${extra.map((k) => `"${k}"`).join(", ")}; only "name" and "depth" are read`);
        }
        const item = entry as { name?: unknown; depth?: unknown };
        if (typeof item.name !== "string" || !PRIVILEGE_NAME.test(item.name)) {
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

/** Each grant that goes beyond the guide: a privilege outside its six, or one of the six at a deeper depth. */
export function privilegesBeyondGuide(grants: readonly PrivilegeGrant[]): string[] {
    return grants.flatMap((grant) => {
        const guide = GUIDE_ROLE_PRIVILEGES.find((g) => g.name.toLowerCase() === grant.name.toLowerCase());
        if (!guide) return [`${grant.name} at ${grant.depth} (not one of the guide's six)`];
        if (PRIVILEGE_DEPTHS.indexOf(grant.depth) > PRIVILEGE_DEPTHS.indexOf(guide.depth)) {
            return [`${grant.name} at ${grant.depth} (the guide asks for ${guide.depth})`];
        }
        return [];
    });
}

function isAdministrativeRole(name: string): boolean {
    const normalised = name.trim().replace(/\s+/g, " ").toLowerCase();
    return ADMINISTRATIVE_ROLE_NAMES.some((r) => r.toLowerCase() === normalised);
}

/** Keys only the Office 365 path reads, with the value the engine fills in from `Pulumi.yaml` when unset. */
const SERVICE_ACCOUNT_KEYS: readonly (readonly [ConfigKey, string])[] = [
    ["serviceAccountUserPrincipalName", ""],
    ["serviceAccountUsageLocation", ""],
    ["serviceAccountPasswordRotationDays", String(DEFAULT_PASSWORD_ROTATION_DAYS)],
    ["serviceAccountLicenseSku", DEFAULT_LICENSE_SKU],
];

/**
 * Validates the raw stack values. Every problem is reported at once, each naming its key, so one `pulumi up`
 * shows the whole list instead of one error per attempt. An empty value means unset (`Pulumi.yaml` declares
 * optional keys with an empty default); a value of only spaces is refused rather than silently defaulted. Values of
 * `secretKeys` are never quoted in a message, and no message quotes a URL's query string.
 */
export function parseStackConfig(raw: RawConfig, namespace = "lead-management", secretKeys: readonly ConfigKey[] = []): StackConfig {
    const problems: { name: string; text: string }[] = [];
    const key = (k: ConfigKey) => `${namespace}:${k}`;

    function report(name: ConfigKey, message: string): void {
        let text = redactUrls(message);
        const value = raw[name];
        if (secretKeys.includes(name) && value !== undefined && value.trim() !== "") {
            text = text
                .replace(/"[^"]*"/g, '"[secret]"')
                .split(value.trim())
                .join("[secret]");
        }
        problems.push({ name, text: `${key(name)}: ${text}` });
    }
    function read<T>(name: ConfigKey, parse: (v: string) => T, fallback?: T): T | undefined {
        const value = raw[name];
        if (value === undefined || value === "") {
            if (fallback === undefined) {
                problems.push({ name, text: `${key(name)} is required (pulumi config set ${key(name)} <value>)` });
            }
            return fallback;
        }
        if (value.trim() === "") {
            report(name, `is blank; set a value or remove the key (pulumi config rm ${key(name)})`);
            return undefined;
        }
        try {
            return parse(value.trim());
        } catch (err) {
            report(name, (err as Error).message);
            return undefined;
        }
    }
    function optional<T>(name: ConfigKey, parse: (v: string) => T): T | undefined {
        return raw[name] === undefined || raw[name] === "" ? undefined : read(name, parse);
    }

    const authMethod = read("authMethod", (v) => parseEnum<AuthMethod>(v, ["azureAD", "office365"]), "azureAD");
    const allowElevatedPrivileges = read("allowElevatedPrivileges", parseBoolean, false);
    const elevatedPrivileges: string[] = [];

    const leadWriterRoleName = read(
        "leadWriterRoleName",
        (v) => {
            const name = parseText(v, 100);
            if (isAdministrativeRole(name)) {
                if (!allowElevatedPrivileges) {
                    throw new Error(
                        `"${name}" is a built-in administrative role, far beyond what the lead service needs; name the role the solution creates ("${DEFAULT_ROLE_NAME}"), or set allowElevatedPrivileges to true`,
                    );
                }
                const shown = secretKeys.includes("leadWriterRoleName") ? "[secret]" : name;
                elevatedPrivileges.push(`${key("leadWriterRoleName")} "${shown}" is a built-in administrative role`);
            }
            return name;
        },
        DEFAULT_ROLE_NAME,
    );
    const rolePrivileges = read(
        "rolePrivileges",
        (v) => {
            const grants = parsePrivileges(v);
            const beyond = privilegesBeyondGuide(grants);
            if (beyond.length > 0) {
                if (!allowElevatedPrivileges) {
                    throw new Error(
                        `goes beyond the guide's privileges: ${beyond.join(", ")}; the lead service needs only the guide's six, or set allowElevatedPrivileges to true`,
                    );
                }
                elevatedPrivileges.push(
                    ...(secretKeys.includes("rolePrivileges")
                        ? [`${key("rolePrivileges")} ([secret]) grants ${beyond.length} privilege(s) beyond the guide`]
                        : beyond.map((b) => `${key("rolePrivileges")} grants ${b}`)),
                );
            }
            return grants;
        },
        GUIDE_ROLE_PRIVILEGES.map((p) => ({ ...p })),
    );

    let serviceAccount: ServiceAccountConfig | undefined;
    if (authMethod === "office365") {
        const userPrincipalName = read("serviceAccountUserPrincipalName", parseUserPrincipalName);
        const usageLocation = read("serviceAccountUsageLocation", parseUsageLocation);
        const passwordRotationDays = read(
            "serviceAccountPasswordRotationDays",
            // At most the guide's 90 days; under a week is more likely a typo than a plan, since every renewal
            // has to be pasted into Partner Center by hand.
            (v) => parseInteger(v, 7, DEFAULT_PASSWORD_ROTATION_DAYS, "days"),
            DEFAULT_PASSWORD_ROTATION_DAYS,
        );
        const licenseSkuPartNumber = read("serviceAccountLicenseSku", parseSkuPartNumber, DEFAULT_LICENSE_SKU);
        if (userPrincipalName && usageLocation && passwordRotationDays && licenseSkuPartNumber) {
            serviceAccount = { userPrincipalName, usageLocation, passwordRotationDays, licenseSkuPartNumber };
        }
        // Both act on the app registration's client secret, which this path does not have.
        for (const name of ["validateOnUp", "keyVaultId"] as const) {
            const value = raw[name]?.trim();
            if (value && value !== "false") {
                report(
                    name,
                    `works with authMethod "azureAD" only (it uses the app's client secret); remove it (pulumi config rm ${key(name)}) or use npm run validate`,
                );
            }
        }
    } else if (authMethod === "azureAD") {
        // A value other than the engine's default would be ignored on this path: say so instead.
        for (const [name, unset] of SERVICE_ACCOUNT_KEYS) {
            const value = raw[name];
            if (value !== undefined && value !== "" && value.trim() !== unset) {
                report(
                    name,
                    `is set, but only authMethod "office365" uses it (authMethod is "azureAD"); remove it (pulumi config rm ${key(name)}) or set authMethod to office365`,
                );
            }
        }
    }

    const config: Partial<StackConfig> = {
        instanceUrl: read("instanceUrl", normaliseInstanceUrl),
        authMethod,
        contactEmails: read("contactEmails", parseEmailList),
        appDisplayName: read("appDisplayName", (v) => parseText(v, MAX_APP_DISPLAY_NAME), "Marketplace Lead Writer"),
        signInAudience: read(
            "signInAudience",
            (v) => parseEnum<SignInAudience>(v, ["AzureADMyOrg", "AzureADMultipleOrgs"]),
            "AzureADMultipleOrgs",
        ),
        redirectUri: read("redirectUri", parseRedirectUri, "https://localhost/marketplace-leads/auth"),
        grantAdminConsent: read("grantAdminConsent", parseBoolean, false),
        // Azure AD caps secrets at 24 months, and each secret lives two periods, so one period is at most a year.
        clientSecretRotationDays: read("clientSecretRotationDays", (v) => parseInteger(v, 7, 365, "days"), 180),
        leadWriterRoleName,
        businessUnitId: optional("businessUnitId", (v) => {
            if (!isGuid(v)) throw new Error(`"${v}" is not a GUID; expected xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`);
            return v.toLowerCase();
        }),
        solutionSource: read("solutionSource", parseSolutionSource, GUIDE_SOLUTION_URL),
        solutionSha256: optional("solutionSha256", parseSha256),
        solutionImportTimeoutMinutes: read("solutionImportTimeoutMinutes", (v) => parseInteger(v, 1, 240, "minutes"), 30),
        retainSolutionOnDelete: read("retainSolutionOnDelete", parseBoolean, false),
        rolePrivileges,
        allowElevatedPrivileges,
        elevatedPrivileges,
        validateOnUp: read("validateOnUp", parseBoolean, false),
        keyVaultId: optional("keyVaultId", parseKeyVaultId),
        serviceAccount,
        secretKeys: [...secretKeys],
    };
    for (const name of Object.keys(raw).filter((k) => raw[k] !== undefined && !isConfigKey(k))) {
        const nearest = nearestConfigKey(name);
        problems.push({
            name,
            text: `${namespace}:${name} is not a key this program reads${nearest ? `; did you mean ${nearest}?` : ""} (pulumi config rm ${namespace}:${name})`,
        });
    }
    if (problems.length > 0) {
        // In the order Pulumi.yaml lists the keys, whatever order they were checked in; unknown keys last.
        const order = (p: { name: string }) => (isConfigKey(p.name) ? CONFIG_KEYS.indexOf(p.name) : CONFIG_KEYS.length);
        throw new ConfigError([...problems].sort((a, b) => order(a) - order(b)).map((p) => p.text));
    }
    return (serviceAccount ? { ...config, serviceAccount } : config) as StackConfig;
}

function isConfigKey(name: string): name is ConfigKey {
    return (CONFIG_KEYS as readonly string[]).includes(name);
}

/** The config key a misspelt name most likely meant: equal but for case, or at most three edits away. */
function nearestConfigKey(name: string): ConfigKey | undefined {
    const distance = (a: string, b: string): number => {
        let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
        for (let i = 1; i <= a.length; i++) {
            const current = [i];
            for (let j = 1; j <= b.length; j++) {
                current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
            }
            previous = current;
        }
        return previous[b.length];
    };
    const ranked = CONFIG_KEYS.map((k) => ({ k, d: distance(name.toLowerCase(), k.toLowerCase()) })).sort((x, y) => x.d - y.d);
    return ranked[0].d <= 3 ? ranked[0].k : undefined;
}

/** Whether the engine marked a config key secret; `isConfigSecret` is the SDK's own (untyped) test of it. */
function isSecretConfigKey(fullKey: string): boolean {
    const runtime = pulumi.runtime as unknown as { isConfigSecret?: (k: string) => boolean };
    if (typeof runtime.isConfigSecret === "function") {
        return runtime.isConfigSecret(fullKey);
    }
    // The variable the language host sets for the same purpose (a JSON list of full keys).
    const listed: unknown = JSON.parse(process.env.PULUMI_CONFIG_SECRET_KEYS || "[]");
    return Array.isArray(listed) && listed.includes(fullKey);
}

/** Reads this stack's config through Pulumi and validates it before any resource is declared. */
export function loadStackConfig(): StackConfig {
    const { name } = new pulumi.Config();
    // Every key of this project's namespace, so that a misspelt one is reported rather than ignored.
    const names = new Set<string>(CONFIG_KEYS);
    for (const fullKey of Object.keys(pulumi.runtime.allConfig())) {
        if (fullKey.startsWith(`${name}:`)) names.add(fullKey.slice(name.length + 1));
    }
    const raw: Record<string, string | undefined> = {};
    const secretKeys: ConfigKey[] = [];
    for (const k of names) {
        // The runtime's reader, not Config.get: secrets are validated here, then wrapped by configInput.
        raw[k] = pulumi.runtime.getConfig(`${name}:${k}`);
        if (isConfigKey(k) && isSecretConfigKey(`${name}:${k}`)) secretKeys.push(k);
    }
    return parseStackConfig(raw, name, secretKeys);
}

/** `value`, derived from config key `key`, as a resource input: a secret Output when the stack stores that key as a secret. */
export function asConfigured<T>(config: StackConfig, key: ConfigKey, value: T): pulumi.Input<T> {
    return config.secretKeys.includes(key) ? (pulumi.secret(value) as pulumi.Output<T>) : value;
}

/** A top-level config value as a resource input, secret when the stack stores it as a secret. */
export function configInput<K extends ConfigKey & keyof StackConfig>(config: StackConfig, key: K): pulumi.Input<StackConfig[K]> {
    return asConfigured(config, key, config[key]);
}
