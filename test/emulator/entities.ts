import { createHash } from "node:crypto";
import type { EntityShape, JsonRecord } from "./odata";
import type {
    AsyncOperationRow,
    BusinessUnitRow,
    EmulatorState,
    ImportJobRow,
    LeadRow,
    PrivilegeDepthName,
    PrivilegeRow,
    RoleRow,
    SolutionRow,
    SystemUserRow,
} from "./state";

/**
 * One Web API entity set: its OData shape and how the in-memory rows look on the wire. Lookups appear as
 * `_<name>_value`, as Dataverse returns them (contract: Root business unit, Roles, Application user).
 */
export interface EntitySetDefinition {
    shape: EntityShape;
    records(state: EmulatorState): JsonRecord[];
}

export const businessUnitShape: EntityShape = {
    logicalName: "businessunit",
    key: "businessunitid",
    properties: { businessunitid: "Edm.Guid", name: "Edm.String", _parentbusinessunitid_value: "Edm.Guid" },
};

export const systemUserShape: EntityShape = {
    logicalName: "systemuser",
    key: "systemuserid",
    properties: {
        systemuserid: "Edm.Guid",
        fullname: "Edm.String",
        applicationid: "Edm.Guid",
        accessmode: "Edm.Int32",
        isdisabled: "Edm.Boolean",
        deletedstate: "Edm.Int32",
        _businessunitid_value: "Edm.Guid",
        azureactivedirectoryobjectid: "Edm.Guid",
        internalemailaddress: "Edm.String",
    },
};

export const roleShape: EntityShape = {
    logicalName: "role",
    key: "roleid",
    properties: {
        roleid: "Edm.Guid",
        name: "Edm.String",
        _businessunitid_value: "Edm.Guid",
        _parentrootroleid_value: "Edm.Guid",
        ismanaged: "Edm.Boolean",
    },
};

export const privilegeShape: EntityShape = {
    logicalName: "privilege",
    key: "privilegeid",
    properties: {
        privilegeid: "Edm.Guid",
        name: "Edm.String",
        canbebasic: "Edm.Boolean",
        canbelocal: "Edm.Boolean",
        canbedeep: "Edm.Boolean",
        canbeglobal: "Edm.Boolean",
    },
};

export const rolePrivilegeShape: EntityShape = {
    logicalName: "roleprivileges",
    key: "roleprivilegeid",
    properties: {
        roleprivilegeid: "Edm.Guid",
        roleid: "Edm.Guid",
        privilegeid: "Edm.Guid",
        privilegedepthmask: "Edm.Int32",
    },
};

export const solutionShape: EntityShape = {
    logicalName: "solution",
    key: "solutionid",
    properties: {
        solutionid: "Edm.Guid",
        uniquename: "Edm.String",
        friendlyname: "Edm.String",
        version: "Edm.String",
        ismanaged: "Edm.Boolean",
        installedon: "Edm.DateTimeOffset",
    },
};

export const asyncOperationShape: EntityShape = {
    logicalName: "asyncoperation",
    key: "asyncoperationid",
    properties: {
        asyncoperationid: "Edm.Guid",
        name: "Edm.String",
        statecode: "Edm.Int32",
        statuscode: "Edm.Int32",
        message: "Edm.String",
        friendlymessage: "Edm.String",
        createdon: "Edm.DateTimeOffset",
        completedon: "Edm.DateTimeOffset",
        operationtype: "Edm.Int32",
        _createdby_value: "Edm.Guid",
    },
};

export const importJobShape: EntityShape = {
    logicalName: "importjob",
    key: "importjobid",
    properties: {
        importjobid: "Edm.Guid",
        solutionname: "Edm.String",
        progress: "Edm.Decimal",
        createdon: "Edm.DateTimeOffset",
        _createdby_value: "Edm.Guid",
        startedon: "Edm.DateTimeOffset",
        completedon: "Edm.DateTimeOffset",
    },
};

export const leadShape: EntityShape = {
    logicalName: "lead",
    key: "leadid",
    properties: {
        leadid: "Edm.Guid",
        subject: "Edm.String",
        firstname: "Edm.String",
        lastname: "Edm.String",
        fullname: "Edm.String",
        emailaddress1: "Edm.String",
        companyname: "Edm.String",
        jobtitle: "Edm.String",
        leadsourcecode: "Edm.Int32",
        description: "Edm.String",
        _ownerid_value: "Edm.Guid",
        createdon: "Edm.DateTimeOffset",
    },
};

// contract: Role privileges — privilegedepthmask bits 1 Basic, 2 Local, 4 Deep, 8 Global.
export const DEPTH_MASK: Record<PrivilegeDepthName, number> = { Basic: 1, Local: 2, Deep: 4, Global: 8 };

