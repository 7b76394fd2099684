/**
 * The Microsoft identity platform's token endpoint, over HTTPS on loopback, so that the real `@azure/identity`
 * `ClientSecretCredential` (MSAL) runs in tests (contract: Tokens; Identity platform errors).
 *
 * - A self-signed certificate for 127.0.0.1 is made with `openssl` at start; a process trusts it only when it
 *   starts with `NODE_EXTRA_CA_CERTS=<caCertPath>` (Node reads that variable once, at start).
 * - `GET /<tenant>/v2.0/.well-known/openid-configuration`: the OpenID metadata MSAL reads first.
 * - `POST /<tenant>/oauth2/v2.0/token`, client-credentials grant: checks the app and its secret. A wrong secret is
 *   401 `invalid_client` AADSTS7000215, an expired one AADSTS7000222, an app unknown in the tenant 400
 *   `unauthorized_client` AADSTS700016, an unknown tenant 400 AADSTS90002. A token answer carries `expires_in`
 *   (without it MSAL treats the token as expired and asks again on every call).
 * - The same endpoint, resource-owner password grant (`UsernamePasswordCredential`): `<tenant>` is the tenant id, a
 *   domain of its users or `organizations` (the user's domain then names the tenant); the client must be a known
 *   public client. Errors are 400 `invalid_grant` with the code Entra gives (contract: Identity platform errors):
 *   AADSTS50034 unknown user, AADSTS50126 wrong password, AADSTS50057 disabled, AADSTS50053 locked, AADSTS50055
 *   password expired, AADSTS50076 MFA required, AADSTS53003 blocked by Conditional Access. A token answer also
 *   carries `client_info` and an (unsigned) `id_token`, from which MSAL builds its account.
 * - Every token issued is reported to `onTokenIssued`, so that the Dataverse emulator knows which app or user it
 *   identifies.
 *
 * Test use only: the key and certificate live in a temporary folder removed on close.
 */
import { execFile } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import * as fs from "node:fs";
import type http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";

/**
 * What a token says about its holder; the Dataverse emulator maps an app-only token to the app's application user,
 * a user's token to the systemuser synchronised from that user (`azureactivedirectoryobjectid`).
 */
export interface IssuedToken {
    tenantId: string;
    /** The client the token was issued to (for a user's token, the public client that signed in). */
    applicationId: string;
    /** The signed-in user's object id (`oid`); absent for an app-only token. */
    objectId?: string;
    /** The resource the token is for, e.g. `https://contoso.crm.dynamics.com`. */
    audience: string;
}

export interface IdentityPlatformOptions {
    /** 0 (default) = a free port on 127.0.0.1. */
    port?: number;
    /** Told about every access token handed out. */
    onTokenIssued?: (accessToken: string, claims: IssuedToken) => void;
    /** Lifetime of issued tokens, in seconds (default 3599, as Entra answers). */
    expiresInSeconds?: number;
    /**
     * Serve with this certificate instead of making one: a process trusts the platform only when it started with
     * `NODE_EXTRA_CA_CERTS` already naming the certificate, so the certificate must exist before that process.
     */
    certificate?: CertificateFiles;
}

export interface TokenRequestLogEntry {
    method: string;
    path: string;
    /** The form fields of a token request, the client secret and the password left out. */
    form?: Record<string, string>;
    status: number;
}

export interface IdentityPlatform {
    /** `https://127.0.0.1:<port>`: the value for `AZURE_AUTHORITY_HOST`. */
    authorityHost: string;
    /** PEM file of the certificate: the value for `NODE_EXTRA_CA_CERTS`. */
    caCertPath: string;
    requests: TokenRequestLogEntry[];
    /** Registers an app in a tenant with one client secret; `expired` makes that secret answer AADSTS7000222. */
    registerApp(app: { tenantId: string; applicationId: string; secret: string; expired?: boolean }): void;
    /**
     * Registers a directory user who may sign in with a password. Each flag makes the sign-in fail as Entra would:
     * `mfaRequired` AADSTS50076, `blockedByConditionalAccess` AADSTS53003, `disabled` AADSTS50057, `locked`
     * AADSTS50053, `passwordExpired` AADSTS50055.
     */
    registerUser(user: RegisteredUser): void;
    /** Lets password sign-ins through another public client than Microsoft's Dataverse sample client. */
    registerPublicClient(clientId: string): void;
    /** Forgets every registered app, user and added public client. */
    reset(): void;
    close(): Promise<void>;
}

