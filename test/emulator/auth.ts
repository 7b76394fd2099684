/**
 * Who is calling: a bearer token becomes the administrator or an application user (contract: Tokens; Requests and
 * errors — 401 for a missing or rejected token, 403 for an unknown or disabled user), and WhoAmI.
 */
import type http from "node:http";
import { ODataError } from "./odata";
import { ADMIN_USER_ID, type SystemUserRow } from "./state";
import { ACCESS_TOKEN_EXPIRED, USER_DISABLED, USER_NOT_MEMBER_OF_ORG } from "./errors";
import { type Caller, type Reply, type Service, type TokenPrincipal, odataContext } from "./protocol";

// contract: Requests and errors — 401 for a missing or rejected token; Tokens — app-only access is authorised
// by the application user.
export function authenticate(svc: Service, req: http.IncomingMessage): Caller {
    const header = req.headers.authorization ?? "";
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    const unauthorized = new ODataError(401, ACCESS_TOKEN_EXPIRED, "The requested resource requires authentication.", {
        "WWW-Authenticate": `Bearer authorization_uri=https://login.microsoftonline.com/common/oauth2/authorize, resource_id=${svc.origin}/`,
    });
    if (!match) throw unauthorized;
    const token = match[1];
    let principal: TokenPrincipal | "admin" = "admin";
    if (Object.prototype.hasOwnProperty.call(svc.issuedTokens, token)) {
        principal = svc.issuedTokens[token];
    } else if (svc.tokens !== undefined) {
        const mapped = Object.prototype.hasOwnProperty.call(svc.tokens, token) ? svc.tokens[token] : undefined;
        if (mapped === undefined) throw unauthorized;
        principal = mapped;
    }
    const user =
        principal === "admin"
            ? svc.state.systemUsers.find((u) => u.systemuserid === ADMIN_USER_ID && u.deletedstate === 0)
            : userOf(svc, principal);
    // A token for an app without an application user (or a user Dataverse has not synchronised) is valid at Entra but
    // unknown to the environment.
    if (user === undefined) throw new ODataError(403, USER_NOT_MEMBER_OF_ORG, "The user is not a member of the organization.");
    if (user.isdisabled) {
        // UNCONFIRMED status (403 chosen) and code; message per Microsoft Learn "Disabled users cannot access the
        // system" error article.
        throw new ODataError(
            403,
            USER_DISABLED,
            `The user with SystemUserId=${user.systemuserid} in OrganizationContext=${svc.state.organizationId} is disabled. Disabled users cannot access the system. Consider enabling this user. Also, users are disabled if they don't have a license assigned to them.`,
        );
    }
    return { user };
}

/** A user's token acts as the systemuser synchronised from that directory user; an app's as its application user. */
function userOf(svc: Service, principal: TokenPrincipal): SystemUserRow | undefined {
    const { objectId } = principal;
    if (objectId !== undefined) {
        return svc.state.systemUsers.find((u) => u.azureactivedirectoryobjectid.toLowerCase() === objectId && u.deletedstate === 0);
    }
    return svc.state.systemUsers.find((u) => u.applicationid === principal.applicationId.toLowerCase() && u.deletedstate === 0);
}

export function principalOf(svc: Service, req: http.IncomingMessage): string | undefined {
    try {
        return authenticate(svc, req).user.systemuserid;
    } catch {
        return undefined;
    }
}

export function whoAmI(svc: Service, caller: Caller): Reply {
    return {
        status: 200,
        body: {
            "@odata.context": odataContext(svc, "Microsoft.Dynamics.CRM.WhoAmIResponse"),
            BusinessUnitId: caller.user.businessunitid,
            UserId: caller.user.systemuserid,
            OrganizationId: svc.state.organizationId,
        },
    };
}
