import { AzureAuthorityHosts, ClientSecretCredential, TokenCredential, UsernamePasswordCredential } from "@azure/identity";
import { clientFromEnvironment, DataverseClient, DataverseClientOptions, DataverseError, odataGuid } from "../dataverse/client";

/**
 * The core of Partner Center's "Validate" button, shared by `npm run validate` and the `LeadValidation` resource:
 * sign in as the lead service does (as the lead-writing app, or as the Office 365 service account with its password),
 * write a test lead, read it back, and turn every failure into one of a few classes, each with a message that says
 * what to fix and an exit code of its own.
 */

/**
 * What can go wrong, from the first sign-in to the lead's owner. `secretRejected` covers the credential the lead
 * service holds (client secret or password) being wrong or expired; `appUnknown` an app, user or tenant the directory
 * does not know; `noApplicationUser` the Dataverse user the sign-in acts as (application user or the service
 * account's synchronised user) missing or disabled. The last two are the service account's only.
 */
export type LeadCheckFailure =
    | "secretRejected"
    | "appUnknown"
    | "instanceUnreachable"
    | "noApplicationUser"
    | "noRole"
    | "privilegeMissing"
    | "signInBlocked"
    | "accountDisabled"
    | "unexpected";

/** Exit codes of `npm run validate`, one per failure class; 2 is a usage error, 0 a lead that landed. */
export const EXIT_CODES: Readonly<Record<LeadCheckFailure, number>> = {
    unexpected: 1,
    secretRejected: 10,
    appUnknown: 11,
    instanceUnreachable: 12,
    noApplicationUser: 13,
    noRole: 14,
    privilegeMissing: 15,
    signInBlocked: 16,
    accountDisabled: 17,
};

/** A failed check. `message` names the cause and the fix and never holds the secret or a token. */
export class LeadCheckError extends Error {
    readonly failure: LeadCheckFailure;
    readonly exitCode: number;

    constructor(failure: LeadCheckFailure, message: string) {
        super(message);
        // Closure serialization turns `super(message)` into `Error.call(this, message)`, which sets no message.
        this.message = message;
        this.name = "LeadCheckError";
        this.failure = failure;
        this.exitCode = EXIT_CODES[failure];
    }
}

/** Who signs in where: the fields of Partner Center's "Connection details" form, Azure AD app method. */
export interface AppSignInTarget {
    kind?: "app";
    /** `https://<org>.crm<N>.dynamics.com`. */
    instanceUrl: string;
    /** Directory (tenant) id. */
    tenantId: string;
    /** Application (client) id. */
    applicationId: string;
    clientSecret: string;
}

/**
 * Microsoft's public client for Dataverse tools and samples (the `AppId` of XRM tooling's OAuth connection strings
 * with a user name and password): a first-party app present in every tenant, so a password sign-in to Dataverse needs
 * no app registration of its own.
 */
export const DATAVERSE_PUBLIC_CLIENT_ID = "51f81489-12ee-4a9e-aaae-a2591f45987d";

/** The Office 365 method: the service account signs in with its password (resource-owner password grant). */
export interface ServiceAccountSignInTarget {
    kind: "serviceAccount";
    /** `https://<org>.crm<N>.dynamics.com`. */
    instanceUrl: string;
    /**
     * The tenant to sign in to: its id, a verified domain (e.g. the user name's), or `organizations`; `common` does
     * not take a password sign-in.
     */
    tenantId: string;
    /** The service account's user principal name, Partner Center's "User name". */
    userName: string;
    password: string;
    /** The public client the sign-in goes through; {@link DATAVERSE_PUBLIC_CLIENT_ID} unless given. */
    clientId: string;
}

export type LeadCheckTarget = AppSignInTarget | ServiceAccountSignInTarget;

export interface LeadCheckOptions {
    /**
     * The deploying identity, which deletes the test lead (the Lead Writer role may not delete leads, and a lead the
     * application user owns would block deleting that user later). Not needed with `keep`.
     */
    cleanupClient?: DataverseClient;
    /** Leave the test lead in place. */
    keep?: boolean;
    /** The moment that names the test lead; now by default. */
    now?: Date;
    /** Retries and timeouts of the app's Dataverse client. */
    clientOptions?: Pick<DataverseClientOptions, "retry" | "timeoutMs">;
}

