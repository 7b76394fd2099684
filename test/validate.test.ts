/**
 * `npm run validate` end to end: the script signs in through the real @azure/identity ClientSecretCredential against
 * the emulated identity platform, then writes its test lead into the Dataverse emulator. Each failure class has its
 * own message and exit code. A success, a sign-in failure and a usage error run as `npm run validate` runs, in a child
 * process; the other cases run the script in this worker (test/support/validateRun.ts).
 */
import { randomUUID } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { Emulator, ROOT_BUSINESS_UNIT_ID } from "./emulator/server";
import { grantLeadWriterRole } from "./support/leadWriterRole";
import { IdentityPlatform } from "./emulator/identityPlatform";
import { EXIT_CODES } from "../components/validation/leadCheck";
import {
    expectTestLeadRoundTrip,
    identityRequest,
    resetValidateEmulators,
    startValidateEmulators,
    stopValidateEmulators,
    ValidateRun,
    validateRunsAgainst,
} from "./support/validateRun";

const INSTANCE = "https://contoso.crm.dynamics.com";
const TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const APP_ID = "3f2504e0-4f89-41d3-9a0c-0305e82c3301";
const SECRET = "Xy7~emulated.client-secret_value-0123456789";
const ADMIN_TOKEN = "deploying-identity-token";

let dataverse: Emulator;
let identity: IdentityPlatform;

type Run = ValidateRun;

const { validate, validateEndToEnd } = validateRunsAgainst(() => ({ identity, dataverse, adminToken: ADMIN_TOKEN }));

/** The JSON `pulumi stack output --json --show-secrets` prints for this stack. */
function stackOutputs(overrides: Record<string, string> = {}): string {
    return JSON.stringify({
        leadDestination: "Dynamics 365 Customer Engagement",
        instanceUrl: INSTANCE,
        authenticationMethod: "Azure Active Directory",
        applicationId: APP_ID,
        directoryId: TENANT,
        clientSecret: SECRET,
        clientSecretEndDate: "2027-05-01T00:00:00.000Z",
        contactEmails: "leads@contoso.com",
        ...overrides,
    });
}

/**
 * What `pulumi up` leaves behind: the app's application user holding the Lead Writer role with its lead privileges.
 * Each option takes one piece away, as a half-finished set-up would.
 */
function provision(options: { user?: boolean; disabled?: boolean; role?: boolean; withoutPrivilege?: string } = {}): string {
    const systemuserid = randomUUID();
    if (options.user === false) return systemuserid;
    dataverse.state.systemUsers.push({
        systemuserid,
        fullname: "# Marketplace Lead Writer",
        applicationid: APP_ID,
        accessmode: 4,
        businessunitid: ROOT_BUSINESS_UNIT_ID,
        isdisabled: options.disabled ?? false,
        deletedstate: 0,
        azureactivedirectoryobjectid: randomUUID(),
        internalemailaddress: "leadwriter@emulator.invalid",
    });
    if (options.role === false) return systemuserid;
    grantLeadWriterRole(dataverse, systemuserid, options.withoutPrivilege);
    return systemuserid;
}

function expectNoSecret(run: Run): void {
    expect(run.stdout + run.stderr).not.toContain(SECRET);
}

beforeAll(async () => {
    ({ dataverse, identity } = await startValidateEmulators());
}, 60_000);

afterAll(() => stopValidateEmulators({ dataverse, identity }));

beforeEach(() => {
    resetValidateEmulators({ dataverse, identity });
    identity.registerApp({ tenantId: TENANT, applicationId: APP_ID, secret: SECRET });
});

