import * as pulumi from "@pulumi/pulumi";
import { installMocks, settle } from "./support/pulumiMocks";
import { DYNAMICS_CRM_APP_ID, DYNAMICS_CRM_SP_OBJECT_ID, MOCK_SECRET_VALUE, USER_IMPERSONATION_SCOPE_ID } from "./support/mockValues";
import { AzureAdApp, secretRotation } from "../components/identity/azureAdApp";

const run = installMocks();
const DAY = 24 * 3600 * 1000;

function build(name: string, overrides: Partial<{ grantAdminConsent: boolean }> = {}): AzureAdApp {
    return new AzureAdApp(
        name,
        {
            displayName: "Marketplace Lead Writer",
            signInAudience: "AzureADMultipleOrgs",
            redirectUri: "https://contosoapp1/auth",
            grantAdminConsent: overrides.grantAdminConsent ?? false,
            clientSecretRotationDays: 180,
        },
        { transformations: [run.record] },
    );
}

describe("AzureAdApp", () => {
    let app: AzureAdApp;
    beforeAll(async () => {
        app = build("aad");
        await settle(app.clientSecret);
        await settle(app.applicationId);
    });

    it("declares exactly the app, its service principal and two rotating secrets, all children of the component", () => {
        const children = [...run.resources.values()].filter((r) => r.parent === "aad");
        expect(children.map((r) => [r.type, r.name]).sort()).toEqual([
            ["azuread:index/application:Application", "aad-app"],
            ["azuread:index/applicationPassword:ApplicationPassword", "aad-secret-0"],
            ["azuread:index/applicationPassword:ApplicationPassword", "aad-secret-1"],
            ["azuread:index/servicePrincipal:ServicePrincipal", "aad-sp"],
        ]);
        expect(run.resources.get("aad")?.type).toBe("leadmanagement:identity:AzureAdApp");
    });

    it("registers for any organizational directory with the redirect URI and Dynamics CRM user_impersonation", () => {
        const inputs = run.resources.get("aad-app")!.inputs;
        expect(inputs.signInAudience).toBe("AzureADMultipleOrgs");
        expect(inputs.web).toEqual({ redirectUris: ["https://contosoapp1/auth"] });
        expect(inputs.requiredResourceAccesses).toEqual([
            {
                resourceAppId: DYNAMICS_CRM_APP_ID,
                resourceAccesses: [{ id: USER_IMPERSONATION_SCOPE_ID, type: "Scope" }],
            },
        ]);
    });

    it("looks the Dynamics CRM ids up through data sources instead of declaring Microsoft's service principal", () => {
        const tokens = run.calls.map((c) => c.token);
        expect(tokens).toContain("azuread:index/getApplicationPublishedAppIds:getApplicationPublishedAppIds");
        expect(run.calls.find((c) => c.token === "azuread:index/getServicePrincipal:getServicePrincipal")?.inputs).toEqual({
            clientId: DYNAMICS_CRM_APP_ID,
        });
        const managedSps = [...run.resources.values()].filter((r) => r.type === "azuread:index/servicePrincipal:ServicePrincipal");
        expect(managedSps.map((r) => r.inputs.clientId)).toEqual(["11111111-2222-4333-8444-555555555555"]);
    });

    it("gives each secret an explicit end date and a rotation key, and marks its value secret", () => {
        const { slots } = secretRotation(new Date(), 180);
        for (const index of [0, 1]) {
            const secret = run.resources.get(`aad-secret-${index}`)!;
            expect(secret.inputs.applicationId).toBe("aad-app-id");
            expect(secret.inputs.endDate).toBe(slots[index].endDate);
            expect(secret.inputs.rotateWhenChanged).toEqual({ generation: String(slots[index].generation) });
            expect((secret.opts as pulumi.CustomResourceOptions).additionalSecretOutputs).toContain("value");
        }
    });

    it("exposes the current secret only as a secret output", async () => {
        const { value, secret } = await settle(app.clientSecret);
        expect(value).toBe(MOCK_SECRET_VALUE);
        expect(secret).toBe(true);
        expect((await settle(app.applicationId)).value).toBe("11111111-2222-4333-8444-555555555555");
    });

    it("declares no admin consent unless asked", async () => {
        expect([...run.resources.values()].some((r) => r.type.includes("DelegatedPermissionGrant"))).toBe(false);
        build("consenting", { grantAdminConsent: true });
        const grant = await run.declared("consenting-consent");
        expect(grant.type).toBe("azuread:index/servicePrincipalDelegatedPermissionGrant:ServicePrincipalDelegatedPermissionGrant");
        expect(grant.parent).toBe("consenting");
        expect(grant.inputs).toEqual({
            servicePrincipalObjectId: "sp-consenting-sp",
            resourceServicePrincipalObjectId: DYNAMICS_CRM_SP_OBJECT_ID,
            claimValues: ["user_impersonation"],
        });
    });
});

describe("secretRotation", () => {
    const days = 90;
    const periodStart = (p: number) => new Date(p * days * DAY);

    it("keeps the same secrets for the whole period, so a re-run changes nothing", () => {
        const early = secretRotation(new Date(periodStart(300).getTime() + 1000), days);
        const late = secretRotation(new Date(periodStart(301).getTime() - 1000), days);
        expect(late).toEqual(early);
    });

    it("renews one slot per period and leaves the previous secret valid for one more period", () => {
        const before = secretRotation(periodStart(300), days);
        const after = secretRotation(periodStart(301), days);
        expect(before.current).toBe(0);
        expect(after.current).toBe(1);
        // slot 0 is untouched by the rotation and still valid until the end of period 301
        expect(after.slots[0]).toEqual(before.slots[0]);
        expect(after.slots[0].endDate).toBe(periodStart(302).toISOString());
        // slot 1 is reissued and valid for two periods
        expect(after.slots[1].generation).toBe(301);
        expect(after.slots[1].endDate).toBe(periodStart(303).toISOString());
    });

    it("never exceeds two periods of lifetime", () => {
        const now = new Date("2026-11-27T20:00:00Z");
        for (const slot of secretRotation(now, 365).slots) {
            const lifetime = new Date(slot.endDate).getTime() - now.getTime();
            expect(lifetime).toBeGreaterThan(0);
            expect(lifetime).toBeLessThanOrEqual(2 * 365 * DAY);
        }
    });
});

// Keeps the compiler honest about the component's public surface.
const _typed: pulumi.Output<string> = undefined as unknown as AzureAdApp["clientSecretEndDate"];
void _typed;