export interface LeadCheckResult {
    instanceUrl: string;
    /** The app signed in as, or the public client the service account signed in through. */
    applicationId: string;
    /** The service account signed in as; only on the Office 365 method. */
    userName?: string;
    /** The Dataverse user the sign-in acts as (`WhoAmI`): the application user, or the service account's user. */
    systemUserId: string;
    businessUnitId: string;
    organizationId: string;
    /** `MSFT_TEST_<ticks>`, the name Partner Center's own test lead carries. */
    testName: string;
    leadId: string;
    /** Whether the test lead was deleted again. */
    deleted: boolean;
    /** Something the user should know although the lead landed (read-back or clean-up not possible). */
    warnings: string[];
    elapsedMs: number;
}

/** The test lead's fields, as Partner Center's own test lead fills them (contract: Leads). */
export interface TestLead {
    subject: string;
    firstname: string;
    lastname: string;
    companyname: string;
    jobtitle: string;
    description: string;
    emailaddress1: string;
    leadsourcecode: number;
}

// .NET ticks (100 ns since 0001-01-01), the number Partner Center puts after MSFT_TEST_.
const TICKS_AT_UNIX_EPOCH = 621355968000000000n;

export function dotNetTicks(at: Date): string {
    return (BigInt(at.getTime()) * 10000n + TICKS_AT_UNIX_EPOCH).toString();
}

export function testLead(at: Date): TestLead {
    const name = `MSFT_TEST_${dotNetTicks(at)}`;
    return {
        // Required, at most 300 characters (contract: Leads).
        subject: `Marketplace lead management validation ${name}`,
        firstname: name,
        lastname: name,
        companyname: name,
        jobtitle: name,
        description: name,
        emailaddress1: `${name}@test.com`,
        // 8 = Web.
        leadsourcecode: 8,
    };
}

const MICROSOFT_AUTHORITY_HOSTS: readonly string[] = Object.values(AzureAuthorityHosts).map((h) => new URL(h).host);

/**
 * Whether the authority host is not one of Microsoft's clouds (a test double, a proxy): then instance discovery is
 * switched off, because MSAL would otherwise first ask login.microsoftonline.com about the authority.
 */
function isForeignAuthority(authorityHost: string | undefined): boolean {
    if (!authorityHost) return false;
    try {
        return !MICROSOFT_AUTHORITY_HOSTS.includes(new URL(authorityHost).host.toLowerCase());
    } catch {
        throw new LeadCheckError("unexpected", `AZURE_AUTHORITY_HOST="${authorityHost}" is not a URL; unset it or use https://<host>`);
    }
}

/** `ClientSecretCredential` for the app, at `AZURE_AUTHORITY_HOST` when set. */
export function appCredential(target: AppSignInTarget, authorityHost = process.env.AZURE_AUTHORITY_HOST): TokenCredential {
    return new ClientSecretCredential(target.tenantId, target.applicationId, target.clientSecret, {
        authorityHost,
        disableInstanceDiscovery: isForeignAuthority(authorityHost),
    });
}

/**
 * `UsernamePasswordCredential` for the service account, at `AZURE_AUTHORITY_HOST` when set. @azure/identity marks it
 * deprecated because a password sign-in cannot do MFA; it is still exactly what the lead service does on Partner
 * Center's Office 365 method, which is what this check must prove.
 */
export function serviceAccountCredential(
    target: ServiceAccountSignInTarget,
    authorityHost = process.env.AZURE_AUTHORITY_HOST,
): TokenCredential {
    return new UsernamePasswordCredential(target.tenantId, target.clientId, target.userName, target.password, {
        authorityHost,
        disableInstanceDiscovery: isForeignAuthority(authorityHost),
    });
}

/** Who signs in, for messages: "app <id>" or "service account <upn>". */
function signer(target: LeadCheckTarget): string {
    return target.kind === "serviceAccount" ? `service account ${target.userName}` : `app ${target.applicationId}`;
}

/** The Dataverse user the sign-in acts as, for messages. */
function dataverseUser(target: LeadCheckTarget): string {
    return target.kind === "serviceAccount"
        ? `the Dataverse user of service account ${target.userName}`
        : `the application user of app ${target.applicationId}`;
}

function capitalised(text: string): string {
    return text.charAt(0).toUpperCase() + text.slice(1);
}

