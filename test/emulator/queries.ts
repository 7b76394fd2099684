/** Generic reads of an entity set or one record: `$select`, `$filter`, `$expand`, `$top` (contract: Requests and errors). */
import { type EntitySetDefinition, roleJson, roleShape, systemUserShape } from "./entities";
import {
    BAD_SEGMENT_CODE,
    type EntityShape,
    type FilterNode,
    type JsonRecord,
    ODataError,
    evaluateFilter,
    parseExpand,
    parseFilter,
    parseSelect,
    project,
} from "./odata";
import { type PrivilegeDepthName } from "./state";
import { accessDenied, notFound } from "./errors";
import { type Caller, type JsonObject, type Reply, type Service, odataContext } from "./protocol";
import { reaches, requirePrivilege, rolesOf } from "./privileges";

export function checkQueryOptions(params: URLSearchParams, allowed: string[]): void {
    for (const key of params.keys()) {
        if (key.startsWith("$") && !allowed.includes(key)) {
            throw new ODataError(400, BAD_SEGMENT_CODE, `The query parameter '${key}' is not supported.`);
        }
    }
}

export function queryCollection(svc: Service, caller: Caller, setName: string, set: EntitySetDefinition, params: URLSearchParams): Reply {
    checkQueryOptions(params, ["$select", "$filter", "$expand", "$top"]);
    const select = parseSelect(set.shape, params.get("$select"));
    const filter = parseFilter(set.shape, params.get("$filter"));
    const expand = parseExpandFor(set.shape, params.get("$expand"));
    let records = set.records(svc.state);
    if (setName === "leads") {
        // contract: Leads — reads need prvReadLead, and only reach records the depth covers.
        const depth = requirePrivilege(svc, caller, "prvReadLead", "lead");
        records = records.filter((r) => reaches(svc, caller, depth, String(r._ownerid_value)));
    }
    records = records.filter((r) => evaluateFilter(filter, r));
    const topText = params.get("$top");
    if (topText !== null) {
        const top = Number(topText);
        if (!Number.isInteger(top) || top < 0) throw new ODataError(400, BAD_SEGMENT_CODE, `Invalid value '${topText}' for $top.`);
        records = records.slice(0, top);
    }
    const value = records.map((r) => ({ ...project(set.shape, r, select), ...expanded(svc, r, expand) }));
    return {
        status: 200,
        body: { "@odata.context": odataContext(svc, `${setName}(${select?.join(",") ?? ""})`.replace("()", "")), value },
    };
}

export function getEntity(
    svc: Service,
    caller: Caller,
    setName: string,
    set: EntitySetDefinition,
    id: string,
    params: URLSearchParams,
): Reply {
    checkQueryOptions(params, ["$select", "$expand"]);
    const select = parseSelect(set.shape, params.get("$select"));
    const expand = parseExpandFor(set.shape, params.get("$expand"));
    let depth: PrivilegeDepthName | null = null;
    if (setName === "leads") depth = requirePrivilege(svc, caller, "prvReadLead", "lead");
    const record = set.records(svc.state).find((r) => String(r[set.shape.key]).toLowerCase() === id);
    if (record === undefined) throw notFound(set.shape.logicalName, id);
    if (setName === "leads" && !reaches(svc, caller, depth, String(record._ownerid_value))) {
        throw accessDenied(caller.user.systemuserid, "ReadAccess", id, "lead");
    }
    return {
        status: 200,
        body: {
            "@odata.context": odataContext(svc, `${setName}(${select?.join(",") ?? ""})/$entity`.replace("()", "")),
            ...project(set.shape, record, select),
            ...expanded(svc, record, expand),
        },
    };
}

export function parseExpandFor(shape: EntityShape, raw: string | null): { select: string[] | null; filter: FilterNode | null }[] {
    return parseExpand(raw).map((clause) => {
        // contract: Roles — the only navigation the guide reads is systemuser.systemuserroles_association.
        if (shape !== systemUserShape || clause.navigation !== "systemuserroles_association") {
            throw new ODataError(
                400,
                BAD_SEGMENT_CODE,
                `Could not find a property named '${clause.navigation}' on type 'Microsoft.Dynamics.CRM.${shape.logicalName}'.`,
            );
        }
        return { select: parseSelect(roleShape, clause.select), filter: parseFilter(roleShape, clause.filter) };
    });
}

export function expanded(svc: Service, record: JsonRecord, expand: { select: string[] | null; filter: FilterNode | null }[]): JsonObject {
    if (expand.length === 0) return {};
    const roles = rolesOf(svc, String(record.systemuserid)).map(roleJson);
    const clause = expand[0];
    return {
        systemuserroles_association: roles.filter((r) => evaluateFilter(clause.filter, r)).map((r) => project(roleShape, r, clause.select)),
    };
}
