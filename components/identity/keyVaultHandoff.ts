import * as pulumi from "@pulumi/pulumi";
import * as keyvault from "@pulumi/azure-native/keyvault";

/** The parts of a Key Vault's resource id. */
export interface KeyVaultReference {
    subscriptionId: string;
    resourceGroupName: string;
    vaultName: string;
}

const VAULT_ID =
    /^\/subscriptions\/([0-9a-f-]{36})\/resourceGroups\/([^/]+)\/providers\/Microsoft\.KeyVault\/vaults\/([a-zA-Z0-9-]{3,24})\/?$/i;

/** Splits `/subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.KeyVault/vaults/<name>`. */
export function parseKeyVaultId(id: string): KeyVaultReference {
    const match = VAULT_ID.exec(id.trim());
    if (!match) {
        throw new Error(
            `keyVaultId "${id}" is not a Key Vault resource id; expected /subscriptions/<subscription-id>/resourceGroups/<group>/providers/Microsoft.KeyVault/vaults/<name> (az keyvault show --name <name> --query id)`,
        );
    }
    return { subscriptionId: match[1].toLowerCase(), resourceGroupName: match[2], vaultName: match[3] };
}

/** Key Vault wants expiry as seconds since the epoch. */
export function epochSeconds(isoDate: string): number {
    const ms = Date.parse(isoDate);
    if (Number.isNaN(ms)) throw new Error(`"${isoDate}" is not a date`);
    return Math.floor(ms / 1000);
}

/** Name of the Key Vault secret that holds the client secret. */
export const HANDOFF_SECRET_NAME = "partner-center-lead-writer-client-secret";

/** Arguments of {@link KeyVaultHandoff}. */
export interface KeyVaultHandoffArgs {
    /** Resource id of an existing vault; it must be in the subscription azure-native deploys to. */
    readonly keyVaultId: string;
    /** Application (client) id of the app the secret belongs to, named in the content type. */
    readonly applicationId: pulumi.Input<string>;
    /** The client secret Partner Center should hold now. */
    readonly clientSecret: pulumi.Input<string>;
    /** When that secret expires (RFC 3339); becomes the Key Vault secret's expiry. */
    readonly clientSecretEndDate: pulumi.Input<string>;
}

/**
 * Hands the current client secret over through an existing Key Vault, so whoever fills in Partner Center's form
 * reads it from the vault instead of a terminal. Each rotation writes a new version of the same secret.
 */
export class KeyVaultHandoff extends pulumi.ComponentResource {
    /** URI of the Key Vault secret (latest version). */
    public readonly secretUri: pulumi.Output<string>;

    constructor(name: string, args: KeyVaultHandoffArgs, opts?: pulumi.ComponentResourceOptions) {
        super("leadmanagement:identity:KeyVaultHandoff", name, {}, opts);
        const vault = parseKeyVaultId(args.keyVaultId);

        const secret = new keyvault.Secret(
            `${name}-secret`,
            {
                resourceGroupName: vault.resourceGroupName,
                vaultName: vault.vaultName,
                secretName: HANDOFF_SECRET_NAME,
                properties: {
                    value: pulumi.secret(args.clientSecret),
                    contentType: pulumi.interpolate`Partner Center lead management: client secret of app ${args.applicationId} (Connection details → Client secret)`,
                    attributes: {
                        enabled: true,
                        expires: pulumi.output(args.clientSecretEndDate).apply(epochSeconds),
                    },
                },
            },
            // `properties` carries the value: keep the whole object secret in state, whatever the provider answers.
            { parent: this, additionalSecretOutputs: ["properties"] },
        );

        // The URI names the vault and the secret, not its value.
        this.secretUri = pulumi.unsecret(secret.properties.apply((p) => p.secretUri));
        this.registerOutputs({ secretUri: this.secretUri });
    }
}