describe("npm run validate", () => {
    it("signs in as the app, writes the test lead as its application user, reads it back and deletes it as the deployer", async () => {
        const userId = provision();
        const run = await validateEndToEnd(["--stack-outputs", "-"], { stdin: stackOutputs() });
        expect(run.stderr).toBe("");
        expect(run.announced).toBe(1);
        expect(run.code).toBe(0);
        expect(run.stdout.trim().split("\n")).toHaveLength(1);
        expect(run.stdout).toMatch(
            new RegExp(
                `^OK: test lead MSFT_TEST_\\d{18} landed in ${INSTANCE} as application user ${userId} \\(app ${APP_ID}\\), then deleted`,
            ),
        );
        // The real MSAL flow: OpenID metadata, then the client-credentials grant.
        expect(identity.requests.map((r) => `${r.method} ${r.path} ${r.status}`)).toEqual([
            `GET /${TENANT}/v2.0/.well-known/openid-configuration 200`,
            `POST /${TENANT}/oauth2/v2.0/token 200`,
        ]);
        expect(identity.requests[1].form).toMatchObject({
            grant_type: "client_credentials",
            client_id: APP_ID,
            scope: `${INSTANCE}/.default`,
        });
        expectTestLeadRoundTrip(dataverse, userId);
        const posted = dataverse.requests.find((r) => r.method === "POST")!.body as Record<string, string>;
        const name = posted.lastname;
        expect(name).toMatch(/^MSFT_TEST_\d{18}$/);
        expect(posted).toMatchObject({
            firstname: name,
            lastname: name,
            companyname: name,
            jobtitle: name,
            description: name,
            emailaddress1: `${name}@test.com`,
        });
        expect(posted.subject.length).toBeLessThanOrEqual(300);
        expectNoSecret(run);
    }, 60_000);

    it("keeps the lead with --keep, owned by the application user, and answers --json", async () => {
        const userId = provision();
        const run = await validate(["--stack-outputs", "-", "--keep", "--json"], { stdin: stackOutputs() });
        expect(run.code).toBe(0);
        const result = JSON.parse(run.stdout) as { ok: boolean; deleted: boolean; leadId: string; systemUserId: string; testName: string };
        expect(result).toMatchObject({ ok: true, deleted: false, systemUserId: userId });
        expect(dataverse.state.leads).toHaveLength(1);
        expect(dataverse.state.leads[0]).toMatchObject({
            leadid: result.leadId,
            ownerid: userId,
            lastname: result.testName,
            jobtitle: result.testName,
        });
        expect(dataverse.requests.some((r) => r.method === "DELETE")).toBe(false);
        expectNoSecret(run);
    }, 60_000);

    it("takes the secret from LEAD_WRITER_CLIENT_SECRET and single fields from flags", async () => {
        provision();
        const run = await validate(["--instance-url", INSTANCE, "--app-id", APP_ID, "--tenant-id", TENANT], {
            env: { LEAD_WRITER_CLIENT_SECRET: SECRET },
        });
        expect(run.code).toBe(0);
        expect(run.stdout).toMatch(/^OK: test lead MSFT_TEST_/);
    }, 60_000);

    describe("each failure class has its own message and exit code", () => {
        const cases: {
            name: string;
            setUp: () => void;
            env?: Record<string, string>;
            outputs?: Record<string, string>;
            /** Run as `npm run validate` runs, in its own process (the others run in-process when this worker can). */
            endToEnd?: boolean;
            failure: keyof typeof EXIT_CODES;
            message: RegExp;
        }[] = [
            {
                name: "a wrong secret (AADSTS7000215)",
                setUp: () => provision(),
                outputs: { clientSecret: "an-old-secret-value" },
                endToEnd: true,
                failure: "secretRejected",
                message: /client secret of app .* was rejected \(AADSTS7000215.*Use the current clientSecret output/,
            },
            {
                name: "an expired secret (AADSTS7000222)",
                setUp: () => {
                    provision();
                    identity.registerApp({ tenantId: TENANT, applicationId: APP_ID, secret: SECRET, expired: true });
                },
                failure: "secretRejected",
                message: /client secret of app .* has expired \(AADSTS7000222\)\. Run 'pulumi up'/,
            },
            {
                name: "an app unknown in the tenant (AADSTS700016)",
                setUp: () => {
                    identity.reset();
                    identity.registerApp({ tenantId: TENANT, applicationId: randomUUID(), secret: SECRET });
                },
                failure: "appUnknown",
                message: new RegExp(
                    `App ${APP_ID} is unknown in tenant ${TENANT} \\(AADSTS700016\\)\\. Check that applicationId and directoryId`,
                ),
            },
            {
                name: "a directory id that names no tenant (AADSTS90002)",
                setUp: () => identity.reset(),
                failure: "appUnknown",
                message: new RegExp(`Tenant ${TENANT} was not found \\(AADSTS90002\\)\\. Check directoryId`),
            },
            {
                name: "no application user",
                setUp: () => provision({ user: false }),
                failure: "noApplicationUser",
                message: new RegExp(`${INSTANCE} has no application user for app ${APP_ID}\\. Run 'pulumi up'`),
            },
            {
                name: "a disabled application user",
                setUp: () => provision({ disabled: true }),
                failure: "noApplicationUser",
                message: /application user of app .* is disabled\. Enable it/,
            },
            {
                name: "no role (0x80042f09)",
                setUp: () => provision({ role: false }),
                failure: "noRole",
                message:
                    /has no security role in .* \(0x80042f09\)\. Run 'pulumi up' to assign the "Microsoft Marketplace Lead Writer" role/,
            },
            {
                name: "a missing privilege (403)",
                setUp: () => provision({ withoutPrivilege: "prvCreateLead" }),
                failure: "privilegeMissing",
                message: /may not create the test lead in .* \(403 0x80040231, missing prvCreateLead\)\. Check that the Lead Writer role/,
            },
        ];

        it.each(cases)(
            "$name",
            async ({ setUp, outputs, endToEnd, failure, message }) => {
                setUp();
                const run = await (endToEnd ? validateEndToEnd : validate)(["--stack-outputs", "-"], { stdin: stackOutputs(outputs) });
                expect(run.stderr).toMatch(new RegExp(`^FAILED \\(${failure}\\): `));
                expect(run.stderr).toMatch(message);
                expect(run.code).toBe(EXIT_CODES[failure]);
                expect(dataverse.state.leads).toEqual([]);
                expectNoSecret(run);
            },
            60_000,
        );

        it("an unreachable instance", async () => {
            // A port that was just free: nothing listens there.
            const closed = http.createServer();
            await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
            const { port } = closed.address() as AddressInfo;
            await new Promise((resolve) => closed.close(resolve));
            const run = await validate(["--stack-outputs", "-"], {
                stdin: stackOutputs(),
                env: { DATAVERSE_ENDPOINT: `http://127.0.0.1:${port}` },
            });
            expect(run.stderr).toMatch(
                /^FAILED \(instanceUnreachable\): https:\/\/contoso\.crm\.dynamics\.com could not be reached \(ECONNREFUSED\)/,
            );
            expect(run.stderr).toMatch(/Check instanceUrl/);
            expect(run.code).toBe(EXIT_CODES.instanceUnreachable);
        }, 60_000);

        it("exit codes differ between classes", () => {
            const codes = Object.values(EXIT_CODES);
            expect(new Set(codes).size).toBe(codes.length);
            expect(codes).not.toContain(0);
            expect(codes).not.toContain(2);
        });
    });

    describe("bad input is refused before any sign-in", () => {
        it("refuses a secret on the command line", async () => {
            const run = await validateEndToEnd(["--stack-outputs", "-", "--client-secret", SECRET], { stdin: stackOutputs() });
            expect(run.code).toBe(2);
            expect(run.stderr).toMatch(
                /--client-secret is not accepted: a secret on the command line ends up in shell history.*LEAD_WRITER_CLIENT_SECRET/,
            );
            expect(identity.requests).toEqual([]);
            expectNoSecret(run);
        }, 60_000);

        it("recognises stack outputs printed without --show-secrets", async () => {
            const run = await validate(["--stack-outputs", "-"], { stdin: stackOutputs({ clientSecret: "[secret]" }) });
            expect(run.code).toBe(2);
            expect(run.stderr).toMatch(
                /clientSecret: the stack outputs hold the masked value "\[secret\]"; run 'pulumi stack output --json --show-secrets'/,
            );
            expect(identity.requests).toEqual([]);
        }, 60_000);

        it("names every missing or malformed field", async () => {
            const run = await validate(["--stack-outputs", "-", "--app-id", "my-app"], {
                stdin: JSON.stringify({ instanceUrl: "https://contoso.example.com" }),
            });
            expect(run.code).toBe(2);
            expect(run.stderr).toMatch(/instanceUrl: host "contoso.example.com" is not a Dynamics 365 instance/);
            expect(run.stderr).toMatch(/applicationId: "my-app" is not a GUID/);
            expect(run.stderr).toMatch(/directoryId: no directoryId: pass --tenant-id/);
            expect(run.stderr).toMatch(/clientSecret: not in the stack outputs .* LEAD_WRITER_CLIENT_SECRET is not set/);
            expect(identity.requests).toEqual([]);
            expect(dataverse.requests).toEqual([]);
        }, 60_000);
    });
});

describe("the emulated identity platform", () => {
    const grant = (secret: string) => ({
        grant_type: "client_credentials",
        client_id: APP_ID,
        client_secret: secret,
        scope: `${INSTANCE}/.default`,
    });

    it("serves the OpenID metadata MSAL reads first, pointing at its own token endpoint", async () => {
        const { status, body } = await identityRequest(identity, "GET", `/${TENANT}/v2.0/.well-known/openid-configuration`);
        expect(status).toBe(200);
        expect(body).toMatchObject({
            token_endpoint: `${identity.authorityHost}/${TENANT}/oauth2/v2.0/token`,
            issuer: `${identity.authorityHost}/${TENANT}/v2.0`,
            authorization_endpoint: expect.stringMatching(/^https:\/\/127\.0\.0\.1:\d+\//),
            jwks_uri: expect.any(String),
        });
    });

    it("answers the client-credentials grant with a bearer token and its lifetime; the token acts as the app's user", async () => {
        const userId = provision();
        const { status, body } = await identityRequest(identity, "POST", `/${TENANT}/oauth2/v2.0/token`, grant(SECRET));
        expect(status).toBe(200);
        expect(body).toMatchObject({ token_type: "Bearer", expires_in: 3599, access_token: expect.any(String) });
        const whoAmI = await new Promise<Record<string, string>>((resolve, reject) => {
            http.get(`${dataverse.baseUrl}WhoAmI`, { headers: { Authorization: `Bearer ${String(body.access_token)}` } }, (res) => {
                const chunks: Buffer[] = [];
                res.on("data", (c: Buffer) => chunks.push(c));
                res.on("end", () => resolve(JSON.parse(Buffer.concat(chunks).toString("utf8")) as Record<string, string>));
            }).on("error", reject);
        });
        expect(whoAmI.UserId).toBe(userId);
    });

    it("answers a wrong secret 401 invalid_client AADSTS7000215, and never logs the secret", async () => {
        const { status, body } = await identityRequest(identity, "POST", `/${TENANT}/oauth2/v2.0/token`, grant("wrong"));
        expect(status).toBe(401);
        expect(body).toMatchObject({ error: "invalid_client", error_codes: [7000215] });
        expect(String(body.error_description)).toMatch(/^AADSTS7000215: Invalid client secret provided/);
        expect(JSON.stringify(identity.requests)).not.toContain("wrong");
    });
});
