/** Application users: create, enable/disable, soft and permanent delete (contract: Application user). */
import { randomUUID } from "node:crypto";
import { systemUserJson, systemUserShape } from "./entities";
import { ODataError, parseSelect, project } from "./odata";
import { type SystemUserRow } from "./state";
import {
    APPLICATION_USER_CANNOT_BE_UPDATED,
    AZURE_APPLICATION_ID_NOT_FOUND,
    DUPLICATE_APPLICATION_USER,
    INVALID_ARGUMENT,
    INVALID_BUSINESS_UNIT,
    OBJECT_DOES_NOT_EXIST,
    PAYLOAD_ERROR,
    invalidProperty,
    notFound,
} from "./errors";
import { type Caller, GUID_RE, type Reply, type Service, created, isObject, odataContext, referencedId } from "./protocol";
import { requireAdministrator } from "./privileges";

export function createSystemUser(svc: Service, caller: Caller, body: unknown, representation: boolean, params: URLSearchParams): Reply {
    requireAdministrator(svc, caller, "prvCreateUser", "systemuser");
    if (!isObject(body)) throw new ODataError(400, PAYLOAD_ERROR, "The request body must be a systemuser object.");
    const allowed = ["applicationid", "accessmode", "businessunitid@odata.bind"];
    for (const key of Object.keys(body)) {
        if (key === "isdisabled") {
            // contract: Application user — isdisabled is not valid on create. Code UNCONFIRMED.
            throw new ODataError(400, INVALID_ARGUMENT, "The isdisabled attribute cannot be set when creating a user.");
        }
        if (!allowed.includes(key)) {
            if (key in systemUserShape.properties) {
                // Dataverse fills these from Entra for an application user (contract: Application user).
                throw new ODataError(
                    400,
                    APPLICATION_USER_CANNOT_BE_UPDATED,
                    "The user representing an OAuth application cannot not be updated",
                );
            }
            throw invalidProperty(systemUserShape, key);
        }
    }
    if (typeof body.applicationid !== "string" || !GUID_RE.test(body.applicationid)) {
        // UNCONFIRMED code: only application users are in the contract, so an id is required.
        throw new ODataError(400, INVALID_ARGUMENT, "applicationid must be the Entra application (client) id of the application user.");
    }
    const applicationId = body.applicationid.toLowerCase();
    if (body.accessmode !== 4) {
        // contract: Application user — accessmode 4 = non-interactive; anything else for an application user is
        // refused here (UNCONFIRMED code).
        throw new ODataError(400, INVALID_ARGUMENT, "An application user must be created with accessmode 4 (non-interactive).");
    }
    const bind = body["businessunitid@odata.bind"];
    if (bind === undefined) {
        // contract: Application user — without a business unit the service fails.
        throw new ODataError(400, INVALID_BUSINESS_UNIT, "The businessunitid is missing or invalid.");
    }
    const buId = referencedId(bind, "businessunits");
    if (buId === null) throw new ODataError(400, INVALID_BUSINESS_UNIT, "The businessunitid is missing or invalid.");
    if (!svc.state.businessUnits.some((b) => b.businessunitid === buId)) {
        throw new ODataError(400, OBJECT_DOES_NOT_EXIST, `Entity 'businessunit' With Id = ${buId} Does Not Exist`);
    }
    // contract: Application user — one per app per environment; a soft-deleted row still blocks the create.
    if (svc.state.systemUsers.some((u) => u.applicationid === applicationId)) {
        throw new ODataError(
            412,
            DUPLICATE_APPLICATION_USER,
            `You are attempting to create an Application ID = ${applicationId} that already exists.`,
        );
    }
    const known = svc.state.knownApplications[applicationId];
    if (known === undefined || known.failuresBeforeVisible > 0) {
        // Entra propagation delay: the service principal exists but Dataverse cannot see it yet.
        if (known !== undefined) known.failuresBeforeVisible--;
        throw new ODataError(
            400,
            AZURE_APPLICATION_ID_NOT_FOUND,
            `We didn't find that application ID ${applicationId} in your Azure Active Directory (Azure AD). Make sure your application is registered in Azure AD.`,
        );
    }
    const user: SystemUserRow = {
        systemuserid: randomUUID(),
        fullname: `# ${applicationId.slice(0, 8)}`,
        applicationid: applicationId,
        accessmode: 4,
        businessunitid: buId,
        isdisabled: false,
        deletedstate: 0,
        azureactivedirectoryobjectid: randomUUID(),
        internalemailaddress: `${applicationId}@emulator.invalid`,
    };
    svc.state.systemUsers.push(user);
    return created(svc, "systemusers", user.systemuserid, systemUserJson(user), systemUserShape, representation, params);
}

