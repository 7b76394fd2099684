import { ConfigError, GUIDE_ROLE_PRIVILEGES, GUIDE_SOLUTION_URL, parseStackConfig, RawConfig } from "../components/config";

const valid: RawConfig = {
    instanceUrl: "https://contoso.crm.dynamics.com",
    contactEmails: "leads@contoso.com; sales@contoso.com",
};

function problemsOf(raw: RawConfig): readonly string[] {
    try {
        parseStackConfig(raw);
    } catch (err) {
        expect(err).toBeInstanceOf(ConfigError);
        return (err as ConfigError).problems;
    }
    throw new Error("expected the config to be rejected");
}

describe("stack config", () => {
    it("fills the guide's defaults around the two required keys", () => {
        const config = parseStackConfig(valid);
        expect(config).toEqual({
            instanceUrl: "https://contoso.crm.dynamics.com",
            authMethod: "azureAD",
            contactEmails: ["leads@contoso.com", "sales@contoso.com"],
            appDisplayName: "Marketplace Lead Writer",
            signInAudience: "AzureADMultipleOrgs",
            redirectUri: "https://localhost/marketplace-leads/auth",
            grantAdminConsent: false,
            validateOnUp: false,
            clientSecretRotationDays: 180,
            leadWriterRoleName: "Microsoft Marketplace Lead Writer",
            businessUnitId: undefined,
            solutionSource: GUIDE_SOLUTION_URL,
            solutionImportTimeoutMinutes: 30,
            retainSolutionOnDelete: false,
            rolePrivileges: [...GUIDE_ROLE_PRIVILEGES],
        });
    });

    it("normalises instance URLs of any region to the origin", () => {
        expect(parseStackConfig({ ...valid, instanceUrl: "https://Contoso.crm4.dynamics.com/" }).instanceUrl).toBe(
            "https://contoso.crm4.dynamics.com",
        );
    });

    it("reports every bad key at once", () => {
        const problems = problemsOf({ instanceUrl: "http://contoso.crm.dynamics.com", clientSecretRotationDays: "0" });
        expect(problems).toHaveLength(3);
        expect(problems[0]).toMatch(/^lead-management:instanceUrl: .*must use https/);
        expect(problems[1]).toMatch(/^lead-management:contactEmails is required/);
        expect(problems[2]).toMatch(/^lead-management:clientSecretRotationDays: 0 days is out of range; expected 7 to 365/);
    });

    it.each([
        ["instanceUrl", "contoso.crm.dynamics.com", /instanceUrl: .*not a URL; expected https:\/\/<org>\.crm<N>\.dynamics\.com/],
        ["instanceUrl", "https://contoso.example.com", /instanceUrl: host "contoso\.example\.com" is not a Dynamics 365 instance/],
        ["instanceUrl", "https://contoso.crm.dynamics.com/main.aspx", /instanceUrl: .*origin only/],
        [
            "contactEmails",
            "leads@contoso.com, sales@contoso.com",
            /contactEmails: has invalid address\(es\) "leads@contoso\.com, sales@contoso\.com"; expected addresses separated by ';'/,
        ],
        ["contactEmails", " ; ", /contactEmails: is empty/],
        ["authMethod", "aad", /authMethod: "aad" is not one of "azureAD", "office365"/],
        ["authMethod", "office365", /authMethod: "office365" is not supported yet/],
        ["signInAudience", "AzureADandPersonalMicrosoftAccount", /signInAudience: .* is not one of "AzureADMyOrg", "AzureADMultipleOrgs"/],
        ["redirectUri", "http://contosoapp1/auth", /redirectUri: .*must use https/],
        ["grantAdminConsent", "yes", /grantAdminConsent: "yes" is not a boolean/],
        ["clientSecretRotationDays", "400", /clientSecretRotationDays: 400 days is out of range; expected 7 to 365/],
        ["clientSecretRotationDays", "90.5", /clientSecretRotationDays: "90\.5" is not a whole number of days/],
        ["businessUnitId", "root", /businessUnitId: "root" is not a GUID/],
        ["solutionSource", "ftp://example.com/s.zip", /solutionSource: .*must use https/],
        ["solutionSource", "./solution.tar", /solutionSource: .*neither an https URL nor a path to a \.zip file/],
        ["solutionImportTimeoutMinutes", "0", /solutionImportTimeoutMinutes: 0 minutes is out of range/],
        ["retainSolutionOnDelete", "1", /retainSolutionOnDelete: "1" is not a boolean/],
        ["rolePrivileges", "prvReadAsyncOperation", /rolePrivileges: is not JSON/],
        ["rolePrivileges", "[]", /rolePrivileges: must be a non-empty list/],
        ["rolePrivileges", '[{"name":"ReadAsyncOperation","depth":"Global"}]', /rolePrivileges: \[0\]\.name must be a privilege name/],
        [
            "rolePrivileges",
            '[{"name":"prvReadAsyncOperation","depth":"Organization"}]',
            /rolePrivileges: \[0\]\.depth must be one of "Basic", "Local", "Deep", "Global"/,
        ],
        [
            "rolePrivileges",
            '[{"name":"prvReadAsyncOperation","depth":"Global"},{"name":"prvreadasyncoperation","depth":"Basic"}]',
            /rolePrivileges: \[1\] names "prvreadasyncoperation" twice/,
        ],
    ])("rejects %s = %j, naming the key", (key, value, message) => {
        const problems = problemsOf({ ...valid, [key]: value });
        expect(problems).toHaveLength(1);
        expect(problems[0]).toMatch(new RegExp(`^lead-management:${key}`));
        expect(problems[0]).toMatch(message);
    });

    it("accepts overrides of every optional key", () => {
        const config = parseStackConfig({
            ...valid,
            signInAudience: "AzureADMyOrg",
            grantAdminConsent: "true",
            clientSecretRotationDays: "90",
            businessUnitId: "AAAAAAAA-BBBB-4CCC-8DDD-EEEEEEEEEEEE",
            solutionSource: "./vendor/lead-writer.zip",
            retainSolutionOnDelete: "true",
            rolePrivileges: '[{"name":"prvReadAsyncOperation","depth":"Deep"}]',
        });
        expect(config.signInAudience).toBe("AzureADMyOrg");
        expect(config.grantAdminConsent).toBe(true);
        expect(config.clientSecretRotationDays).toBe(90);
        expect(config.businessUnitId).toBe("aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee");
        expect(config.solutionSource).toBe("./vendor/lead-writer.zip");
        expect(config.retainSolutionOnDelete).toBe(true);
        expect(config.rolePrivileges).toEqual([{ name: "prvReadAsyncOperation", depth: "Deep" }]);
    });
});
