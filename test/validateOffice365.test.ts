/**
 * `npm run validate` on the Office 365 method: the service account signs in with its password through the real
 * `@azure/identity` UsernamePasswordCredential (resource-owner password grant) against the emulated identity platform,
 * and writes its test lead as the Dataverse user synchronised from that account.
 *
 * The script end to end runs as `npm run validate` runs it, in a child process; the other cases run it in this worker
 * (test/support/validateRun.ts), and the failure classes go through the lead check core, each with its own account.
 */
import { randomUUID } from "node:crypto";
import { Emulator, ROOT_BUSINESS_UNIT_ID } from "./emulator/server";
import { grantLeadWriterRole } from "./support/leadWriterRole";
import { DATAVERSE_SAMPLE_PUBLIC_CLIENT_ID, IdentityPlatform, RegisteredUser } from "./emulator/identityPlatform";
import { clientFromEnvironment } from "../components/dataverse/client";
import {
    DATAVERSE_PUBLIC_CLIENT_ID,
    EXIT_CODES,
    LeadCheckError,
    LeadCheckFailure,
    LeadCheckTarget,
    runLeadCheck,
    ServiceAccountSignInTarget,
} from "../components/validation/leadCheck";
import {
    expectTestLeadRoundTrip,
    identityRequest,
    resetValidateEmulators,
    startValidateEmulators,
    stopValidateEmulators,
    validateRunsAgainst,
    withEnvironment,
} from "./support/validateRun";

const INSTANCE = "https://contoso.crm.dynamics.com";
const TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const DOMAIN = "contoso.onmicrosoft.com";
const USER = `lead-writer@${DOMAIN}`;
const PASSWORD = "Pw7!emulated-service-account-password_0123";
const ADMIN_TOKEN = "deploying-identity-token";

let dataverse: Emulator;
let identity: IdentityPlatform;

const { runEnvironment, validate, validateEndToEnd } = validateRunsAgainst(() => ({ identity, dataverse, adminToken: ADMIN_TOKEN }));

/** What the lead check core ended with for one target. */
type LeadCheckOutcome =
    { ok: true; systemUserId: string; deleted: boolean } | { ok: false; failure: string; exitCode: number; message: string };

/** The lead check core for each target in turn, as `npm run validate` runs it; the deployer deletes each lead that lands. */
function leadChecks(targets: LeadCheckTarget[]): Promise<LeadCheckOutcome[]> {
    return withEnvironment(runEnvironment(), async () => {
        const outcomes: LeadCheckOutcome[] = [];
        for (const target of targets) {
            try {
                const result = await runLeadCheck(target, {
                    cleanupClient: clientFromEnvironment(target.instanceUrl, { retry: { maxAttempts: 1 } }),
                    clientOptions: { retry: { maxAttempts: 1 } },
                });
                outcomes.push({ ok: true, systemUserId: result.systemUserId, deleted: result.deleted });
            } catch (err) {
                if (!(err instanceof LeadCheckError)) throw err;
                outcomes.push({ ok: false, failure: err.failure, exitCode: err.exitCode, message: err.message });
            }
        }
        return outcomes;
    });
}

/** What `pulumi stack output --json --show-secrets` prints for an `authMethod: office365` stack (index.ts). */
function stackOutputs(overrides: Record<string, string> = {}): string {
    return JSON.stringify({
        leadDestination: "Dynamics 365 Customer Engagement",
        instanceUrl: INSTANCE,
        authenticationMethod: "Office 365",
        userName: USER,
        password: PASSWORD,
        passwordRenewalDate: "2027-02-01T00:00:00.000Z",
        contactEmails: "leads@contoso.com",
        warnings: [],
        ...overrides,
    });
}

/** A directory account that can sign in with a password, as `pulumi up` leaves the service account. */
function account(userPrincipalName: string, flags: Partial<RegisteredUser> = {}): RegisteredUser {
    const user: RegisteredUser = { tenantId: TENANT, userPrincipalName, password: PASSWORD, objectId: randomUUID(), ...flags };
    identity.registerUser(user);
    return user;
}

/**
 * The account's Dataverse user as the directory synchronisation makes it (graph.ts `advanceDirectorySync`), holding
 * the Lead Writer role with its privileges. Each option takes one piece away, as a half-finished set-up would.
 */
function synchronise(user: RegisteredUser, options: { disabled?: boolean; role?: boolean; withoutPrivilege?: string } = {}): string {
    const systemuserid = randomUUID();
    dataverse.state.systemUsers.push({
        systemuserid,
        fullname: user.userPrincipalName.split("@")[0],
        applicationid: null,
        accessmode: 0,
        businessunitid: ROOT_BUSINESS_UNIT_ID,
        isdisabled: options.disabled ?? false,
        deletedstate: 0,
        azureactivedirectoryobjectid: user.objectId,
        internalemailaddress: user.userPrincipalName,
    });
    if (options.role === false) return systemuserid;
    grantLeadWriterRole(dataverse, systemuserid, options.withoutPrivilege);
    return systemuserid;
}

