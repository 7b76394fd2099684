import * as pulumi from "@pulumi/pulumi";
import * as azuread from "@pulumi/azuread";
import { StackConfig } from "./config";
import { AzureAdApp } from "./identity/azureAdApp";
import { ApplicationUser } from "./dataverse/applicationUser";
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
    /** Partner Center's "Application (client) ID". */
    public readonly applicationId: pulumi.Output<string>;
    /** Partner Center's "Directory ID". */
    public readonly directoryId: pulumi.Output<string>;
    /** Partner Center's "Client secret" (secret). */
    public readonly clientSecret: pulumi.Output<string>;
    /** When the current client secret expires. */
    public readonly clientSecretEndDate: pulumi.Output<string>;
    /** Partner Center's "Contact email", addresses separated by ';'. */
    public readonly contactEmails: pulumi.Output<string>;
    /** The Dataverse application user the lead service writes as. */
    public readonly systemUserId: pulumi.Output<string>;
    /** Version of the Marketplace Lead Writer solution on the instance. */
    public readonly solutionVersion: pulumi.Output<string>;
    /** URI of the Key Vault secret holding the client secret; only with `keyVaultId`. */
    public readonly clientSecretKeyVaultUri?: pulumi.Output<string>;
    /** When `pulumi up` last wrote a test lead as the app; only with `validateOnUp`. */
    public readonly validatedAt?: pulumi.Output<string>;

    constructor(name: string, args: LeadManagementArgs, opts?: pulumi.ComponentResourceOptions) {
        super("leadmanagement:index:LeadManagement", name, {}, opts);
        const { config } = args;

        const identity = new AzureAdApp(
            `${name}-aad`,
            {
                displayName: config.appDisplayName,
                signInAudience: config.signInAudience,
                redirectUri: config.redirectUri,
                grantAdminConsent: config.grantAdminConsent,
                clientSecretRotationDays: config.clientSecretRotationDays,
            },
            { parent: this },
        );

        const solution = new LeadWriterSolution(
            `${name}-solution`,
            {
                instanceUrl: config.instanceUrl,
                source: config.solutionSource,
                importTimeoutMinutes: config.solutionImportTimeoutMinutes,
                retainOnDelete: config.retainSolutionOnDelete,
            },
            { parent: this },
        );

        // Dataverse accepts the user only once the app's service principal exists in the tenant.
        const appUser = new ApplicationUser(
            `${name}-app-user`,
            {
                instanceUrl: config.instanceUrl,
                applicationId: identity.applicationId,
                businessUnitId: config.businessUnitId ?? "",
            },
            { parent: this, dependsOn: [identity] },
        );

        // The role comes with the solution; an import can reset it, so the privileges follow its version.
        const roleAssignment = new RoleAssignment(
            `${name}-role-assignment`,
            {
                instanceUrl: config.instanceUrl,
                systemUserId: appUser.systemUserId,
                roleName: config.leadWriterRoleName,
            },
            { parent: this, dependsOn: [solution] },
        );
        const rolePrivileges = new RolePrivileges(
            `${name}-role-privileges`,
            {
                instanceUrl: config.instanceUrl,
                roleName: config.leadWriterRoleName,
                privileges: config.rolePrivileges,
                solutionVersion: solution.installedVersion,
            },
            { parent: this },
        );

        const tenantId = azuread.getClientConfigOutput({ parent: this }).tenantId;

        if (config.validateOnUp) {
            // Partner Center's "Validate", once the user holds the role with its privileges.
            const validation = new LeadValidation(
                `${name}-validation`,
                {
                    instanceUrl: config.instanceUrl,
                    tenantId,
                    applicationId: identity.applicationId,
                    clientSecret: identity.clientSecret,
                    clientSecretEndDate: identity.clientSecretEndDate,
                    roleId: roleAssignment.roleId,
                    privileges: config.rolePrivileges,
                    solutionVersion: solution.installedVersion,
                },
                { parent: this, dependsOn: [roleAssignment, rolePrivileges] },
            );
            this.validatedAt = validation.validatedAt;
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
            this.clientSecretKeyVaultUri = handoff.secretUri;
        }

        this.leadDestination = pulumi.output("Dynamics 365 Customer Engagement");
        this.instanceUrl = pulumi.output(config.instanceUrl);
        this.authenticationMethod = pulumi.output("Azure Active Directory");
        this.applicationId = identity.applicationId;
        this.directoryId = tenantId;
        this.clientSecret = identity.clientSecret;
        this.clientSecretEndDate = identity.clientSecretEndDate;
        this.contactEmails = pulumi.output(config.contactEmails.join(";"));
        this.systemUserId = appUser.systemUserId;
        this.solutionVersion = solution.installedVersion;
        this.registerOutputs({
            leadDestination: this.leadDestination,
            instanceUrl: this.instanceUrl,
            authenticationMethod: this.authenticationMethod,
            applicationId: this.applicationId,
            directoryId: this.directoryId,
            clientSecret: this.clientSecret,
            clientSecretEndDate: this.clientSecretEndDate,
            contactEmails: this.contactEmails,
            systemUserId: this.systemUserId,
            solutionVersion: this.solutionVersion,
            clientSecretKeyVaultUri: this.clientSecretKeyVaultUri,
            validatedAt: this.validatedAt,
        });
    }
}
