import * as pulumi from "@pulumi/pulumi";
import * as azuread from "@pulumi/azuread";
import { StackConfig } from "./config";
import { AzureAdApp } from "./identity/azureAdApp";
import { ApplicationUser } from "./dataverse/applicationUser";
import { RoleAssignment } from "./dataverse/roleAssignment";
import { RolePrivileges } from "./dataverse/rolePrivileges";
import { LeadWriterSolution } from "./dataverse/solution";

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
    /**
     * What a user must act on, from every Dataverse resource (a solution adopted rather than imported, a user that
     * was found disabled, grants beyond the guide's, other roles the user holds); empty when there is nothing.
     * Provider log lines reach no PR comment (pulumi/pulumi#6065), stack outputs do.
     */
    public readonly warnings: pulumi.Output<string[]>;

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
        const assignment = new RoleAssignment(
            `${name}-role-assignment`,
            {
                instanceUrl: config.instanceUrl,
                systemUserId: appUser.systemUserId,
                roleName: config.leadWriterRoleName,
            },
            { parent: this, dependsOn: [solution] },
        );
        const privileges = new RolePrivileges(
            `${name}-role-privileges`,
            {
                instanceUrl: config.instanceUrl,
                roleName: config.leadWriterRoleName,
                privileges: config.rolePrivileges,
                solutionVersion: solution.installedVersion,
            },
            { parent: this },
        );

        this.leadDestination = pulumi.output("Dynamics 365 Customer Engagement");
        this.instanceUrl = pulumi.output(config.instanceUrl);
        this.authenticationMethod = pulumi.output("Azure Active Directory");
        this.applicationId = identity.applicationId;
        this.directoryId = azuread.getClientConfigOutput({ parent: this }).tenantId;
        this.clientSecret = identity.clientSecret;
        this.clientSecretEndDate = identity.clientSecretEndDate;
        this.contactEmails = pulumi.output(config.contactEmails.join(";"));
        this.systemUserId = appUser.systemUserId;
        this.solutionVersion = solution.installedVersion;
        this.warnings = pulumi
            .all([solution.warnings, appUser.warnings, assignment.warnings, privileges.warnings])
            .apply((lists) => lists.flatMap((list) => list ?? []));
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
            warnings: this.warnings,
        });
    }
}
