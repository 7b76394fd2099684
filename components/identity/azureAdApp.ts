import * as pulumi from "@pulumi/pulumi";
import * as azuread from "@pulumi/azuread";
import { SignInAudience } from "../config";
import { rotationPeriod } from "./rotation";

/**
 * Which client secret is current, and when each of the two rotating secrets expires.
 *
 * Azure AD caps secret lifetimes, so the guide's "never expires" is replaced by rotation. Two secrets take turns:
 * one is renewed at the start of every period and lives two periods, so the secret Partner Center holds keeps
 * working for a whole period after the next one is issued. Everything derives from the period number, so
 * re-running within a period changes nothing.
 */
export function secretRotation(
    now: Date,
    rotationDays: number,
): { period: number; current: 0 | 1; slots: { generation: number; endDate: string }[] } {
    const { period, periodMs } = rotationPeriod(now, rotationDays);
    const slots = ([0, 1] as const).map((slot) => {
        // The latest period, not after this one, in which this slot was (re)issued.
        const issuedIn = period - ((((period - slot) % 2) + 2) % 2);
        return { generation: issuedIn, endDate: new Date((issuedIn + 2) * periodMs).toISOString() };
    });
    return { period, current: (period % 2) as 0 | 1, slots };
}

/** Arguments of {@link AzureAdApp}. */
export interface AzureAdAppArgs {
    /** Display name of the app registration, as the guide's step "Register an application" names it. */
    readonly displayName: pulumi.Input<string>;
    /** Supported account types; the guide's "Accounts in any organizational directory" is `AzureADMultipleOrgs`. */
    readonly signInAudience: pulumi.Input<SignInAudience>;
    /** Web redirect URI. Microsoft's lead service never calls it; the guide only requires one to exist. */
    readonly redirectUri: pulumi.Input<string>;
    /** Grant tenant-wide admin consent for Dynamics CRM `user_impersonation`; needs a privileged directory role. */
    readonly grantAdminConsent: boolean;
    /** Days between client-secret rotations; each secret stays valid for two periods. */
    readonly clientSecretRotationDays: number;
}

/**
 * The Azure AD half of the guide's recommended path: an app registration with the delegated Dynamics CRM
 * `user_impersonation` permission, its service principal (which Dataverse needs before it accepts an application
 * user), an optional admin consent, and a rotating client secret for Partner Center.
 */
export class AzureAdApp extends pulumi.ComponentResource {
    /** Application (client) id: Partner Center's "Application (client) ID" and the Dataverse application user's key. */
    public readonly applicationId: pulumi.Output<string>;
    /** Object id of the app's service principal in this tenant. */
    public readonly servicePrincipalObjectId: pulumi.Output<string>;
    /** The client secret Partner Center should hold now (secret). */
    public readonly clientSecret: pulumi.Output<string>;
    /** When {@link clientSecret} stops working; run `pulumi up` at least once per rotation period. */
    public readonly clientSecretEndDate: pulumi.Output<string>;

    constructor(name: string, args: AzureAdAppArgs, opts?: pulumi.ComponentResourceOptions) {
        super("leadmanagement:identity:AzureAdApp", name, {}, opts);
        const invokeOpts = { parent: this };

        // Well-known values, looked up rather than hard-coded: the Dynamics CRM app id is
        // 00000007-0000-0000-c000-000000000000 and its user_impersonation scope 78ce3f0f-a1ce-49c2-8cde-64b5c0896db4.
        const publishedAppIds = azuread.getApplicationPublishedAppIdsOutput(invokeOpts);
        const dynamicsCrmAppId = publishedAppIds.result.apply((ids) => {
            const id = ids["DynamicsCrm"];
            if (!id) throw new Error("Azure AD did not list the Dynamics CRM published app id (DynamicsCrm)");
            return id;
        });
        // A data source, never a managed resource: destroying it would delete Microsoft's service principal.
        const dynamicsCrm = azuread.getServicePrincipalOutput({ clientId: dynamicsCrmAppId }, invokeOpts);
        const userImpersonationScopeId = dynamicsCrm.oauth2PermissionScopeIds.apply((scopes) => {
            const id = scopes["user_impersonation"];
            if (!id) throw new Error("the Dynamics CRM service principal has no user_impersonation scope in this tenant");
            return id;
        });

        const app = new azuread.Application(
            `${name}-app`,
            {
                displayName: args.displayName,
                signInAudience: args.signInAudience,
                web: { redirectUris: [args.redirectUri] },
                requiredResourceAccesses: [
                    {
                        resourceAppId: dynamicsCrmAppId,
                        resourceAccesses: [{ id: userImpersonationScopeId, type: "Scope" }],
                    },
                ],
            },
            { parent: this },
        );

        const servicePrincipal = new azuread.ServicePrincipal(
            `${name}-sp`,
            {
                clientId: app.clientId,
            },
            { parent: this },
        );

        if (args.grantAdminConsent) {
            new azuread.ServicePrincipalDelegatedPermissionGrant(
                `${name}-consent`,
                {
                    servicePrincipalObjectId: servicePrincipal.objectId,
                    resourceServicePrincipalObjectId: dynamicsCrm.objectId,
                    claimValues: ["user_impersonation"],
                },
                { parent: this },
            );
        }

        const rotation = secretRotation(new Date(), args.clientSecretRotationDays);
        const secrets = rotation.slots.map(
            (slot, index) =>
                new azuread.ApplicationPassword(
                    `${name}-secret-${index}`,
                    {
                        applicationId: app.id,
                        displayName: `Partner Center lead management (slot ${index}, generation ${slot.generation})`,
                        endDate: slot.endDate,
                        rotateWhenChanged: { generation: String(slot.generation) },
                    },
                    { parent: this },
                ),
        );
        // The azuread SDK already declares `value` an additional secret output of ApplicationPassword.
        const current = secrets[rotation.current];

        this.applicationId = app.clientId;
        this.servicePrincipalObjectId = servicePrincipal.objectId;
        this.clientSecret = pulumi.secret(current.value);
        this.clientSecretEndDate = current.endDate;
        this.registerOutputs({
            applicationId: this.applicationId,
            servicePrincipalObjectId: this.servicePrincipalObjectId,
            clientSecret: this.clientSecret,
            clientSecretEndDate: this.clientSecretEndDate,
        });
    }
}