export function updateSystemUser(
    svc: Service,
    caller: Caller,
    id: string,
    body: unknown,
    representation: boolean,
    params: URLSearchParams,
): Reply {
    requireAdministrator(svc, caller, "prvWriteUser", "systemuser");
    const user = svc.state.systemUsers.find((u) => u.systemuserid === id);
    if (user === undefined) throw notFound("systemuser", id);
    if (!isObject(body)) throw new ODataError(400, PAYLOAD_ERROR, "The request body must be a systemuser object.");
    for (const [key, value] of Object.entries(body)) {
        if (key === "isdisabled") {
            if (typeof value !== "boolean") throw new ODataError(400, PAYLOAD_ERROR, "isdisabled must be a boolean.");
            continue;
        }
        if (!(key in systemUserShape.properties)) throw invalidProperty(systemUserShape, key);
        if (user.applicationid !== null) {
            throw new ODataError(
                400,
                APPLICATION_USER_CANNOT_BE_UPDATED,
                "The user representing an OAuth application cannot not be updated",
            );
        }
        throw new ODataError(400, INVALID_ARGUMENT, `The attribute '${key}' cannot be updated by this emulator.`);
    }
    // contract: Application user — PATCH {"isdisabled":…} → 204.
    if (typeof body.isdisabled === "boolean") user.isdisabled = body.isdisabled;
    if (representation) {
        const select = parseSelect(systemUserShape, params.get("$select"));
        return {
            status: 200,
            body: { "@odata.context": odataContext(svc, "systemusers/$entity"), ...project(systemUserShape, systemUserJson(user), select) },
        };
    }
    return { status: 204 };
}

export function deleteSystemUser(svc: Service, caller: Caller, id: string): Reply {
    requireAdministrator(svc, caller, "prvDeleteUser", "systemuser");
    const user = svc.state.systemUsers.find((u) => u.systemuserid === id);
    if (user === undefined) throw notFound("systemuser", id);
    // contract: Application user — only a disabled user can be deleted. Code UNCONFIRMED.
    if (!user.isdisabled) {
        throw new ODataError(400, INVALID_ARGUMENT, "Only a disabled user can be deleted. Disable the user, then delete it.");
    }
    // contract: Application user — the first DELETE soft-deletes (deletedstate 1; rows stay visible to queries).
    if (user.deletedstate === 0) {
        user.deletedstate = 1;
        return { status: 204 };
    }
    // contract: Application user — records it owns must be reassigned before the permanent delete. Code UNCONFIRMED.
    const owned = svc.state.leads.filter((l) => l.ownerid === id).length;
    if (owned > 0) {
        throw new ODataError(
            400,
            INVALID_ARGUMENT,
            `The user ${id} owns ${owned} record(s). Reassign the records it owns to another user before deleting it permanently.`,
        );
    }
    svc.state.systemUsers = svc.state.systemUsers.filter((u) => u.systemuserid !== id);
    svc.state.userRoles = svc.state.userRoles.filter((l) => l.systemuserid !== id);
    return { status: 204 };
}