export interface RegisteredUser {
    tenantId: string;
    userPrincipalName: string;
    password: string;
    objectId: string;
    mfaRequired?: boolean;
    blockedByConditionalAccess?: boolean;
    disabled?: boolean;
    locked?: boolean;
    passwordExpired?: boolean;
}

/** Microsoft's public client for Dataverse samples and tools, known in every tenant. */
export const DATAVERSE_SAMPLE_PUBLIC_CLIENT_ID = "51f81489-12ee-4a9e-aaae-a2591f45987d";

// Never written to the request log.
const SECRET_FIELDS = ["client_secret", "password"];

interface RegisteredSecret {
    value: string;
    expired: boolean;
}

/** A PEM key and certificate on disk, the certificate valid for 127.0.0.1. */
export interface CertificateFiles {
    keyPath: string;
    certPath: string;
}

/** Makes a self-signed certificate valid for 127.0.0.1 and localhost, usable as its own trust anchor. */
export async function makeCertificate(dir: string): Promise<CertificateFiles> {
    const keyPath = path.join(dir, "key.pem");
    const certPath = path.join(dir, "cert.pem");
    await promisify(execFile)("openssl", [
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        keyPath,
        "-out",
        certPath,
        "-days",
        "2",
        "-subj",
        "/CN=127.0.0.1",
        "-addext",
        "subjectAltName=IP:127.0.0.1,DNS:localhost",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
    ]);
    return { keyPath, certPath };
}

function readForm(req: http.IncomingMessage): Promise<URLSearchParams> {
    return new Promise((resolve, reject) => {
        const chunks: Buffer[] = [];
        req.on("data", (chunk: Buffer) => chunks.push(chunk));
        req.on("end", () => resolve(new URLSearchParams(Buffer.concat(chunks).toString("utf8"))));
        req.on("error", reject);
    });
}

/** An error answer in the identity platform's shape. */
function oauthError(status: number, error: string, code: number, description: string): { status: number; body: unknown } {
    const traceId = randomUUID();
    const correlationId = randomUUID();
    return {
        status,
        body: {
            error,
            error_description: `AADSTS${code}: ${description} Trace ID: ${traceId} Correlation ID: ${correlationId} Timestamp: ${new Date().toISOString()}`,
            error_codes: [code],
            timestamp: new Date().toISOString(),
            trace_id: traceId,
            correlation_id: correlationId,
            error_uri: `https://login.microsoftonline.com/error?code=${code}`,
        },
    };
}

