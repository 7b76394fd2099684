import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import {
    asConfigured,
    ConfigError,
    ConfigKey,
    configInput,
    CONFIG_KEYS,
    loadStackConfig,
    parseStackConfig,
    RawConfig,
} from "../components/config";
import { GUIDE_ROLE_PRIVILEGES, GUIDE_SOLUTION_URL } from "../components/guide";
import { redactUrl } from "../components/redact";
import { installMocks, settle } from "./support/pulumiMocks";

const valid: RawConfig = {
    instanceUrl: "https://contoso.crm.dynamics.com",
    contactEmails: "leads@contoso.com; sales@contoso.com",
};
const office365: RawConfig = {
    ...valid,
    authMethod: "office365",
    serviceAccountUserPrincipalName: "lead-writer@contoso.onmicrosoft.com",
    serviceAccountUsageLocation: "US",
};

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "config-test-"));
const solutionZip = path.join(scratch, "lead-writer.zip");
fs.writeFileSync(solutionZip, "PK\u0003\u0004 not really a zip: config only checks that the file is there");
const directoryZip = path.join(scratch, "folder.zip");
fs.mkdirSync(directoryZip);
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

function problemsOf(raw: RawConfig, secretKeys: ConfigKey[] = []): readonly string[] {
    try {
        parseStackConfig(raw, "lead-management", secretKeys);
    } catch (err) {
        expect(err).toBeInstanceOf(ConfigError);
        return (err as ConfigError).problems;
    }
    throw new Error("expected the config to be rejected");
}

const VAULT = "/subscriptions/aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee/resourceGroups/leads-rg/providers/Microsoft.KeyVault/vaults";
const REQUIRED = /is required \(pulumi config set lead-management:\w+ <value>\)/;
const BLANK = /is blank; set a value or remove the key/;
const BOOLEAN = /is not a boolean; expected true or false/;

/**
 * Every key with each kind of bad value: missing where required, blank, the wrong type, out of range, malformed.
 * The base config is the valid Azure AD one unless a row names another.
 */
