import * as pulumi from "@pulumi/pulumi";
import * as azuread from "@pulumi/azuread";
import { StackConfig } from "./config";
import { AzureAdApp } from "./identity/azureAdApp";

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

    constructor(name: string, args: LeadManagementArgs, opts?: pulumi.ComponentResourceOptions) {
        super("leadmanagement:index:LeadManagement", name, {}, opts);
        const { config } = args;

        const identity = new AzureAdApp(`${name}-aad`, {
            displayName: config.appDisplayName,
            signInAudience: config.signInAudience,
            redirectUri: config.redirectUri,
            grantAdminConsent: config.grantAdminConsent,
            clientSecretRotationDays: config.clientSecretRotationDays,
        }, { parent: this });

        this.leadDestination = pulumi.output("Dynamics 365 Customer Engagement");
        this.instanceUrl = pulumi.output(config.instanceUrl);
        this.authenticationMethod = pulumi.output("Azure Active Directory");
        this.applicationId = identity.applicationId;
        this.directoryId = azuread.getClientConfigOutput({ parent: this }).tenantId;
        this.clientSecret = identity.clientSecret;
        this.clientSecretEndDate = identity.clientSecretEndDate;
        this.contactEmails = pulumi.output(config.contactEmails.join(";"));
        this.registerOutputs({
            leadDestination: this.leadDestination,
            instanceUrl: this.instanceUrl,
            authenticationMethod: this.authenticationMethod,
            applicationId: this.applicationId,
            directoryId: this.directoryId,
            clientSecret: this.clientSecret,
            clientSecretEndDate: this.clientSecretEndDate,
            contactEmails: this.contactEmails,
        });
    }
}
