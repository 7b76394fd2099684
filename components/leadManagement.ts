import * as pulumi from "@pulumi/pulumi";
import * as azuread from "@pulumi/azuread";
import { asConfigured, configInput, StackConfig } from "./config";
import { AzureAdApp } from "./identity/azureAdApp";
import { Office365ServiceAccount } from "./identity/office365User";
import { ApplicationUser } from "./dataverse/applicationUser";
import { SyncedUser } from "./dataverse/systemUserSync";
import { RoleAssignment } from "./dataverse/roleAssignment";
import { RolePrivileges } from "./dataverse/rolePrivileges";
import { LeadWriterSolution } from "./dataverse/solution";
import { LeadValidation } from "./dataverse/leadValidation";
import { KeyVaultHandoff } from "./identity/keyVaultHandoff";

/** Arguments of {@link LeadManagement}. */
export interface LeadManagementArgs {
    /** The validated stack configuration (see `components/config.ts`). */
    readonly config: StackConfig;
}

/** Partner Center's "Connection details" with "Azure Active Directory" authentication. */
export interface AzureAdConnectionDetails {
    leadDestination: pulumi.Output<string>;
    instanceUrl: pulumi.Output<string>;
    /** "Azure Active Directory". */
    authenticationMethod: pulumi.Output<string>;
    applicationId: pulumi.Output<string>;
    directoryId: pulumi.Output<string>;
    /** Secret. */
    clientSecret: pulumi.Output<string>;
    clientSecretEndDate: pulumi.Output<string>;
    contactEmails: pulumi.Output<string>;
}

/** Partner Center's "Connection details" with "Office 365" authentication. */
export interface Office365ConnectionDetails {
    leadDestination: pulumi.Output<string>;
    instanceUrl: pulumi.Output<string>;
    /** "Office 365". */
    authenticationMethod: pulumi.Output<string>;
    userName: pulumi.Output<string>;
    /** Secret. */
    password: pulumi.Output<string>;
    /** When the next `pulumi up` renews the password; paste the new one into Partner Center right after it. */
    passwordRenewalDate: pulumi.Output<string>;
    contactEmails: pulumi.Output<string>;
}

/**
 * Everything the Partner Center lead-management guide sets up, wired in order. Its outputs are the fields of
 * Partner Center's "Connection details" form for a Dynamics 365 Customer Engagement destination.
 */
export class LeadManagement extends pulumi.ComponentResource {
    /** Partner Center's "Lead destination". */
    public readonly leadDestination: pulumi.Output<string>;
    /** Partner Center's "Instance URL". */
    public readonly instanceUrl: pulumi.Output<string>;
    /** Partner Center's "Authentication". */
    public readonly authenticationMethod: pulumi.Output<string>;
    /** The form's fields for the chosen sign-in method, and only those (what index.ts exports). */
    public readonly connectionDetails: AzureAdConnectionDetails | Office365ConnectionDetails;
    /** Partner Center's "Contact email", addresses separated by ';'. */
    public readonly contactEmails: pulumi.Output<string>;
    /** The Dataverse user the lead service writes as (the application user, or the service account's user). */
    public readonly systemUserId: pulumi.Output<string>;
    /** Version of the Marketplace Lead Writer solution on the instance. */
    public readonly solutionVersion: pulumi.Output<string>;
    /**
     * Stack outputs beyond Partner Center's form that a user must see; each is present only when it applies
     * (the engine refuses undefined outputs).
     */
    public readonly notices: {
        /** What `allowElevatedPrivileges` let through beyond the guide. */
        elevatedPrivileges?: pulumi.Output<string>;
        /** URI of the Key Vault secret holding the client secret; only with `keyVaultId`. */
        clientSecretKeyVaultUri?: pulumi.Output<string>;
        /** When `pulumi up` last wrote a test lead as the lead service would; only with `validateOnUp`. */
        validatedAt?: pulumi.Output<string>;
    };
    /**
     * What a user must act on, from every Dataverse resource (a solution adopted rather than imported, a user that
     * was found disabled, grants beyond the guide's, other roles the user holds); empty when there is nothing.
     * Provider log lines reach no PR comment (pulumi/pulumi#6065), stack outputs do.
     */
    public readonly warnings: pulumi.Output<string[]>;

