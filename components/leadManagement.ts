import * as pulumi from "@pulumi/pulumi";
import * as azuread from "@pulumi/azuread";
import { asConfigured, configInput, StackConfig } from "./config";
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
    /** What `allowElevatedPrivileges` let through beyond the guide; undefined while the stack stays within it. */
    public readonly elevatedPrivileges?: pulumi.Output<string>;

    constructor(name: string, args: LeadManagementArgs, opts?: pulumi.ComponentResourceOptions) {
        // The one place that still refuses the Office 365 path: config accepts and validates its keys, and this
        // guard goes when the service-account identity layer (issue 12) is wired in below.
        if (args.config.authMethod === "office365") {
            throw new Error(`lead-management:authMethod "office365" is not supported yet; use "azureAD" (the guide's recommended path)`);
        }
        super("leadmanagement:index:LeadManagement", name, {}, opts);
        const { config } = args;
        // Every config value passed to a resource goes through configInput/asConfigured, so a key stored with
        // `pulumi config set --secret` stays a secret in inputs, state and diffs. Values that decide which resources
        // exist or when a secret rotates (grantAdminConsent, clientSecretRotationDays) cannot be Outputs.
        const instanceUrl = configInput(config, "instanceUrl");
        const roleName = configInput(config, "leadWriterRoleName");

        if (config.elevatedPrivileges.length > 0) {
            // Printed by the program, so it shows in every preview and up (and in a PR's preview comment).
            pulumi.log.warn(
                `allowElevatedPrivileges is true: the lead service's user gets more than the guide asks for: ${config.elevatedPrivileges.join("; ")}`,
                this,
            );
        }

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

        // Dataverse accepts the user only once the app's service principal exists in the tenant.
        const appUser = new ApplicationUser(
            `${name}-app-user`,
            {
                instanceUrl,
                applicationId: identity.applicationId,
                businessUnitId: asConfigured(config, "businessUnitId", config.businessUnitId ?? ""),
            },
            { parent: this, dependsOn: [identity] },
        );

        // The role comes with the solution; an import can reset it, so the privileges follow its version.
        new RoleAssignment(
            `${name}-role-assignment`,
            {
                instanceUrl,
                systemUserId: appUser.systemUserId,
                roleName,
            },
            { parent: this, dependsOn: [solution] },
        );
        new RolePrivileges(
            `${name}-role-privileges`,
            {
                instanceUrl,
                roleName,
                privileges: configInput(config, "rolePrivileges"),
                solutionVersion: solution.installedVersion,
            },
            { parent: this },
        );

        this.leadDestination = pulumi.output("Dynamics 365 Customer Engagement");
        this.instanceUrl = pulumi.output(instanceUrl);
        this.authenticationMethod = pulumi.output("Azure Active Directory");
        this.applicationId = identity.applicationId;
        this.directoryId = azuread.getClientConfigOutput({ parent: this }).tenantId;
        this.clientSecret = identity.clientSecret;
        this.clientSecretEndDate = identity.clientSecretEndDate;
        this.contactEmails = pulumi.output(asConfigured(config, "contactEmails", config.contactEmails.join(";")));
        this.systemUserId = appUser.systemUserId;
        this.solutionVersion = solution.installedVersion;
        if (config.elevatedPrivileges.length > 0) {
            this.elevatedPrivileges = pulumi.output(config.elevatedPrivileges.join("; "));
        }
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
            elevatedPrivileges: this.elevatedPrivileges,
        });
    }
}