/** The AADSTS code in an identity-platform error, e.g. `7000215`. */
export function aadstsCode(message: string): string | undefined {
    return /AADSTS(\d+)/.exec(message)?.[1];
}

/** A sign-in failure as a failure class; the original message is cut to its first line (MSAL adds trace ids). */
export function classifySignInFailure(err: unknown, target: LeadCheckTarget): LeadCheckError {
    if (target.kind === "serviceAccount") return classifyPasswordSignInFailure(err, target);
    const detail = firstLine(err);
    switch (aadstsCode(detail)) {
        case "7000215":
            return new LeadCheckError(
                "secretRejected",
                `The client secret of app ${target.applicationId} was rejected (AADSTS7000215: invalid client secret). Use the current clientSecret output (pulumi stack output --json --show-secrets), not a secret ID or an older value; run 'pulumi up' if the app's secrets were changed outside the stack.`,
            );
        case "7000222":
            return new LeadCheckError(
                "secretRejected",
                `The client secret of app ${target.applicationId} has expired (AADSTS7000222). Run 'pulumi up' to issue the current secret, then paste the new clientSecret output into Partner Center.`,
            );
        case "700016":
            return new LeadCheckError(
                "appUnknown",
                `App ${target.applicationId} is unknown in tenant ${target.tenantId} (AADSTS700016). Check that applicationId and directoryId come from the same stack, and that the app registration still exists ('pulumi up' recreates it).`,
            );
        case "90002":
            return new LeadCheckError(
                "appUnknown",
                `Tenant ${target.tenantId} was not found (AADSTS90002). Check directoryId: it is the tenant the app is registered in (the directoryId output).`,
            );
        default:
            return new LeadCheckError(
                "unexpected",
                `Signing in as app ${target.applicationId} in tenant ${target.tenantId} failed: ${detail}`,
            );
    }
}

/** The service account's password sign-in failures (contract: Identity platform errors). */
function classifyPasswordSignInFailure(err: unknown, target: ServiceAccountSignInTarget): LeadCheckError {
    const detail = firstLine(err);
    const account = `service account ${target.userName}`;
    switch (aadstsCode(detail)) {
        case "50126":
            return new LeadCheckError(
                "secretRejected",
                `The password of ${account} was rejected (AADSTS50126: invalid username or password). Use the current password output (pulumi stack output --json --show-secrets), not an older one; run 'pulumi up' if the password was changed outside the stack, then paste it into Partner Center.`,
            );
        case "50055":
            return new LeadCheckError(
                "secretRejected",
                `The password of ${account} has expired (AADSTS50055): the tenant's password expiry came before serviceAccountPasswordRotationDays ended. Set serviceAccountPasswordRotationDays below the tenant's expiry period (or let this account's password never expire), run 'pulumi up' to renew it, then paste the new password output into Partner Center.`,
            );
        case "50034":
            return new LeadCheckError(
                "appUnknown",
                `${capitalised(account)} does not exist in tenant ${target.tenantId} (AADSTS50034). Check userName (the userName output) and --tenant-id; 'pulumi up' recreates a deleted account.`,
            );
        case "90002":
            return new LeadCheckError(
                "appUnknown",
                `Tenant ${target.tenantId} was not found (AADSTS90002). Pass --tenant-id with the directory id of the account's tenant, or check the domain of userName.`,
            );
        case "700016":
            return new LeadCheckError(
                "appUnknown",
                `The public client ${target.clientId} is unknown in tenant ${target.tenantId} (AADSTS700016). Leave --client-id out to sign in through Microsoft's Dataverse client ${DATAVERSE_PUBLIC_CLIENT_ID}, or name an app registration that allows public client flows.`,
            );
        case "50076":
        case "50079":
        case "53003":
            return new LeadCheckError(
                "signInBlocked",
                `${capitalised(account)} may not sign in without a person present (AADSTS${aadstsCode(detail)}: ${aadstsCode(detail) === "53003" ? "blocked by Conditional Access" : "multi-factor authentication required"}). The lead service signs in with the password alone: exclude this one account from MFA and from the Conditional Access policies that block non-interactive sign-ins (see README "Two ways for the lead service to sign in").`,
            );
        case "50057":
            return new LeadCheckError(
                "accountDisabled",
                `${capitalised(account)} is disabled in the directory (AADSTS50057). Enable it (Entra admin center → Users → the account → Account enabled) or run 'pulumi up'.`,
            );
        case "50053":
            return new LeadCheckError(
                "accountDisabled",
                `${capitalised(account)} is locked after too many failed sign-ins (AADSTS50053). Wait for the lockout to end or unlock it in the Entra admin center, and make sure nothing signs in with an old password.`,
            );
        default:
            return new LeadCheckError("unexpected", `Signing in as ${account} in tenant ${target.tenantId} failed: ${detail}`);
    }
}