const badValues: [ConfigKey, string | undefined, RegExp, RawConfig?][] = [
    ["instanceUrl", undefined, REQUIRED],
    ["instanceUrl", "", REQUIRED],
    ["instanceUrl", "   ", BLANK],
    ["instanceUrl", "42", /not a URL; expected https:\/\/<org>\.crm<N>\.dynamics\.com/],
    ["instanceUrl", "contoso.crm.dynamics.com", /not a URL/],
    ["instanceUrl", "http://contoso.crm.dynamics.com", /must use https/],
    ["instanceUrl", "https://contoso.example.com", /host "contoso\.example\.com" is not a Dynamics 365 instance/],
    ["instanceUrl", "https://contoso.crm.dynamics.com/main.aspx", /origin only/],

    ["authMethod", "  ", BLANK],
    ["authMethod", "aad", /"aad" is not one of "azureAD", "office365"/],
    ["authMethod", "AzureAD", /is not one of/],

    ["contactEmails", undefined, REQUIRED],
    ["contactEmails", " \t ", BLANK],
    ["contactEmails", " ; ", /is empty/],
    [
        "contactEmails",
        "leads@contoso.com, sales@contoso.com",
        /has invalid address\(es\) "leads@contoso\.com, sales@contoso\.com" \(a local part/,
    ],
    ["contactEmails", '"x"@y..z', /""x"@y\.\.z" \(a quoted local part/],
    ["contactEmails", "leads@contoso..com", /\(an empty domain label/],
    ["contactEmails", "leads@.contoso.com", /\(an empty domain label/],
    ["contactEmails", "leads@contoso.com.", /\(an empty domain label/],
    ["contactEmails", "leads@-contoso.com", /domain label "-contoso"/],
    ["contactEmails", "leads@contoso-.com", /domain label "contoso-"/],
    ["contactEmails", "leads@contoso.c", /a top-level domain that is not two or more letters/],
    ["contactEmails", "leads@contoso.c0m", /a top-level domain that is not two or more letters/],
    ["contactEmails", "leads@contoso", /a domain without a top-level domain/],
    ["contactEmails", ".leads@contoso.com", /a leading, trailing or doubled dot/],
    ["contactEmails", "lead..s@contoso.com", /a leading, trailing or doubled dot/],
    ["contactEmails", "leads.@contoso.com", /a leading, trailing or doubled dot/],
    ["contactEmails", "@contoso.com", /not of the form local@domain/],
    ["contactEmails", "leads@contoso.com;sales@contoso.com;LEADS@Contoso.com", /lists "LEADS@Contoso\.com" more than once/],

    ["appDisplayName", "   ", BLANK],
    ["appDisplayName", "x".repeat(121), /is 121 characters long; at most 120 are allowed/],

    ["signInAudience", " ", BLANK],
    ["signInAudience", "AzureADandPersonalMicrosoftAccount", /is not one of "AzureADMyOrg", "AzureADMultipleOrgs"/],

    ["redirectUri", "  ", BLANK],
    ["redirectUri", "localhost/auth", /is not a URL/],
    ["redirectUri", "http://contosoapp1/auth", /must use https/],
    ["redirectUri", "https://localhost/auth#state", /has a fragment \(#…\), which Azure AD does not allow/],
    ["redirectUri", "https://localhost/auth#", /has a fragment/],
    ["redirectUri", "https://*.contoso.com/auth", /has a wildcard/],
    ["redirectUri", "https://admin:hunter2@localhost/auth", /must not carry a user name or password/],
    ["redirectUri", `https://localhost/${"a".repeat(250)}`, /Azure AD allows at most 256/],

    ["grantAdminConsent", " ", BLANK],
    ["grantAdminConsent", "yes", BOOLEAN],
    ["grantAdminConsent", "1", BOOLEAN],

    ["clientSecretRotationDays", " ", BLANK],
    ["clientSecretRotationDays", "half a year", /is not a whole number of days; expected 7 to 365/],
    ["clientSecretRotationDays", "90.5", /"90\.5" is not a whole number of days/],
    ["clientSecretRotationDays", "-30", /is not a whole number of days/],
    ["clientSecretRotationDays", "6", /6 days is out of range; expected 7 to 365/],
    ["clientSecretRotationDays", "400", /400 days is out of range; expected 7 to 365/],

    ["leadWriterRoleName", "   ", BLANK],
    ["leadWriterRoleName", "x".repeat(101), /at most 100 are allowed/],
    ["leadWriterRoleName", "System Administrator", /"System Administrator" is a built-in administrative role.*allowElevatedPrivileges/],
    ["leadWriterRoleName", "  system   CUSTOMIZER ", /"system {3}CUSTOMIZER" is a built-in administrative role/],
    ["leadWriterRoleName", "Delegate", /built-in administrative role/],
    ["leadWriterRoleName", "Service Writer", /built-in administrative role/],

    ["businessUnitId", "  ", BLANK],
    ["businessUnitId", "root", /"root" is not a GUID/],

    ["solutionSource", " ", BLANK],
    ["solutionSource", "ftp://example.com/s.zip", /must use https/],
    ["solutionSource", "http://example.com/s.zip", /must use https/],
    ["solutionSource", "https://user:pass@example.com/s.zip", /must not carry a user name or password/],
    ["solutionSource", "./solution.tar", /neither an https URL nor a path to a \.zip file/],
    ["solutionSource", "./vendor/missing.zip", /"\.\/vendor\/missing\.zip" does not exist \(relative paths start at the project directory/],
    ["solutionSource", directoryZip, /is not a file/],

    ["solutionSha256", " ", BLANK],
    ["solutionSha256", "abc123", /is not a SHA-256 digest; expected 64 hexadecimal digits/],
    ["solutionSha256", "a".repeat(63), /is not a SHA-256 digest/],
    ["solutionSha256", "g".repeat(64), /is not a SHA-256 digest/],

    ["solutionImportTimeoutMinutes", " ", BLANK],
    ["solutionImportTimeoutMinutes", "soon", /is not a whole number of minutes/],
    ["solutionImportTimeoutMinutes", "0", /0 minutes is out of range; expected 1 to 240/],
    ["solutionImportTimeoutMinutes", "241", /241 minutes is out of range/],

    ["retainSolutionOnDelete", " ", BLANK],
    ["retainSolutionOnDelete", "1", BOOLEAN],

    ["rolePrivileges", "  ", BLANK],
    ["rolePrivileges", "prvReadAsyncOperation", /is not JSON/],
    ["rolePrivileges", "[]", /must be a non-empty list/],
    ["rolePrivileges", '{"name":"prvReadAsyncOperation","depth":"Global"}', /must be a non-empty list/],
    ["rolePrivileges", "[1]", /\[0\] must be an object/],
    [
        "rolePrivileges",
        '[{"name":"prvReadAsyncOperation","depth":"Global","access":"Write"}]',
        /\[0\] has unknown field\(s\) "access"; only "name" and "depth" are read/,
    ],
    ["rolePrivileges", '[{"name":"ReadAsyncOperation","depth":"Global"}]', /\[0\]\.name must be a privilege name/],
    ["rolePrivileges", '[{"name":7,"depth":"Global"}]', /\[0\]\.name must be a privilege name/],
    [
        "rolePrivileges",
        '[{"name":"prvReadAsyncOperation","depth":"Organization"}]',
        /\[0\]\.depth must be one of "Basic", "Local", "Deep", "Global"/,
    ],
    [
        "rolePrivileges",
        '[{"name":"prvReadAsyncOperation","depth":"Global"},{"name":"prvreadasyncoperation","depth":"Basic"}]',
        /\[1\] names "prvreadasyncoperation" twice/,
    ],
    [
        "rolePrivileges",
        '[{"name":"prvAssignRole","depth":"Global"}]',
        /beyond the guide's privileges: prvAssignRole at Global \(not one of the guide's six\)/,
    ],
    [
        "rolePrivileges",
        '[{"name":"prvCreateUser","depth":"Basic"}]',
        /prvCreateUser at Basic \(not one of the guide's six\).*allowElevatedPrivileges/,
    ],
    [
        "rolePrivileges",
        '[{"name":"prvReadUserEntityUISettings","depth":"Global"}]',
        /prvReadUserEntityUISettings at Global \(the guide asks for Basic\)/,
    ],
    [
        "rolePrivileges",
        '[{"name":"prv-Read","depth":"Basic"}]',
        /\[0\]\.name must be a privilege name/,
        { ...valid, allowElevatedPrivileges: "true" },
    ],

    ["allowElevatedPrivileges", " ", BLANK],
    ["allowElevatedPrivileges", "yes", BOOLEAN],

    ["validateOnUp", " ", BLANK],
    ["validateOnUp", "on", BOOLEAN],

    ["keyVaultId", " ", BLANK],
    ["keyVaultId", "contoso-leads", /is not a Key Vault resource id; expected \/subscriptions\/<subscription id>\/resourceGroups/],
    ["keyVaultId", "https://contoso-leads.vault.azure.net/", /is not a Key Vault resource id/],
    ["keyVaultId", `${VAULT}/contoso-leads/secrets/x`, /is not a Key Vault resource id/],
    [
        "keyVaultId",
        VAULT.replace("aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee", "my-subscription") + "/contoso-leads",
        /subscription "my-subscription" is not a GUID/,
    ],
    ["keyVaultId", VAULT.replace("leads-rg", "leads.") + "/contoso-leads", /resource group "leads\." is not a valid name/],
    ["keyVaultId", VAULT.replace("leads-rg", "x".repeat(91)) + "/contoso-leads", /resource group "x+" is not a valid name/],
    ["keyVaultId", `${VAULT}/kv`, /vault name "kv" is not valid \(3-24/],
    ["keyVaultId", `${VAULT}/${"k".repeat(25)}`, /vault name "k{25}" is not valid/],
    ["keyVaultId", `${VAULT}/1contoso`, /vault name "1contoso" is not valid/],
    ["keyVaultId", `${VAULT}/contoso--leads`, /vault name "contoso--leads" is not valid/],
    ["keyVaultId", `${VAULT}/contoso-leads-`, /vault name "contoso-leads-" is not valid/],
    ["keyVaultId", `${VAULT}/contoso_leads`, /vault name "contoso_leads" is not valid/],
    ["keyVaultId", `${VAULT}/contoso-leads`, /works with authMethod "azureAD" only/, office365],
    ["validateOnUp", "true", /works with authMethod "azureAD" only/, office365],

    ["serviceAccountUserPrincipalName", undefined, REQUIRED, { ...office365, serviceAccountUserPrincipalName: undefined }],
    ["serviceAccountUserPrincipalName", "  ", BLANK, office365],
    ["serviceAccountUserPrincipalName", "lead-writer", /"lead-writer" is not a user principal name; expected user@domain/, office365],
    ["serviceAccountUserPrincipalName", "lead@writer@contoso.com", /is not a user principal name/, office365],
    ["serviceAccountUserPrincipalName", "lead..writer@contoso.com", /has an invalid user name/, office365],
    ["serviceAccountUserPrincipalName", "lead writer@contoso.com", /has an invalid user name/, office365],
    ["serviceAccountUserPrincipalName", "lead-writer@contoso", /has a domain without a top-level domain/, office365],
    ["serviceAccountUserPrincipalName", "lead-writer@contoso..com", /has an empty domain label/, office365],
    ["serviceAccountUserPrincipalName", "lead-writer@contoso.com", /only authMethod "office365" uses it \(authMethod is "azureAD"\)/],

    ["serviceAccountUsageLocation", undefined, REQUIRED, { ...office365, serviceAccountUsageLocation: undefined }],
    ["serviceAccountUsageLocation", " ", BLANK, office365],
    ["serviceAccountUsageLocation", "us", /"us" is not an ISO 3166-1 alpha-2 country code; expected two upper-case letters/, office365],
    ["serviceAccountUsageLocation", "USA", /is not an ISO 3166-1 alpha-2 country code/, office365],
    ["serviceAccountUsageLocation", "US", /only authMethod "office365" uses it/],

    ["serviceAccountPasswordRotationDays", " ", BLANK, office365],
    ["serviceAccountPasswordRotationDays", "quarterly", /is not a whole number of days; expected 7 to 90/, office365],
    ["serviceAccountPasswordRotationDays", "6", /6 days is out of range; expected 7 to 90/, office365],
    ["serviceAccountPasswordRotationDays", "91", /91 days is out of range; expected 7 to 90/, office365],
    ["serviceAccountPasswordRotationDays", "30", /only authMethod "office365" uses it/],

    ["serviceAccountLicenseSku", " ", BLANK, office365],
    ["serviceAccountLicenseSku", "Dynamics 365 Sales", /"Dynamics 365 Sales" is not a SKU part number/, office365],
    ["serviceAccountLicenseSku", "DYN365-SALES", /is not a SKU part number/, office365],
    ["serviceAccountLicenseSku", "DYN365_ENTERPRISE_PLAN1", /only authMethod "office365" uses it/],
];

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
            clientSecretRotationDays: 180,
            leadWriterRoleName: "Microsoft Marketplace Lead Writer",
            businessUnitId: undefined,
            solutionSource: GUIDE_SOLUTION_URL,
            solutionSha256: undefined,
            solutionImportTimeoutMinutes: 30,
            retainSolutionOnDelete: false,
            rolePrivileges: [...GUIDE_ROLE_PRIVILEGES],
            allowElevatedPrivileges: false,
            elevatedPrivileges: [],
            validateOnUp: false,
            keyVaultId: undefined,
            serviceAccount: undefined,
            secretKeys: [],
        });
    });

    it("normalises instance URLs of any region to the origin", () => {
        expect(parseStackConfig({ ...valid, instanceUrl: "https://Contoso.crm4.dynamics.com/" }).instanceUrl).toBe(
            "https://contoso.crm4.dynamics.com",
        );
    });

    it("reports every bad key at once, in the order Pulumi.yaml lists them", () => {
        const problems = problemsOf({
            instanceUrl: "http://contoso.crm.dynamics.com",
            clientSecretRotationDays: "0",
            rolePrivileges: '[{"name":"prvAssignRole","depth":"Global"}]',
            leadWriterRoleName: "System Administrator",
        });
        expect(problems.map((p) => p.split(/[: ]/)[1])).toEqual([
            "instanceUrl",
            "contactEmails",
            "clientSecretRotationDays",
            "leadWriterRoleName",
            "rolePrivileges",
        ]);
        expect(problems[0]).toMatch(/^lead-management:instanceUrl: .*must use https/);
        expect(problems[1]).toMatch(/^lead-management:contactEmails is required/);
        expect(problems[2]).toMatch(/^lead-management:clientSecretRotationDays: 0 days is out of range; expected 7 to 365/);
    });

    it("refuses keys it does not read, suggesting the key a typo most likely meant", () => {
        expect(problemsOf({ ...valid, solutionSha: "ab", serviceAcountUserPrincipalName: "x@y.com", colour: "blue" })).toEqual([
            "lead-management:solutionSha is not a key this program reads; did you mean solutionSha256? (pulumi config rm lead-management:solutionSha)",
            "lead-management:serviceAcountUserPrincipalName is not a key this program reads; did you mean serviceAccountUserPrincipalName? (pulumi config rm lead-management:serviceAcountUserPrincipalName)",
            "lead-management:colour is not a key this program reads (pulumi config rm lead-management:colour)",
        ]);
    });

    it("has a bad-value row for every key it reads", () => {
        expect([...new Set(badValues.map(([key]) => key))].sort()).toEqual([...CONFIG_KEYS].sort());
    });

    it.each(badValues)("rejects %s = %j, naming the key", (key, value, message, base = valid) => {
        const problems = problemsOf({ ...base, [key]: value });
        expect(problems).toHaveLength(1);
        expect(problems[0]).toMatch(new RegExp(`^lead-management:${key}[ :]`));
        expect(problems[0]).toMatch(message);
    });

    it("accepts overrides of every optional key", () => {
        const config = parseStackConfig({
            ...valid,
            appDisplayName: "x".repeat(120),
            signInAudience: "AzureADMyOrg",
            redirectUri: "https://localhost/auth?tenant=contoso",
            grantAdminConsent: "true",
            clientSecretRotationDays: "90",
            leadWriterRoleName: "Lead Writer (custom)",
            businessUnitId: "AAAAAAAA-BBBB-4CCC-8DDD-EEEEEEEEEEEE",
            solutionSource: solutionZip,
            solutionSha256: "ABCDEF0123456789".repeat(4),
            retainSolutionOnDelete: "true",
            rolePrivileges: '[{"name":"prvReadAsyncOperation","depth":"Deep"}]',
            validateOnUp: "true",
            keyVaultId: `${VAULT}/contoso-leads`,
        });
        expect(config.appDisplayName).toHaveLength(120);
        expect(config.signInAudience).toBe("AzureADMyOrg");
        expect(config.redirectUri).toBe("https://localhost/auth?tenant=contoso");
        expect(config.grantAdminConsent).toBe(true);
        expect(config.clientSecretRotationDays).toBe(90);
        expect(config.leadWriterRoleName).toBe("Lead Writer (custom)");
        expect(config.businessUnitId).toBe("aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee");
        expect(config.solutionSource).toBe(solutionZip);
        expect(config.solutionSha256).toBe("abcdef0123456789".repeat(4));
        expect(config.retainSolutionOnDelete).toBe(true);
        expect(config.rolePrivileges).toEqual([{ name: "prvReadAsyncOperation", depth: "Deep" }]);
        expect(config.validateOnUp).toBe(true);
        expect(config.keyVaultId).toBe(`${VAULT}/contoso-leads`);
        expect(config.elevatedPrivileges).toEqual([]);
    });

    it("accepts ordinary addresses, sub-domains and plus-addressing", () => {
        const config = parseStackConfig({ ...valid, contactEmails: "o'brien+leads@mail.contoso.co.uk;Sales-Team@xn--bcher-kva.example" });
        expect(config.contactEmails).toEqual(["o'brien+leads@mail.contoso.co.uk", "Sales-Team@xn--bcher-kva.example"]);
    });

    describe("allowElevatedPrivileges", () => {
        it("lets an administrative role and privileges beyond the guide through, and lists each of them", () => {
            const config = parseStackConfig({
                ...valid,
                allowElevatedPrivileges: "true",
                leadWriterRoleName: "System Administrator",
                rolePrivileges: '[{"name":"prvAssignRole","depth":"Global"},{"name":"prvCreateUserEntityUISettings","depth":"Local"}]',
            });
            expect(config.allowElevatedPrivileges).toBe(true);
            expect(config.leadWriterRoleName).toBe("System Administrator");
            expect(config.elevatedPrivileges).toEqual([
                'lead-management:leadWriterRoleName "System Administrator" is a built-in administrative role',
                "lead-management:rolePrivileges grants prvAssignRole at Global (not one of the guide's six)",
                "lead-management:rolePrivileges grants prvCreateUserEntityUISettings at Local (the guide asks for Basic)",
            ]);
        });

        it("keeps secret values out of its notes, which become a plaintext output", () => {
            const config = parseStackConfig(
                {
                    ...valid,
                    allowElevatedPrivileges: "true",
                    leadWriterRoleName: "System Administrator",
                    rolePrivileges: '[{"name":"prvAssignRole","depth":"Global"}]',
                },
                "lead-management",
                ["leadWriterRoleName", "rolePrivileges"],
            );
            expect(config.elevatedPrivileges).toEqual([
                'lead-management:leadWriterRoleName "[secret]" is a built-in administrative role',
                "lead-management:rolePrivileges ([secret]) grants 1 privilege(s) beyond the guide",
            ]);
        });

        it("notes nothing when the stack stays within the guide", () => {
            expect(parseStackConfig({ ...valid, allowElevatedPrivileges: "true" }).elevatedPrivileges).toEqual([]);
        });

        it("accepts the guide's six at shallower depths without the override", () => {
            const shallow = GUIDE_ROLE_PRIVILEGES.map((g) => ({ name: g.name, depth: "Basic" }));
            expect(parseStackConfig({ ...valid, rolePrivileges: JSON.stringify(shallow) }).elevatedPrivileges).toEqual([]);
        });
    });

    describe("authMethod office365", () => {
        it("builds the service account from its keys, with the guide's 90 days and a Dynamics 365 Sales licence by default", () => {
            const config = parseStackConfig(office365);
            expect(config.authMethod).toBe("office365");
            expect(config.serviceAccount).toEqual({
                userPrincipalName: "lead-writer@contoso.onmicrosoft.com",
                usageLocation: "US",
                passwordRotationDays: 90,
                licenseSkuPartNumber: "DYN365_ENTERPRISE_SALES",
            });
        });

        it("takes a shorter rotation and another SKU, mixed-case part numbers included", () => {
            const config = parseStackConfig({
                ...office365,
                serviceAccountPasswordRotationDays: "30",
                serviceAccountLicenseSku: "Dynamics_365_for_Operations",
            });
            expect(config.serviceAccount).toMatchObject({ passwordRotationDays: 30, licenseSkuPartNumber: "Dynamics_365_for_Operations" });
        });

        it("has no service account on the Azure AD path, where the defaults the engine fills in are not an error", () => {
            const config = parseStackConfig({
                ...valid,
                serviceAccountUserPrincipalName: "",
                serviceAccountUsageLocation: "",
                serviceAccountPasswordRotationDays: "90",
                serviceAccountLicenseSku: "DYN365_ENTERPRISE_SALES",
            });
            expect(config.serviceAccount).toBeUndefined();
        });
    });

    describe("secrets in messages", () => {
        const sas = "sv=2024-11-04&sig=c2VjcmV0LXNhcy1zaWduYXR1cmU%3D";

        it("never quotes a URL's query string, secret or not", () => {
            const [problem] = problemsOf({ ...valid, solutionSource: `http://contoso.blob.core.windows.net/c/s.zip?${sas}` });
            expect(problem).toMatch(
                /^lead-management:solutionSource: "http:\/\/contoso\.blob\.core\.windows\.net\/c\/s\.zip\?<redacted>" must use https/,
            );
            expect(problem).not.toContain("sig=");
            expect(redactUrl(`https://h/p?${sas}#frag`)).toBe("https://h/p?<redacted>");
        });

        it("never quotes any part of a value stored as a secret", () => {
            const problems = problemsOf(
                { ...valid, contactEmails: "leads@contoso.com;private.person@contoso..com", leadWriterRoleName: "System Administrator" },
                ["contactEmails", "leadWriterRoleName"],
            );
            expect(problems).toHaveLength(2);
            expect(problems[0]).toMatch(/^lead-management:contactEmails: has invalid address\(es\) "\[secret\]"/);
            expect(problems[1]).toMatch(/^lead-management:leadWriterRoleName: "\[secret\]" is a built-in administrative role/);
            expect(problems.join("\n")).not.toMatch(/private\.person|leads@contoso|System Administrator/);
        });
    });

    describe("secret keys as resource inputs", () => {
        installMocks();

        it("reads which keys the stack stores as secrets, as the engine passes them", () => {
            pulumi.runtime.setAllConfig(
                {
                    "lead-management:instanceUrl": "https://contoso.crm.dynamics.com",
                    "lead-management:contactEmails": "leads@contoso.com",
                    "lead-management:solutionSource": "https://contoso.blob.core.windows.net/c/s.zip?sig=abc",
                    "lead-management:leadWriterRoleName": "Lead Writer",
                    "azuread:tenantId": "72f988bf-86f1-41af-91ab-2d7cd011db47",
                },
                ["lead-management:solutionSource", "lead-management:leadWriterRoleName"],
            );
            const config = loadStackConfig();
            expect(config.secretKeys).toEqual(["leadWriterRoleName", "solutionSource"]);
            expect(config.solutionSource).toBe("https://contoso.blob.core.windows.net/c/s.zip?sig=abc");
        });

        it("reads every key of the project's namespace, so a misspelt one is reported", () => {
            pulumi.runtime.setAllConfig({
                "lead-management:instanceUrl": "https://contoso.crm.dynamics.com",
                "lead-management:contactEmails": "leads@contoso.com",
                "lead-management:instanceURL": "https://contoso.crm.dynamics.com",
            });
            expect(() => loadStackConfig()).toThrow(
                /lead-management:instanceURL is not a key this program reads; did you mean instanceUrl\?/,
            );
        });

        it("falls back to the language host's PULUMI_CONFIG_SECRET_KEYS if the SDK stops exporting its test", () => {
            const runtime = pulumi.runtime as unknown as Record<string, unknown>;
            const sdkTest = runtime.isConfigSecret;
            expect(typeof sdkTest).toBe("function");
            pulumi.runtime.setAllConfig({
                "lead-management:instanceUrl": "https://contoso.crm.dynamics.com",
                "lead-management:contactEmails": "leads@contoso.com",
            });
            process.env.PULUMI_CONFIG_SECRET_KEYS = JSON.stringify(["lead-management:contactEmails"]);
            runtime.isConfigSecret = undefined;
            try {
                expect(loadStackConfig().secretKeys).toEqual(["contactEmails"]);
            } finally {
                runtime.isConfigSecret = sdkTest;
                delete process.env.PULUMI_CONFIG_SECRET_KEYS;
            }
        });

        it("wraps exactly the secret keys' values in a secret Output", async () => {
            const config = { ...parseStackConfig(valid, "lead-management", ["solutionSource", "businessUnitId"]) };
            const source = configInput(config, "solutionSource");
            expect(pulumi.Output.isInstance(source)).toBe(true);
            expect(await settle(source as pulumi.Output<string>)).toEqual({ value: GUIDE_SOLUTION_URL, secret: true });
            expect(await settle(asConfigured(config, "businessUnitId", "") as pulumi.Output<string>)).toEqual({ value: "", secret: true });
            expect(configInput(config, "instanceUrl")).toBe("https://contoso.crm.dynamics.com");
        });
    });
});
