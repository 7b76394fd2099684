/** Leads: create and delete under the privilege and depth checks the lead service meets (contract: Leads). */
import { randomUUID } from "node:crypto";
import { leadJson, leadShape } from "./entities";
import { ODataError } from "./odata";
import { type LeadRow, nowIso } from "./state";
import { INVALID_ARGUMENT, PAYLOAD_ERROR, STRING_TOO_LONG, accessDenied, invalidProperty, notFound } from "./errors";
import { type Caller, type Reply, type Service, created, isObject } from "./protocol";
import { reaches, requirePrivilege } from "./privileges";

export function createLead(svc: Service, caller: Caller, body: unknown, representation: boolean, params: URLSearchParams): Reply {
    if (!isObject(body)) throw new ODataError(400, PAYLOAD_ERROR, "The request body must be a lead object.");
    const strings: Record<string, number> = {
        subject: 300,
        lastname: 50,
        firstname: 50,
        emailaddress1: 100,
        companyname: 100,
        description: 2000,
    };
    for (const [key, value] of Object.entries(body)) {
        if (key in strings) {
            if (value !== null && typeof value !== "string") {
                throw new ODataError(
                    400,
                    PAYLOAD_ERROR,
                    `Cannot convert the literal '${String(value)}' to the expected type 'Edm.String'.`,
                );
            }
        } else if (key === "leadsourcecode") {
            if (value !== null && !(typeof value === "number" && Number.isInteger(value))) {
                throw new ODataError(400, PAYLOAD_ERROR, `Cannot convert the literal '${String(value)}' to the expected type 'Edm.Int32'.`);
            }
        } else {
            throw invalidProperty(leadShape, key);
        }
    }
    requirePrivilege(svc, caller, "prvCreateLead", "lead");
    for (const required of ["subject", "lastname"]) {
        const value = body[required];
        if (typeof value !== "string" || value.trim() === "") {
            // contract: Leads — subject and lastname are required. Code UNCONFIRMED.
            throw new ODataError(400, INVALID_ARGUMENT, `A value for the required attribute '${required}' of entity 'lead' is missing.`);
        }
    }
    for (const [key, max] of Object.entries(strings)) {
        const value = body[key];
        if (typeof value === "string" && value.length > max) {
            throw new ODataError(
                400,
                STRING_TOO_LONG,
                `A validation error occurred. The length of the '${key}' attribute of the 'lead' entity exceeded the maximum allowed length of '${max}'.`,
            );
        }
    }
    const source = body.leadsourcecode;
    if (typeof source === "number" && (source < 1 || source > 10)) {
        // The lead source picklist runs 1–10 (8 = Web, contract: Leads); other values are not options.
        throw new ODataError(
            400,
            INVALID_ARGUMENT,
            `A validation error occurred. The value ${source} of 'leadsourcecode' on record of type 'lead' is outside the valid range.`,
        );
    }
    const text = (key: string): string | null => (typeof body[key] === "string" ? (body[key] as string) : null);
    const lead: LeadRow = {
        leadid: randomUUID(),
        subject: text("subject") ?? "",
        lastname: text("lastname") ?? "",
        firstname: text("firstname"),
        emailaddress1: text("emailaddress1"),
        companyname: text("companyname"),
        leadsourcecode: typeof source === "number" ? source : null,
        description: text("description"),
        ownerid: caller.user.systemuserid,
        createdon: nowIso(),
    };
    svc.state.leads.push(lead);
    return created(svc, "leads", lead.leadid, leadJson(lead), leadShape, representation, params);
}

export function deleteLead(svc: Service, caller: Caller, id: string): Reply {
    const depth = requirePrivilege(svc, caller, "prvDeleteLead", "lead");
    const lead = svc.state.leads.find((l) => l.leadid === id);
    if (lead === undefined) throw notFound("lead", id);
    if (!reaches(svc, caller, depth, lead.ownerid)) throw accessDenied(caller.user.systemuserid, "DeleteAccess", id, "lead");
    svc.state.leads = svc.state.leads.filter((l) => l.leadid !== id);
    return { status: 204 };
}