// Codes the contract names, and the ones Dataverse gives an unknown or disabled caller.
const USER_NOT_MEMBER_OF_ORG = "0x80072560";
const USER_DISABLED = "0x80040225";
const USER_NOT_ASSIGNED_ROLES = "0x80042f09";

/** A Dataverse failure of the app's own calls as a failure class; `step` is what it tried, e.g. "create the test lead". */
export function classifyDataverseFailure(err: unknown, target: LeadCheckTarget, step: string): LeadCheckError {
    if (err instanceof LeadCheckError) return err;
    if (!(err instanceof DataverseError)) {
        return new LeadCheckError("unexpected", `Could not ${step}: ${firstLine(err)}`);
    }
    if (err.status === 0) {
        return new LeadCheckError(
            "instanceUnreachable",
            `${target.instanceUrl} could not be reached (${err.code || "no answer"}) to ${step}. Check instanceUrl (https://<org>.crm<N>.dynamics.com), the network or proxy, and DATAVERSE_ENDPOINT if it is set. ${firstLine(err)}`,
        );
    }
    // The message is matched too: no Microsoft page states the code Dataverse gives a disabled caller.
    const disabled = err.hasCode(USER_DISABLED) || /Disabled users cannot access the system/i.test(err.message);
    if (disabled || err.hasCode(USER_NOT_MEMBER_OF_ORG)) {
        return new LeadCheckError("noApplicationUser", disabled ? disabledUserMessage(target) : missingUserMessage(target));
    }
    if (err.hasCode(USER_NOT_ASSIGNED_ROLES)) {
        return new LeadCheckError(
            "noRole",
            `${capitalised(dataverseUser(target))} has no security role in ${target.instanceUrl} (0x80042f09). Run 'pulumi up' to assign the "Microsoft Marketplace Lead Writer" role, or assign it to the ${target.kind === "serviceAccount" ? "user" : "application user"} by hand.`,
        );
    }
    if (err.status === 403) {
        const privilege = /missing (prv\w+) privilege/.exec(err.message)?.[1];
        return new LeadCheckError(
            "privilegeMissing",
            `${capitalised(dataverseUser(target))} may not ${step} in ${target.instanceUrl} (403 ${err.code}${privilege ? `, missing ${privilege}` : ""}). Check that the Lead Writer role holds the lead privileges and the guide's six, and run 'pulumi up' to re-apply them.`,
        );
    }
    return new LeadCheckError("unexpected", `Could not ${step}: ${firstLine(err)}`);
}

function disabledUserMessage(target: LeadCheckTarget): string {
    return target.kind === "serviceAccount"
        ? `The Dataverse user of service account ${target.userName} in ${target.instanceUrl} is disabled, which Dataverse does when the account loses its Dynamics 365 licence. Run 'pulumi up' (it assigns the licence again and waits for the user), or enable the user in Power Platform admin center → Environments → Settings → Users.`
        : `The application user of app ${target.applicationId} in ${target.instanceUrl} is disabled. Enable it (Power Platform admin center → Environments → Settings → Application users) or run 'pulumi up'.`;
}

function missingUserMessage(target: LeadCheckTarget): string {
    return target.kind === "serviceAccount"
        ? `${target.instanceUrl} has no user for service account ${target.userName}: Dataverse makes it minutes after a Dynamics 365 licence is assigned. Run 'pulumi up' (it assigns the licence and waits for the user), and if the environment has a security group, add the account to it.`
        : `${target.instanceUrl} has no application user for app ${target.applicationId}. Run 'pulumi up' to create it, or add it in Power Platform admin center → Environments → Settings → Application users.`;
}

function firstLine(err: unknown): string {
    const message = err instanceof Error ? err.message : String(err);
    return message.split("\n")[0].trim();
}