export async function startIdentityPlatform(options: IdentityPlatformOptions = {}): Promise<IdentityPlatform> {
    // A given certificate is the caller's to remove; one made here lives in a folder removed on close.
    const dir = options.certificate ? undefined : fs.mkdtempSync(path.join(os.tmpdir(), "identity-platform-"));
    const { keyPath, certPath } = options.certificate ?? (await makeCertificate(dir!));
    // tenant → application id → its secrets
    const tenants = new Map<string, Map<string, RegisteredSecret[]>>();
    const users: RegisteredUser[] = [];
    const publicClients = new Set<string>([DATAVERSE_SAMPLE_PUBLIC_CLIENT_ID]);
    const requests: TokenRequestLogEntry[] = [];
    let authorityHost = "";

    function metadata(tenant: string): unknown {
        const base = `${authorityHost}/${tenant}`;
        return {
            token_endpoint: `${base}/oauth2/v2.0/token`,
            token_endpoint_auth_methods_supported: ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            jwks_uri: `${authorityHost}/${tenant}/discovery/v2.0/keys`,
            response_modes_supported: ["query", "fragment", "form_post"],
            subject_types_supported: ["pairwise"],
            id_token_signing_alg_values_supported: ["RS256"],
            response_types_supported: ["code", "id_token", "code id_token", "id_token token"],
            scopes_supported: ["openid", "profile", "email", "offline_access"],
            issuer: `${authorityHost}/${tenant}/v2.0`,
            request_uri_parameter_supported: false,
            authorization_endpoint: `${base}/oauth2/v2.0/authorize`,
            device_authorization_endpoint: `${base}/oauth2/v2.0/devicecode`,
            end_session_endpoint: `${base}/oauth2/v2.0/logout`,
            claims_supported: ["sub", "iss", "aud", "exp", "iat", "tid"],
            tenant_region_scope: "EU",
        };
    }

    function token(tenant: string, form: URLSearchParams): { status: number; body: unknown } {
        if (form.get("grant_type") === "password") return passwordGrant(tenant, form);
        if (form.get("grant_type") !== "client_credentials") {
            return oauthError(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.");
        }
        const applicationId = (form.get("client_id") ?? "").toLowerCase();
        const secret = form.get("client_secret") ?? "";
        const scope = form.get("scope") ?? "";
        const apps = tenants.get(tenant.toLowerCase());
        if (!apps) {
            return oauthError(400, "invalid_request", 90002, `Tenant '${tenant}' not found.`);
        }
        const secrets = apps.get(applicationId);
        if (!secrets) {
            return oauthError(
                400,
                "unauthorized_client",
                700016,
                `Application with identifier '${applicationId}' was not found in the directory '${tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.`,
            );
        }
        const match = secrets.find((s) => s.value === secret);
        if (!match) {
            return oauthError(
                401,
                "invalid_client",
                7000215,
                `Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '${applicationId}'.`,
            );
        }
        if (match.expired) {
            return oauthError(
                401,
                "invalid_client",
                7000222,
                `The provided client secret keys for app '${applicationId}' are expired. Visit the Azure portal to create new keys for your app or consider using certificate credentials for added security.`,
            );
        }
        if (!scope.endsWith("/.default")) {
            return oauthError(
                400,
                "invalid_scope",
                1002012,
                `The provided value for scope ${scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier.`,
            );
        }
        const accessToken = `emulated-${randomBytes(24).toString("base64url")}`;
        const expiresIn = options.expiresInSeconds ?? 3599;
        options.onTokenIssued?.(accessToken, {
            tenantId: tenant.toLowerCase(),
            applicationId,
            audience: scope.slice(0, -"/.default".length),
        });
        return {
            status: 200,
            body: { token_type: "Bearer", expires_in: expiresIn, ext_expires_in: expiresIn, access_token: accessToken },
        };
    }

    /** The tenant a password sign-in goes to: its id, one of its users' domains, or `organizations` (the user's). */
    function userTenant(tenant: string, userName: string): string | undefined {
        const lower = tenant.toLowerCase();
        const domainOf = (upn: string) => upn.split("@")[1]?.toLowerCase();
        if (lower === "organizations") return users.find((u) => domainOf(u.userPrincipalName) === domainOf(userName))?.tenantId;
        if (tenants.has(lower) || users.some((u) => u.tenantId === lower)) return lower;
        return users.find((u) => domainOf(u.userPrincipalName) === lower)?.tenantId;
    }

    function passwordGrant(tenant: string, form: URLSearchParams): { status: number; body: unknown } {
        const clientId = (form.get("client_id") ?? "").toLowerCase();
        const userName = form.get("username") ?? "";
        const scopes = (form.get("scope") ?? "").split(" ").filter((s) => s.length > 0);
        const tenantId = userTenant(tenant, userName);
        if (!tenantId) return oauthError(400, "invalid_request", 90002, `Tenant '${tenant}' not found.`);
        if (!publicClients.has(clientId)) {
            return oauthError(
                400,
                "unauthorized_client",
                700016,
                `Application with identifier '${clientId}' was not found in the directory '${tenant}'.`,
            );
        }
        const user = users.find((u) => u.tenantId === tenantId && u.userPrincipalName.toLowerCase() === userName.toLowerCase());
        if (!user) {
            return oauthError(
                400,
                "invalid_grant",
                50034,
                `The user account {EUII Hidden} does not exist in the ${tenantId} directory. To sign into this application, the account must be added to the directory.`,
            );
        }
        if (user.locked) {
            return oauthError(
                400,
                "invalid_grant",
                50053,
                "The account is locked, you've tried to sign in too many times with an incorrect user ID or password.",
            );
        }
        if (form.get("password") !== user.password) {
            return oauthError(400, "invalid_grant", 50126, "Error validating credentials due to invalid username or password.");
        }
        if (user.disabled) return oauthError(400, "invalid_grant", 50057, "The user account is disabled.");
        if (user.passwordExpired) return oauthError(400, "invalid_grant", 50055, "The password is expired.");
        const resource = scopes.find((s) => s.endsWith("/.default"));
        if (user.blockedByConditionalAccess) {
            return oauthError(
                400,
                "invalid_grant",
                53003,
                "Access has been blocked by Conditional Access policies. The access policy does not allow token issuance.",
            );
        }
        if (user.mfaRequired) {
            return oauthError(
                400,
                "invalid_grant",
                50076,
                `Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access '${resource ?? ""}'.`,
            );
        }
        if (!resource) {
            return oauthError(400, "invalid_scope", 70011, `The provided value for the input parameter 'scope' isn't valid.`);
        }
        const accessToken = `emulated-${randomBytes(24).toString("base64url")}`;
        const expiresIn = options.expiresInSeconds ?? 3599;
        const now = Math.floor(Date.now() / 1000);
        const claims = {
            aud: clientId,
            iss: `${authorityHost}/${tenantId}/v2.0`,
            iat: now,
            nbf: now,
            exp: now + expiresIn,
            oid: user.objectId,
            sub: user.objectId,
            tid: tenantId,
            preferred_username: user.userPrincipalName,
            name: user.userPrincipalName.split("@")[0],
            ver: "2.0",
        };
        const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
        options.onTokenIssued?.(accessToken, {
            tenantId,
            applicationId: clientId,
            objectId: user.objectId,
            audience: resource.slice(0, -"/.default".length),
        });
        return {
            status: 200,
            body: {
                token_type: "Bearer",
                scope: scopes.filter((s) => s.endsWith("/.default")).join(" "),
                expires_in: expiresIn,
                ext_expires_in: expiresIn,
                access_token: accessToken,
                // Not signed: MSAL reads these claims for its account cache and does not verify them.
                id_token: `${encode({ typ: "JWT", alg: "none" })}.${encode(claims)}.`,
                client_info: encode({ uid: user.objectId, utid: tenantId }),
            },
        };
    }

    async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
        const method = (req.method ?? "GET").toUpperCase();
        const url = new URL(req.url ?? "/", authorityHost);
        const entry: TokenRequestLogEntry = { method, path: url.pathname, status: 0 };
        requests.push(entry);
        let reply: { status: number; body: unknown };
        const openId = /^\/([^/]+)\/v2\.0\/\.well-known\/openid-configuration$/.exec(url.pathname);
        const tokenPath = /^\/([^/]+)\/oauth2\/v2\.0\/token$/.exec(url.pathname);
        if (openId && method === "GET") {
            reply = { status: 200, body: metadata(openId[1]) };
        } else if (tokenPath && method === "POST") {
            const form = await readForm(req);
            entry.form = Object.fromEntries([...form].filter(([k]) => !SECRET_FIELDS.includes(k)));
            reply = token(tokenPath[1], form);
        } else {
            reply = oauthError(404, "invalid_request", 90011, `No such endpoint: ${method} ${url.pathname}.`);
        }
        entry.status = reply.status;
        res.writeHead(reply.status, { "Content-Type": "application/json; charset=utf-8", "Cache-Control": "no-store" });
        res.end(JSON.stringify(reply.body));
    }

    const server = https.createServer({ key: fs.readFileSync(keyPath), cert: fs.readFileSync(certPath) });
    server.on("request", (req: http.IncomingMessage, res: http.ServerResponse) => {
        handle(req, res).catch((err: unknown) => {
            if (!res.headersSent) {
                res.writeHead(500, { "Content-Type": "application/json" });
                res.end(JSON.stringify({ error: "server_error", error_description: `Emulator failure: ${String(err)}` }));
            }
        });
    });
    await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(options.port ?? 0, "127.0.0.1", () => resolve());
    });
    authorityHost = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;

    return {
        authorityHost,
        caCertPath: certPath,
        requests,
        registerApp(app) {
            const tenant = app.tenantId.toLowerCase();
            const apps = tenants.get(tenant) ?? new Map<string, RegisteredSecret[]>();
            tenants.set(tenant, apps);
            apps.set(app.applicationId.toLowerCase(), [{ value: app.secret, expired: app.expired ?? false }]);
        },
        registerUser(user) {
            const registered = { ...user, tenantId: user.tenantId.toLowerCase(), objectId: user.objectId.toLowerCase() };
            const existing = users.findIndex(
                (u) =>
                    u.tenantId === registered.tenantId && u.userPrincipalName.toLowerCase() === registered.userPrincipalName.toLowerCase(),
            );
            if (existing >= 0) users.splice(existing, 1);
            users.push(registered);
        },
        registerPublicClient(clientId) {
            publicClients.add(clientId.toLowerCase());
        },
        reset() {
            tenants.clear();
            users.length = 0;
            publicClients.clear();
            publicClients.add(DATAVERSE_SAMPLE_PUBLIC_CLIENT_ID);
        },
        close() {
            return new Promise((resolve, reject) => {
                server.close((err) => {
                    if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true });
                    if (err) reject(err);
                    else resolve();
                });
                server.closeAllConnections();
            });
        },
    };
}
