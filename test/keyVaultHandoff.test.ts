import * as pulumi from "@pulumi/pulumi";
import { installMocks, settle } from "./support/pulumiMocks";
import { MOCK_SECRET_VALUE } from "./support/mockValues";
import { PLAIN_STACK_CONFIG, runMockProgram } from "./support/providerHost";
import { epochSeconds, HANDOFF_SECRET_NAME, KeyVaultHandoff, parseKeyVaultId } from "../components/identity/keyVaultHandoff";

const run = installMocks();
const VAULT_ID = "/subscriptions/00000000-0000-4000-8000-000000000001/resourceGroups/rg-leads/providers/Microsoft.KeyVault/vaults/kv-leads";
const END_DATE = "2027-05-01T00:00:00.000Z";
const SECRET_SIG = "4dabf18193072939515e22adb298388d";

describe("KeyVaultHandoff", () => {
    let handoff: KeyVaultHandoff;
    beforeAll(async () => {
        handoff = new KeyVaultHandoff(
            "handoff",
            {
                keyVaultId: VAULT_ID,
                applicationId: "11111111-2222-4333-8444-555555555555",
                clientSecret: pulumi.secret(MOCK_SECRET_VALUE),
                clientSecretEndDate: END_DATE,
            },
            { transformations: [run.record] },
        );
        await settle(handoff.secretUri);
        await run.declared("handoff-secret");
    });

    it("writes the current client secret into the existing vault, expiring with it, with a content type saying what it is for", () => {
        const secret = run.resources.get("handoff-secret")!;
        expect(secret.type).toBe("azure-native:keyvault:Secret");
        expect(secret.parent).toBe("handoff");
        expect(run.resources.get("handoff")?.type).toBe("leadmanagement:identity:KeyVaultHandoff");
        expect(secret.inputs).toMatchObject({ resourceGroupName: "rg-leads", vaultName: "kv-leads", secretName: HANDOFF_SECRET_NAME });
        // The secret value makes the whole `properties` input secret.
        const wrapped = secret.inputs.properties as Record<string, unknown>;
        expect(wrapped[SECRET_SIG]).toBe("1b47061264138c4ac30d75fd1eb44270");
        const properties = wrapped.value as { value: unknown; contentType: string; attributes: { expires: number; enabled: boolean } };
        expect(properties.value).toBe(MOCK_SECRET_VALUE);
        expect(properties.attributes).toEqual({ enabled: true, expires: Date.parse(END_DATE) / 1000 });
        expect(properties.contentType).toMatch(
            /^Partner Center lead management: client secret of app 11111111-2222-4333-8444-555555555555/,
        );
    });

    it("keeps the value secret in state", () => {
        const opts = run.resources.get("handoff-secret")!.opts as pulumi.CustomResourceOptions;
        expect(opts.additionalSecretOutputs).toEqual(["properties"]);
    });

    it("gives the secret's URI, which is not itself secret", async () => {
        expect(await settle(handoff.secretUri)).toEqual({
            value: `https://kv-leads.vault.azure.net/secrets/${HANDOFF_SECRET_NAME}`,
            secret: false,
        });
    });

    it("refuses a keyVaultId that is not a vault's resource id, naming the key and the expected form", () => {
        expect(() => parseKeyVaultId("kv-leads")).toThrow(
            /keyVaultId "kv-leads" is not a Key Vault resource id; expected \/subscriptions\/<subscription-id>\/resourceGroups\/<group>\/providers\/Microsoft\.KeyVault\/vaults\/<name>/,
        );
        expect(() => parseKeyVaultId(VAULT_ID.replace("vaults", "managedHSMs"))).toThrow(/not a Key Vault resource id/);
        expect(parseKeyVaultId(VAULT_ID)).toEqual({
            subscriptionId: "00000000-0000-4000-8000-000000000001",
            resourceGroupName: "rg-leads",
            vaultName: "kv-leads",
        });
        expect(epochSeconds("1970-01-02T00:00:00Z")).toBe(86400);
    });
});

describe("the program with keyVaultId", () => {
    it("adds the Key Vault secret with its value wrapped as a secret, and exports its URI; none by default", async () => {
        const config = PLAIN_STACK_CONFIG;
        const report = await runMockProgram({ ...config, keyVaultId: VAULT_ID });
        expect(report.error).toBeUndefined();
        const secret = report.registrations.find((r) => r.type === "azure-native:keyvault:Secret")!;
        expect(secret).toBeDefined();
        expect((secret.inputs.properties as { value: unknown }).value).toEqual({
            [SECRET_SIG]: "1b47061264138c4ac30d75fd1eb44270",
            value: MOCK_SECRET_VALUE,
        });
        expect(secret.additionalSecretOutputs).toEqual(["properties"]);
        // The current secret of the two rotating ones.
        expect(
            secret.propertyDependencies.properties.some((urn) => /ApplicationPassword::lead-management-aad-secret-[01]$/.test(urn)),
        ).toBe(true);
        expect(report.outputs.clientSecretKeyVaultUri).toEqual({
            value: `https://kv-leads.vault.azure.net/secrets/${HANDOFF_SECRET_NAME}`,
            secret: false,
        });
        expect(report.outputs.clientSecret.secret).toBe(true);

        const plain = await runMockProgram(config);
        expect(plain.registrations.map((r) => r.type)).not.toContain("azure-native:keyvault:Secret");
        expect(plain.outputs).not.toHaveProperty("clientSecretKeyVaultUri");
    }, 90_000);
});