interface WhoAmIResponse {
    UserId: string;
    BusinessUnitId: string;
    OrganizationId: string;
}

type LeadRecord = Partial<TestLead> & { leadid?: string; _ownerid_value?: string };

/**
 * Signs in as the app or the service account, calls `WhoAmI`, creates the test lead, reads it back and (unless
 * `keep`) deletes it with the cleanup client. Throws {@link LeadCheckError}.
 */
export async function runLeadCheck(target: LeadCheckTarget, options: LeadCheckOptions = {}): Promise<LeadCheckResult> {
    const started = Date.now();
    if (!options.keep && !options.cleanupClient) {
        throw new Error("runLeadCheck needs a cleanupClient unless keep is set");
    }
    const credential = target.kind === "serviceAccount" ? serviceAccountCredential(target) : appCredential(target);
    const scope = `${target.instanceUrl}/.default`;
    try {
        await credential.getToken(scope);
    } catch (err) {
        throw classifySignInFailure(err, target);
    }
    // The same origin rules as the providers (DATAVERSE_ENDPOINT), with the lead service's credential.
    const app = clientFromEnvironment(target.instanceUrl, { ...options.clientOptions, credential });

    let who: WhoAmIResponse;
    try {
        who = await app.get<WhoAmIResponse>("WhoAmI");
    } catch (err) {
        throw classifyDataverseFailure(err, target, "call WhoAmI");
    }

    const lead = testLead(options.now ?? new Date());
    let leadId: string;
    try {
        leadId = await app.create("leads", { ...lead });
    } catch (err) {
        throw classifyDataverseFailure(err, target, "create the test lead");
    }

    const warnings: string[] = [];
    let landed: LeadRecord | undefined;
    try {
        landed = await app.get<LeadRecord>(`leads(${odataGuid(leadId)})`, {
            $select: "leadid,subject,firstname,lastname,companyname,jobtitle,description,emailaddress1,_ownerid_value",
        });
    } catch (err) {
        // The lead service only writes; a role without read access still passes Partner Center's check.
        if (!(err instanceof DataverseError && err.status === 403)) throw classifyDataverseFailure(err, target, "read the test lead back");
        warnings.push(`The ${signer(target)} may not read leads (${firstLine(err)}); the lead was created but not read back.`);
    }
    if (landed) {
        const differing = (Object.keys(lead) as (keyof TestLead)[]).filter((k) => k !== "leadsourcecode" && landed[k] !== lead[k]);
        if (differing.length > 0) {
            throw new LeadCheckError("unexpected", `The test lead ${leadId} was stored with other values in ${differing.join(", ")}.`);
        }
        if (landed._ownerid_value?.toLowerCase() !== who.UserId.toLowerCase()) {
            throw new LeadCheckError(
                "unexpected",
                `The test lead ${leadId} is owned by ${landed._ownerid_value ?? "nobody"}, not by ${target.kind === "serviceAccount" ? "the service account's user" : "the application user"} ${who.UserId}.`,
            );
        }
    }

    let deleted = false;
    if (!options.keep && options.cleanupClient) {
        try {
            await options.cleanupClient.remove("leads", leadId);
            deleted = true;
        } catch (err) {
            warnings.push(
                `The test lead ${lead.lastname} (${leadId}) could not be deleted with the deploying identity and stays behind: ${firstLine(err)}`,
            );
        }
    }

    return {
        instanceUrl: target.instanceUrl,
        ...(target.kind === "serviceAccount"
            ? { applicationId: target.clientId, userName: target.userName }
            : { applicationId: target.applicationId }),
        systemUserId: who.UserId,
        businessUnitId: who.BusinessUnitId,
        organizationId: who.OrganizationId,
        testName: lead.lastname,
        leadId,
        deleted,
        warnings,
        elapsedMs: Date.now() - started,
    };
}

/** The one line `npm run validate` prints for a lead that landed. */
export function summaryLine(result: LeadCheckResult): string {
    const as =
        result.userName !== undefined
            ? `user ${result.systemUserId} (service account ${result.userName})`
            : `application user ${result.systemUserId} (app ${result.applicationId})`;
    return `OK: test lead ${result.testName} landed in ${result.instanceUrl} as ${as}, ${result.deleted ? "then deleted" : "kept"}, in ${result.elapsedMs} ms`;
}