export function businessUnitJson(row: BusinessUnitRow): JsonRecord {
    return { businessunitid: row.businessunitid, name: row.name, _parentbusinessunitid_value: row.parentbusinessunitid };
}

export function systemUserJson(row: SystemUserRow): JsonRecord {
    return {
        systemuserid: row.systemuserid,
        fullname: row.fullname,
        applicationid: row.applicationid,
        accessmode: row.accessmode,
        isdisabled: row.isdisabled,
        deletedstate: row.deletedstate,
        _businessunitid_value: row.businessunitid,
        azureactivedirectoryobjectid: row.azureactivedirectoryobjectid,
        internalemailaddress: row.internalemailaddress,
    };
}

export function roleJson(row: RoleRow): JsonRecord {
    return {
        roleid: row.roleid,
        name: row.name,
        _businessunitid_value: row.businessunitid,
        _parentrootroleid_value: row.parentrootroleid,
        ismanaged: row.ismanaged,
    };
}

export function privilegeJson(row: PrivilegeRow): JsonRecord {
    return {
        privilegeid: row.privilegeid,
        name: row.name,
        canbebasic: row.canbebasic,
        canbelocal: row.canbelocal,
        canbedeep: row.canbedeep,
        canbeglobal: row.canbeglobal,
    };
}

/** A stable id per (role, privilege) pair, so repeated reads of the same grant agree. */
export function rolePrivilegeId(roleId: string, privilegeId: string): string {
    const hex = createHash("sha1").update(`${roleId}|${privilegeId}`).digest("hex");
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

export function solutionJson(row: SolutionRow): JsonRecord {
    return {
        solutionid: row.solutionid,
        uniquename: row.uniquename,
        friendlyname: row.friendlyname,
        version: row.version,
        ismanaged: row.ismanaged,
        installedon: row.installedon,
    };
}

export function asyncOperationJson(row: AsyncOperationRow): JsonRecord {
    return {
        asyncoperationid: row.asyncoperationid,
        name: row.name,
        statecode: row.statecode,
        statuscode: row.statuscode,
        message: row.message,
        friendlymessage: row.friendlymessage,
        createdon: row.createdon,
        completedon: row.completedon,
        operationtype: row.operationtype,
        _createdby_value: row.createdby,
    };
}

export function importJobJson(row: ImportJobRow): JsonRecord {
    return {
        importjobid: row.importjobid,
        solutionname: row.solutionname,
        progress: row.progress,
        createdon: row.createdon,
        _createdby_value: row.createdby,
        startedon: row.startedon,
        completedon: row.completedon,
    };
}

export function leadJson(row: LeadRow): JsonRecord {
    return {
        leadid: row.leadid,
        subject: row.subject,
        firstname: row.firstname,
        lastname: row.lastname,
        fullname: [row.firstname, row.lastname].filter((s) => s !== null && s !== "").join(" "),
        emailaddress1: row.emailaddress1,
        companyname: row.companyname,
        jobtitle: row.jobtitle ?? null,
        leadsourcecode: row.leadsourcecode,
        description: row.description,
        _ownerid_value: row.ownerid,
        createdon: row.createdon,
    };
}

export const ENTITY_SETS: Record<string, EntitySetDefinition> = {
    businessunits: { shape: businessUnitShape, records: (s) => s.businessUnits.map(businessUnitJson) },
    systemusers: { shape: systemUserShape, records: (s) => s.systemUsers.map(systemUserJson) },
    roles: { shape: roleShape, records: (s) => s.roles.map(roleJson) },
    privileges: { shape: privilegeShape, records: (s) => s.privileges.map(privilegeJson) },
    roleprivilegescollection: {
        shape: rolePrivilegeShape,
        records: (s) =>
            Object.entries(s.rolePrivileges).flatMap(([roleid, grants]) =>
                Object.entries(grants).map(([privilegeid, depth]) => ({
                    roleprivilegeid: rolePrivilegeId(roleid, privilegeid),
                    roleid,
                    privilegeid,
                    privilegedepthmask: DEPTH_MASK[depth],
                })),
            ),
    },
    solutions: { shape: solutionShape, records: (s) => s.solutions.map(solutionJson) },
    asyncoperations: { shape: asyncOperationShape, records: (s) => s.asyncOperations.map(asyncOperationJson) },
    importjobs: { shape: importJobShape, records: (s) => s.importJobs.map(importJobJson) },
    leads: { shape: leadShape, records: (s) => s.leads.map(leadJson) },
};