function expectNoPassword(text: string): void {
    expect(text).not.toContain(PASSWORD);
    expect(JSON.stringify(identity.requests)).not.toContain(PASSWORD);
}

beforeAll(async () => {
    ({ dataverse, identity } = await startValidateEmulators());
}, 60_000);

afterAll(() => stopValidateEmulators({ dataverse, identity }));

beforeEach(() => {
    resetValidateEmulators({ dataverse, identity });
});

describe("npm run validate, Office 365 method", () => {
    it("signs in as the service account with its password, writes the test lead as its Dataverse user and deletes it as the deployer", async () => {
        const userId = synchronise(account(USER));
        const result = await validateEndToEnd(["--stack-outputs", "-"], { stdin: stackOutputs() });
        expect(result.stderr).toBe("");
        expect(result.code).toBe(0);
        expect(result.stdout).toMatch(
            new RegExp(
                `^OK: test lead MSFT_TEST_\\d{18} landed in ${INSTANCE} as user ${userId} \\(service account ${USER}\\), then deleted`,
            ),
        );
        // The real MSAL flow, at the tenant the user name's domain names: OpenID metadata, then the password grant
        // through Microsoft's Dataverse public client, the password never logged.
        expect(identity.requests.map((r) => `${r.method} ${r.path} ${r.status}`)).toEqual([
            `GET /${DOMAIN}/v2.0/.well-known/openid-configuration 200`,
            `POST /${DOMAIN}/oauth2/v2.0/token 200`,
        ]);
        expect(identity.requests[1].form).toMatchObject({ grant_type: "password", client_id: DATAVERSE_PUBLIC_CLIENT_ID, username: USER });
        expect(identity.requests[1].form!.scope.split(" ")).toContain(`${INSTANCE}/.default`);
        expect(identity.requests[1].form).not.toHaveProperty("password");
        expectTestLeadRoundTrip(dataverse, userId);
        expectNoPassword(result.stdout + result.stderr);
    }, 60_000);

    it("takes the password from LEAD_WRITER_PASSWORD, the account and tenant from flags, and exits 16 when MFA blocks the sign-in", async () => {
        account("mfa@contoso.com", { mfaRequired: true });
        const result = await validate(["--instance-url", INSTANCE, "--user-name", "mfa@contoso.com", "--tenant-id", TENANT, "--json"], {
            env: { LEAD_WRITER_PASSWORD: PASSWORD },
        });
        expect(identity.requests.map((r) => `${r.method} ${r.path} ${r.status}`)).toEqual([
            `GET /${TENANT}/v2.0/.well-known/openid-configuration 200`,
            `POST /${TENANT}/oauth2/v2.0/token 400`,
        ]);
        expect(result.code).toBe(EXIT_CODES.signInBlocked);
        expect(JSON.parse(result.stdout)).toMatchObject({ ok: false, failure: "signInBlocked", exitCode: 16 });
        expect(result.stderr).toMatch(
            /^FAILED \(signInBlocked\): Service account mfa@contoso\.com may not sign in without a person present \(AADSTS50076: multi-factor authentication required\)\. .*exclude this one account from MFA/,
        );
        expect(dataverse.requests).toEqual([]);
        expectNoPassword(result.stdout + result.stderr);
    }, 60_000);

    describe("each failure class of the service account, through the lead check core", () => {
        // One account per class, all in one tenant and one Dataverse state.
        const cases: {
            name: string;
            userName: string;
            setUp: () => void;
            password?: string;
            failure: LeadCheckFailure;
            message: RegExp;
        }[] = [
            {
                name: "a wrong password (AADSTS50126)",
                userName: "wrong@contoso.com",
                setUp: () => synchronise(account("wrong@contoso.com")),
                password: "an-old-password",
                failure: "secretRejected",
                message:
                    /^The password of service account wrong@contoso\.com was rejected \(AADSTS50126: .*Use the current password output/,
            },
            {
                name: "an expired password (AADSTS50055)",
                userName: "expired@contoso.com",
                setUp: () => synchronise(account("expired@contoso.com", { passwordExpired: true })),
                failure: "secretRejected",
                message:
                    /^The password of service account expired@contoso\.com has expired \(AADSTS50055\).*serviceAccountPasswordRotationDays/,
            },
            {
                name: "an unknown account (AADSTS50034)",
                userName: "nobody@contoso.com",
                setUp: () => account("somebody@contoso.com"),
                failure: "appUnknown",
                message: /^Service account nobody@contoso\.com does not exist in tenant contoso\.com \(AADSTS50034\)\. Check userName/,
            },
            {
                name: "Conditional Access blocking the sign-in (AADSTS53003)",
                userName: "blocked@contoso.com",
                setUp: () => synchronise(account("blocked@contoso.com", { blockedByConditionalAccess: true })),
                failure: "signInBlocked",
                message:
                    /^Service account blocked@contoso\.com may not sign in without a person present \(AADSTS53003: blocked by Conditional Access\).*Conditional Access policies/,
            },
            {
                name: "a disabled account (AADSTS50057)",
                userName: "disabled@contoso.com",
                setUp: () => synchronise(account("disabled@contoso.com", { disabled: true })),
                failure: "accountDisabled",
                message: /^Service account disabled@contoso\.com is disabled in the directory \(AADSTS50057\)\. Enable it/,
            },
            {
                name: "a locked account (AADSTS50053)",
                userName: "locked@contoso.com",
                setUp: () => synchronise(account("locked@contoso.com", { locked: true })),
                failure: "accountDisabled",
                message: /^Service account locked@contoso\.com is locked after too many failed sign-ins \(AADSTS50053\)/,
            },
            {
                name: "no Dataverse user yet (0x80072560)",
                userName: "unsynced@contoso.com",
                setUp: () => account("unsynced@contoso.com"),
                failure: "noApplicationUser",
                message:
                    /^https:\/\/contoso\.crm\.dynamics\.com has no user for service account unsynced@contoso\.com: Dataverse makes it minutes after a Dynamics 365 licence/,
            },
            {
                name: "a disabled Dataverse user (licence gone)",
                userName: "unlicensed@contoso.com",
                setUp: () => synchronise(account("unlicensed@contoso.com"), { disabled: true }),
                failure: "noApplicationUser",
                message:
                    /^The Dataverse user of service account unlicensed@contoso\.com in .* is disabled, which Dataverse does when the account loses its Dynamics 365 licence/,
            },
            {
                name: "no role (0x80042f09)",
                userName: "norole@contoso.com",
                setUp: () => synchronise(account("norole@contoso.com"), { role: false }),
                failure: "noRole",
                message:
                    /^The Dataverse user of service account norole@contoso\.com has no security role in .* \(0x80042f09\)\. Run 'pulumi up'/,
            },
            {
                name: "a missing privilege (403)",
                userName: "noprivilege@contoso.com",
                setUp: () => synchronise(account("noprivilege@contoso.com"), { withoutPrivilege: "prvCreateLead" }),
                failure: "privilegeMissing",
                message:
                    /^The Dataverse user of service account noprivilege@contoso\.com may not create the test lead in .* \(403 0x80040231, missing prvCreateLead\)/,
            },
            {
                name: "a client unknown in the tenant (AADSTS700016)",
                userName: "client@contoso.com",
                setUp: () => synchronise(account("client@contoso.com")),
                failure: "appUnknown",
                message: /^The public client 00000000-0000-4000-8000-000000000001 is unknown in tenant contoso\.com \(AADSTS700016\)/,
            },
        ];
        let outcomes: LeadCheckOutcome[] = [];

        beforeAll(async () => {
            identity.reset();
            dataverse.reset();
            for (const c of cases) c.setUp();
            // The control: the same run signs in and writes a lead for a complete account.
            const complete = synchronise(account("complete@contoso.com"));
            const targets: ServiceAccountSignInTarget[] = [...cases.map((c) => c.userName), "complete@contoso.com"].map((userName) => ({
                kind: "serviceAccount",
                instanceUrl: INSTANCE,
                tenantId: userName.split("@")[1],
                userName,
                password: cases.find((c) => c.userName === userName)?.password ?? PASSWORD,
                clientId: userName.startsWith("client@") ? "00000000-0000-4000-8000-000000000001" : DATAVERSE_PUBLIC_CLIENT_ID,
            }));
            outcomes = await leadChecks(targets);
            expect(outcomes).toHaveLength(cases.length + 1);
            expect(outcomes[cases.length]).toEqual({ ok: true, systemUserId: complete, deleted: true });
            // Only the complete account's lead was written (and deleted again by the deployer).
            const leadWrites = dataverse.requests.filter((r) => r.method === "POST" && /leads$/.test(r.path.split("?")[0]));
            expect(leadWrites.filter((r) => r.status < 300).map((r) => r.principal)).toEqual([complete]);
            expect(dataverse.state.leads).toEqual([]);
            expectNoPassword(JSON.stringify(outcomes));
        }, 60_000);

        it.each(cases.map((c, index) => ({ ...c, index })))("$name", ({ index, failure, message }) => {
            const outcome = outcomes[index];
            expect(outcome).toMatchObject({ ok: false, failure, exitCode: EXIT_CODES[failure] });
            expect((outcome as { message: string }).message).toMatch(message);
            expect((outcome as { message: string }).message).not.toContain(PASSWORD);
        });
    });

    describe("bad input is refused before any sign-in", () => {
        it("refuses a password on the command line", async () => {
            const result = await validate(["--stack-outputs", "-", "--password", PASSWORD], { stdin: stackOutputs() });
            expect(result.code).toBe(2);
            expect(result.stderr).toMatch(
                /^--password is not accepted: a password on the command line ends up in shell history.*LEAD_WRITER_PASSWORD/,
            );
            expect(identity.requests).toEqual([]);
            expectNoPassword(result.stdout + result.stderr);
        }, 60_000);

        it("refuses the other method's flag instead of ignoring it", async () => {
            const result = await validate(["--stack-outputs", "-", "--app-id", randomUUID()], { stdin: stackOutputs() });
            expect(result.code).toBe(2);
            expect(result.stderr).toMatch(/^--app-id does not apply to the "Office 365" sign-in method/);
            expect(identity.requests).toEqual([]);
        }, 60_000);

        it("names a masked password, a malformed user name and a tenant that takes no password sign-in", async () => {
            const masked = await validate(["--stack-outputs", "-", "--tenant-id", "common"], {
                stdin: stackOutputs({ password: "[secret]", userName: "lead-writer" }),
            });
            expect(masked.code).toBe(2);
            expect(masked.stderr).toMatch(/userName: "lead-writer" is not a user principal name \(name@domain\)/);
            expect(masked.stderr).toMatch(/tenantId: "common" takes no password sign-in/);
            expect(masked.stderr).toMatch(
                /password: the stack outputs hold the masked value "\[secret\]"; run 'pulumi stack output --json --show-secrets'/,
            );
            expect(identity.requests).toEqual([]);
            expect(dataverse.requests).toEqual([]);
        }, 60_000);
    });
});

/** The resource-owner password grant, straight to the identity platform. */
const passwordGrant = (tenant: string, form: Record<string, string>) =>
    identityRequest(identity, "POST", `/${tenant}/oauth2/v2.0/token`, {
        grant_type: "password",
        client_id: DATAVERSE_SAMPLE_PUBLIC_CLIENT_ID,
        ...form,
    });

describe("the emulated identity platform's password grant", () => {
    const scope = `${INSTANCE}/.default openid profile offline_access`;

    it("finds the tenant by id, by a user's domain and through 'organizations', and answers 90002 for an unknown one", async () => {
        const user = account(USER);
        for (const tenant of [TENANT, DOMAIN, "organizations"]) {
            const { status, body } = await passwordGrant(tenant, { username: USER, password: PASSWORD, scope });
            expect([tenant, status]).toEqual([tenant, 200]);
            expect(body).toMatchObject({ token_type: "Bearer", expires_in: 3599, access_token: expect.any(String) });
            const clientInfo = JSON.parse(Buffer.from(String(body.client_info), "base64url").toString("utf8")) as Record<string, string>;
            expect(clientInfo).toEqual({ uid: user.objectId, utid: TENANT });
        }
        const unknown = await passwordGrant("fabrikam.com", { username: "x@fabrikam.com", password: PASSWORD, scope });
        expect(unknown).toMatchObject({ status: 400, body: { error: "invalid_request", error_codes: [90002] } });
    });

    it("answers a wrong password 400 invalid_grant AADSTS50126 and never logs it", async () => {
        account(USER);
        const { status, body } = await passwordGrant(TENANT, { username: USER, password: "wrong-password-value", scope });
        expect(status).toBe(400);
        expect(body).toMatchObject({ error: "invalid_grant", error_codes: [50126] });
        expect(String(body.error_description)).toMatch(/^AADSTS50126: Error validating credentials due to invalid username or password\./);
        expect(JSON.stringify(identity.requests)).not.toContain("wrong-password-value");
    });

    it("issues a token the Dataverse emulator maps to the systemuser of the user's object id", async () => {
        const userId = synchronise(account(USER));
        const { body } = await passwordGrant(TENANT, { username: USER, password: PASSWORD, scope });
        const whoAmI = await fetch(`${dataverse.baseUrl}WhoAmI`, { headers: { Authorization: `Bearer ${String(body.access_token)}` } });
        expect(whoAmI.status).toBe(200);
        expect(((await whoAmI.json()) as { UserId: string }).UserId).toBe(userId);
    });
});
