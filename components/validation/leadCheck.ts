import { AzureAuthorityHosts, ClientSecretCredential, TokenCredential } from "@azure/identity";
import { clientFromEnvironment, DataverseClient, DataverseClientOptions, DataverseError, odataGuid } from "../dataverse/client";

/**
 * The core of Partner Center's "Validate" button, shared by `npm run validate` and the `LeadValidation` resource:
 * sign in as the lead-writing app, write a test lead the way the lead service does, read it back, and turn every
 * failure into one of a few classes, each with a message that says what to fix and an exit code of its own.
 */

/** What can go wrong, from the first sign-in to the lead's owner. */
export type LeadCheckFailure =
    "secretRejected" | "appUnknown" | "instanceUnreachable" | "noApplicationUser" | "noRole" | "privilegeMissing" | "unexpected";

/** Exit codes of `npm run validate`, one per failure class; 2 is a usage error, 0 a lead that landed. */
export const EXIT_CODES: Readonly<Record<LeadCheckFailure, number>> = {
    unexpected: 1,
    secretRejected: 10,
    appUnknown: 11,
    instanceUnreachable: 12,
    noApplicationUser: 13,
    noRole: 14,
    privilegeMissing: 15,
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

/** Who signs in where: the fields of Partner Center's "Connection details" form. */
export interface LeadCheckTarget {
    /** `https://<org>.crm<N>.dynamics.com`. */
    instanceUrl: string;
    /** Directory (tenant) id. */
    tenantId: string;
    /** Application (client) id. */
    applicationId: string;
    clientSecret: string;
}

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
    applicationId: string;
    /** The application user the app signs in as (`WhoAmI`). */
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
 * `ClientSecretCredential` for the app. It reads `AZURE_AUTHORITY_HOST` itself; when that host is not one of
 * Microsoft's clouds (a test double, a proxy), instance discovery is switched off, because MSAL would otherwise
 * first ask login.microsoftonline.com about the authority.
 */
export function appCredential(target: LeadCheckTarget, authorityHost = process.env.AZURE_AUTHORITY_HOST): TokenCredential {
    let foreign = false;
    if (authorityHost) {
        try {
            foreign = !MICROSOFT_AUTHORITY_HOSTS.includes(new URL(authorityHost).host.toLowerCase());
        } catch {
            throw new LeadCheckError("unexpected", `AZURE_AUTHORITY_HOST="${authorityHost}" is not a URL; unset it or use https://<host>`);
        }
    }
    return new ClientSecretCredential(target.tenantId, target.applicationId, target.clientSecret, {
        disableInstanceDiscovery: foreign,
    });
}

/** The AADSTS code in an identity-platform error, e.g. `7000215`. */
export function aadstsCode(message: string): string | undefined {
    return /AADSTS(\d+)/.exec(message)?.[1];
}

/** A sign-in failure as a failure class; the original message is cut to its first line (MSAL adds trace ids). */
export function classifySignInFailure(err: unknown, target: LeadCheckTarget): LeadCheckError {
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
        return new LeadCheckError(
            "noApplicationUser",
            disabled
                ? `The application user of app ${target.applicationId} in ${target.instanceUrl} is disabled. Enable it (Power Platform admin center → Environments → Settings → Application users) or run 'pulumi up'.`
                : `${target.instanceUrl} has no application user for app ${target.applicationId}. Run 'pulumi up' to create it, or add it in Power Platform admin center → Environments → Settings → Application users.`,
        );
    }
    if (err.hasCode(USER_NOT_ASSIGNED_ROLES)) {
        return new LeadCheckError(
            "noRole",
            `The application user of app ${target.applicationId} has no security role in ${target.instanceUrl} (0x80042f09). Run 'pulumi up' to assign the "Microsoft Marketplace Lead Writer" role, or assign it to the application user by hand.`,
        );
    }
    if (err.status === 403) {
        const privilege = /missing (prv\w+) privilege/.exec(err.message)?.[1];
        return new LeadCheckError(
            "privilegeMissing",
            `The application user of app ${target.applicationId} may not ${step} in ${target.instanceUrl} (403 ${err.code}${privilege ? `, missing ${privilege}` : ""}). Check that the Lead Writer role holds the lead privileges and the guide's six, and run 'pulumi up' to re-apply them.`,
        );
    }
    return new LeadCheckError("unexpected", `Could not ${step}: ${firstLine(err)}`);
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
 * Signs in as the app, calls `WhoAmI`, creates the test lead, reads it back and (unless `keep`) deletes it with the
 * cleanup client. Throws {@link LeadCheckError}.
 */
export async function runLeadCheck(target: LeadCheckTarget, options: LeadCheckOptions = {}): Promise<LeadCheckResult> {
    const started = Date.now();
    if (!options.keep && !options.cleanupClient) {
        throw new Error("runLeadCheck needs a cleanupClient unless keep is set");
    }
    const credential = appCredential(target);
    const scope = `${target.instanceUrl}/.default`;
    try {
        await credential.getToken(scope);
    } catch (err) {
        throw classifySignInFailure(err, target);
    }
    // The same origin rules as the providers (DATAVERSE_ENDPOINT), with the app's credential.
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
        warnings.push(`The app may not read leads (${firstLine(err)}); the lead was created but not read back.`);
    }
    if (landed) {
        const differing = (Object.keys(lead) as (keyof TestLead)[]).filter((k) => k !== "leadsourcecode" && landed[k] !== lead[k]);
        if (differing.length > 0) {
            throw new LeadCheckError("unexpected", `The test lead ${leadId} was stored with other values in ${differing.join(", ")}.`);
        }
        if (landed._ownerid_value?.toLowerCase() !== who.UserId.toLowerCase()) {
            throw new LeadCheckError(
                "unexpected",
                `The test lead ${leadId} is owned by ${landed._ownerid_value ?? "nobody"}, not by the application user ${who.UserId}.`,
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
        applicationId: target.applicationId,
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
    return `OK: test lead ${result.testName} landed in ${result.instanceUrl} as application user ${result.systemUserId} (app ${result.applicationId}), ${result.deleted ? "then deleted" : "kept"}, in ${result.elapsedMs} ms`;
}