    constructor(name: string, args: LeadManagementArgs, opts?: pulumi.ComponentResourceOptions) {
        super("leadmanagement:index:LeadManagement", name, {}, opts);
        const { config } = args;
        // Every config value passed to a resource goes through configInput/asConfigured, so a key stored with
        // `pulumi config set --secret` stays a secret in inputs, state and diffs. Values that decide which resources
        // exist or when a secret rotates (grantAdminConsent, the rotation periods) cannot be Outputs.
        const instanceUrl = configInput(config, "instanceUrl");
        const roleName = configInput(config, "leadWriterRoleName");

        this.notices = {};
        if (config.elevatedPrivileges.length > 0) {
            // Printed by the program, so it shows in every preview and up (and in a PR's preview comment).
            pulumi.log.warn(
                `allowElevatedPrivileges is true: the lead service's user gets more than the guide asks for: ${config.elevatedPrivileges.join("; ")}`,
                this,
            );
            this.notices.elevatedPrivileges = pulumi.output(config.elevatedPrivileges.join("; "));
        }

        const solution = new LeadWriterSolution(
            `${name}-solution`,
            {
                instanceUrl,
                source: configInput(config, "solutionSource"),
                importTimeoutMinutes: configInput(config, "solutionImportTimeoutMinutes"),
                retainOnDelete: configInput(config, "retainSolutionOnDelete"),
                expectedSha256:
                    config.solutionSha256 === undefined ? undefined : asConfigured(config, "solutionSha256", config.solutionSha256),
            },
            { parent: this },
        );

        this.leadDestination = pulumi.output("Dynamics 365 Customer Engagement");
        this.instanceUrl = pulumi.output(instanceUrl);
        this.contactEmails = pulumi.output(asConfigured(config, "contactEmails", config.contactEmails.join(";")));
        const common = { leadDestination: this.leadDestination, instanceUrl: this.instanceUrl };
        // The Dataverse user the lead service writes as, whichever way it came to exist.
        let systemUser: pulumi.CustomResource & { systemUserId: pulumi.Output<string>; warnings?: pulumi.Output<string[]> };
        let azureAd: { identity: AzureAdApp; tenantId: pulumi.Output<string> } | undefined;
        if (config.authMethod === "office365") {
            const account = config.serviceAccount;
            if (!account) throw new Error("authMethod office365 needs the serviceAccount* config keys");
            const serviceAccount = new Office365ServiceAccount(
                `${name}-o365`,
                {
                    userPrincipalName: asConfigured(config, "serviceAccountUserPrincipalName", account.userPrincipalName),
                    displayName: configInput(config, "appDisplayName"),
                    usageLocation: asConfigured(config, "serviceAccountUsageLocation", account.usageLocation),
                    passwordRotationDays: account.passwordRotationDays,
                    licenseSkuPartNumber: asConfigured(config, "serviceAccountLicenseSku", account.licenseSkuPartNumber),
                },
                { parent: this },
            );
            // Dataverse makes the user itself once the licence is assigned; this waits for it.
            systemUser = new SyncedUser(
                `${name}-synced-user`,
                {
                    instanceUrl,
                    objectId: serviceAccount.objectId,
                    userPrincipalName: serviceAccount.userPrincipalName,
                    licenseSkuId: serviceAccount.licenseSkuId,
                },
                { parent: this, dependsOn: [serviceAccount] },
            );
            this.authenticationMethod = pulumi.output("Office 365");
            this.connectionDetails = {
                ...common,
                authenticationMethod: this.authenticationMethod,
                userName: serviceAccount.userPrincipalName,
                password: serviceAccount.password,
                passwordRenewalDate: serviceAccount.passwordRenewalDate,
                contactEmails: this.contactEmails,
            };
        } else {
            const identity = new AzureAdApp(
                `${name}-aad`,
                {
                    displayName: configInput(config, "appDisplayName"),
                    signInAudience: configInput(config, "signInAudience"),
                    redirectUri: configInput(config, "redirectUri"),
                    grantAdminConsent: config.grantAdminConsent,
                    clientSecretRotationDays: config.clientSecretRotationDays,
                },
                { parent: this },
            );
            // Dataverse accepts the user only once the app's service principal exists in the tenant.
            systemUser = new ApplicationUser(
                `${name}-app-user`,
                {
                    instanceUrl,
                    applicationId: identity.applicationId,
                    businessUnitId: asConfigured(config, "businessUnitId", config.businessUnitId ?? ""),
                },
                { parent: this, dependsOn: [identity] },
            );
            azureAd = { identity, tenantId: azuread.getClientConfigOutput({ parent: this }).tenantId };
            this.authenticationMethod = pulumi.output("Azure Active Directory");
            this.connectionDetails = {
                ...common,
                authenticationMethod: this.authenticationMethod,
                applicationId: identity.applicationId,
                directoryId: azureAd.tenantId,
                clientSecret: identity.clientSecret,
                clientSecretEndDate: identity.clientSecretEndDate,
                contactEmails: this.contactEmails,
            };
        }

        // The role comes with the solution; an import can reset it, so the privileges follow its version.
        const roleAssignment = new RoleAssignment(
            `${name}-role-assignment`,
            {
                instanceUrl,
                systemUserId: systemUser.systemUserId,
                roleName,
            },
            { parent: this, dependsOn: [solution] },
        );
        const rolePrivileges = new RolePrivileges(
            `${name}-role-privileges`,
            {
                instanceUrl,
                roleName,
                privileges: configInput(config, "rolePrivileges"),
                solutionVersion: solution.installedVersion,
            },
            { parent: this },
        );

        if (azureAd) {
            const { identity, tenantId } = azureAd;
            if (config.validateOnUp) {
                // Partner Center's "Validate", once the user holds the role with its privileges.
                const validation = new LeadValidation(
                    `${name}-validation`,
                    {
                        instanceUrl,
                        tenantId,
                        applicationId: identity.applicationId,
                        clientSecret: identity.clientSecret,
                        clientSecretEndDate: identity.clientSecretEndDate,
                        roleId: roleAssignment.roleId,
                        privileges: configInput(config, "rolePrivileges"),
                        solutionVersion: solution.installedVersion,
                    },
                    { parent: this, dependsOn: [roleAssignment, rolePrivileges] },
                );
                this.notices.validatedAt = validation.validatedAt;
            }
            if (config.keyVaultId) {
                const handoff = new KeyVaultHandoff(
                    `${name}-key-vault`,
                    {
                        keyVaultId: config.keyVaultId,
                        applicationId: identity.applicationId,
                        clientSecret: identity.clientSecret,
                        clientSecretEndDate: identity.clientSecretEndDate,
                    },
                    { parent: this },
                );
                this.notices.clientSecretKeyVaultUri = handoff.secretUri;
            }
        }

        this.systemUserId = systemUser.systemUserId;
        this.solutionVersion = solution.installedVersion;
        this.warnings = pulumi
            .all([solution.warnings, systemUser.warnings, roleAssignment.warnings, rolePrivileges.warnings])
            .apply((lists) => lists.flatMap((list) => list ?? []));
        this.registerOutputs({
            ...this.connectionDetails,
            ...this.notices,
            systemUserId: this.systemUserId,
            solutionVersion: this.solutionVersion,
            warnings: this.warnings,
        });
    }
}
