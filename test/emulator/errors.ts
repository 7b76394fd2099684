/**
 * Dataverse error codes the emulator answers with, and the replies shared by every area. Codes the contract names
 * are in docs/dataverse-contract.md; the others cite the Microsoft page checked or say UNCONFIRMED.
 */
import { BAD_SEGMENT_CODE, ODataError, type EntityShape } from "./odata";

// Codes the contract names (Requests and errors; Application user; Roles; Leads; Solution import).
export const OBJECT_DOES_NOT_EXIST = "0x80040217";
export const PRINCIPAL_PRIVILEGE_DENIED = "0x80040231";
export const USER_NOT_ASSIGNED_ROLES = "0x80042f09";
export const USER_IN_WRONG_BUSINESS = "0x80041409";
export const AZURE_APPLICATION_ID_NOT_FOUND = "0x8004F510";
export const DUPLICATE_APPLICATION_USER = "0x8004F511";
export const IMPORT_ALREADY_RUNNING = "0x80071151";
export const MISSING_DEPENDENCIES = "0x8004801D";
export const MANAGED_OVER_UNMANAGED = "0x80048040";
export const UNMANAGED_OVER_MANAGED = "0x80048041";
// Confirmed in Microsoft Learn "Web service error codes" (Dataverse): name and message as listed there.
export const ACCESS_TOKEN_EXPIRED = "0x8005F101"; // AccessTokenExpired "The requested resource requires authentication."
export const USER_NOT_MEMBER_OF_ORG = "0x80072560"; // UserNotMemberOfOrg "The user is not a member of the organization."
export const UNSUPPORTED_ZIP = "0x80048495"; // UnsupportedZipFileForImport
export const INVALID_BUSINESS_UNIT = "0x800404a7"; // unManagedinvalidbusinessunitid "The businessunitid is missing or invalid."
export const INVALID_PRIVILEGE_DEPTH = "0x800404bb"; // unManagedinvalidprivilegeedepth "Invalid privilege depth for user."
export const APPLICATION_USER_CANNOT_BE_UPDATED = "0x80041d48"; // ApplicationUserCannotBeUpdated
// Confirmed in Microsoft Learn "Troubleshoot Dataverse client errors": -2147187962, the access check after a
// privilege check passed ("Principal with ID … does not have …Access right(s) for record …").
export const ACCESS_CHECK_FAILED = "0x80048306";
// Same page: "Cannot insert duplicate key" -2147220937.
export const DUPLICATE_KEY = "0x80040237";
// UNCONFIRMED: the code Dataverse gives a disabled caller. The message is the one Microsoft Learn quotes in the
// "Disabled users cannot access the system" troubleshooting article; 0x80040225 is what Dataverse clients map to
// "user not enabled".
export const USER_DISABLED = "0x80040225";
// UNCONFIRMED: Dataverse's InvalidArgument code, used where no page states the code of a 400.
export const INVALID_ARGUMENT = "0x80040203";
// UNCONFIRMED: the code of OData payload deserialisation errors (a JSON value of the wrong type).
export const PAYLOAD_ERROR = "0x80048d19";
// UNCONFIRMED: the validation code for a string longer than the column allows.
export const STRING_TOO_LONG = "0x80044331";
// contract: Service protection — the 6000-requests limit.
export const REQUEST_LIMIT_EXCEEDED = "0x80072322";

export function notFound(logicalName: string, id: string): ODataError {
    // contract: Requests and errors — 404 ObjectDoesNotExist "Entity 'role' With Id = … Does Not Exist".
    return new ODataError(404, OBJECT_DOES_NOT_EXIST, `Entity '${logicalName}' With Id = ${id} Does Not Exist`);
}

export function badSegment(segment: string): ODataError {
    // contract: Requests and errors — a bad URL segment answers 0x80060888.
    return new ODataError(404, BAD_SEGMENT_CODE, `Resource not found for the segment '${segment}'.`);
}

export function invalidProperty(shape: EntityShape, property: string): ODataError {
    return new ODataError(
        400,
        BAD_SEGMENT_CODE,
        `The property '${property}' does not exist on type 'Microsoft.Dynamics.CRM.${shape.logicalName}'. Make sure to only use property names that are defined by the type.`,
    );
}

export function methodNotAllowed(method: string, resource: string): ODataError {
    // contract: Requests and errors — 405 not allowed. The code is UNCONFIRMED.
    return new ODataError(405, BAD_SEGMENT_CODE, `The HTTP method '${method}' is not allowed for the resource '${resource}'.`);
}

export function accessDenied(callerId: string, right: string, recordId: string, entity: string): ODataError {
    return new ODataError(
        403,
        ACCESS_CHECK_FAILED,
        `Principal user (Id=${callerId}) does not have ${right} right(s) for record with Id = ${recordId} of entity ${entity}.`,
    );
}
