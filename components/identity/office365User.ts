import * as pulumi from "@pulumi/pulumi";
import * as azuread from "@pulumi/azuread";
import * as random from "@pulumi/random";
import { UserLicense } from "../graph/license";
import { rotationPeriod } from "./rotation";

/** Arguments of {@link Office365ServiceAccount}. */
export interface Office365ServiceAccountArgs {
    /** Sign-in name, `user@<verified domain>` (config `serviceAccountUserPrincipalName`). */
    readonly userPrincipalName: pulumi.Input<string>;
    /** Display name in the directory. */
    readonly displayName: pulumi.Input<string>;
    /** Two-letter country code; Microsoft 365 assigns no licence without one (config `serviceAccountUsageLocation`). */
    readonly usageLocation: pulumi.Input<string>;
    /** Days between password renewals; the guide asks for 90. */
    readonly passwordRotationDays: number;
    /** SKU part number of the Dynamics 365 licence (config `serviceAccountLicenseSku`). */
    readonly licenseSkuPartNumber: pulumi.Input<string>;
}

/**
 * The guide's Office 365 sign-in path: a directory user for Microsoft's lead service, a generated password renewed
 * at the start of every rotation period, and a Dynamics 365 licence, which is what makes Dataverse synchronise the
 * user. The password changes at once when renewed (one account has one password), so Partner Center must get the
 * new one right after the `pulumi up` that renewed it.
 */
export class Office365ServiceAccount extends pulumi.ComponentResource {
    /** Partner Center's "User name". */
    public readonly userPrincipalName: pulumi.Output<string>;
    /** Object id of the directory user. */
    public readonly objectId: pulumi.Output<string>;
    /** Partner Center's "Password" (secret). */
    public readonly password: pulumi.Output<string>;
    /** When the next `pulumi up` will renew the password (start of the next rotation period). */
    public readonly passwordRenewalDate: pulumi.Output<string>;
    /** Id of the licence's SKU in this tenant. */
    public readonly licenseSkuId: pulumi.Output<string>;

    constructor(name: string, args: Office365ServiceAccountArgs, opts?: pulumi.ComponentResourceOptions) {
        super("leadmanagement:identity:Office365ServiceAccount", name, {}, opts);

        const rotation = rotationPeriod(new Date(), args.passwordRotationDays);
        // A new period number is a new keeper, which replaces the password: re-running within a period changes nothing.
        const password = new random.RandomPassword(
            `${name}-password`,
            {
                length: 32,
                minLower: 2,
                minUpper: 2,
                minNumeric: 2,
                minSpecial: 2,
                // Characters Azure AD accepts that need no quoting in a form or a shell.
                overrideSpecial: "!#%*()-_=+[]{}:?",
                keepers: { period: String(rotation.period) },
            },
            { parent: this },
        );

        const user = new azuread.User(
            `${name}-user`,
            {
                userPrincipalName: args.userPrincipalName,
                displayName: args.displayName,
                usageLocation: args.usageLocation,
                password: password.result,
                // The lead service signs in without anyone at a keyboard: a forced change would lock it out.
                forcePasswordChange: false,
                // Renewal follows the rotation period, not the tenant's expiry policy, so the two cannot disagree.
                disablePasswordExpiration: true,
                accountEnabled: true,
            },
            { parent: this },
        );

        const license = new UserLicense(
            `${name}-license`,
            {
                userId: user.objectId,
                userPrincipalName: user.userPrincipalName,
                skuPartNumber: args.licenseSkuPartNumber,
            },
            { parent: this },
        );

        this.userPrincipalName = user.userPrincipalName;
        this.objectId = user.objectId;
        // RandomPassword already declares `result` a secret output; the wrap keeps it secret through any apply.
        this.password = pulumi.secret(password.result);
        this.passwordRenewalDate = pulumi.output(rotation.nextStart.toISOString());
        this.licenseSkuId = license.skuId;
        this.registerOutputs({
            userPrincipalName: this.userPrincipalName,
            objectId: this.objectId,
            password: this.password,
            passwordRenewalDate: this.passwordRenewalDate,
            licenseSkuId: this.licenseSkuId,
        });
    }
}
