import { randomUUID } from "node:crypto";
import { createGraphState, type GraphState } from "./graphState";

/** Fixed ids so tests and fixtures can name the seeded rows without querying for them first. */
export const ORGANIZATION_ID = "6f1c2a9e-0d4b-4c1e-9a57-3b8e2f40c001";
export const ROOT_BUSINESS_UNIT_ID = "6f1c2a9e-0d4b-4c1e-9a57-3b8e2f40b001";
export const CHILD_BUSINESS_UNIT_ID = "6f1c2a9e-0d4b-4c1e-9a57-3b8e2f40b002";
export const ADMIN_USER_ID = "6f1c2a9e-0d4b-4c1e-9a57-3b8e2f40a001";
export const SYSTEM_ADMINISTRATOR_ROLE_ID = "6f1c2a9e-0d4b-4c1e-9a57-3b8e2f40d001";
export const CHILD_SYSTEM_ADMINISTRATOR_ROLE_ID = "6f1c2a9e-0d4b-4c1e-9a57-3b8e2f40d002";

export const ROOT_BUSINESS_UNIT_NAME = "emulatororg";
export const CHILD_BUSINESS_UNIT_NAME = "Sales";
export const SYSTEM_ADMINISTRATOR_ROLE_NAME = "System Administrator";
export const LEAD_WRITER_SOLUTION_UNIQUE_NAME = "MicrosoftMarketplacesLeadIntegrationSolution";
export const LEAD_WRITER_ROLE_NAME = "Microsoft Marketplace Lead Writer";

export type PrivilegeDepthName = "Basic" | "Local" | "Deep" | "Global";
/** Ordered from narrowest to widest, so an index comparison answers "does this depth cover that one". */
export const PRIVILEGE_DEPTHS: readonly PrivilegeDepthName[] = ["Basic", "Local", "Deep", "Global"];

export interface BusinessUnitRow {
    businessunitid: string;
    name: string;
    /** null only for the root business unit. */
    parentbusinessunitid: string | null;
}

export interface SystemUserRow {
    systemuserid: string;
    fullname: string;
    /** Set for application users only. */
    applicationid: string | null;
    /** 0 read-write (interactive), 4 non-interactive. */
    accessmode: number;
    businessunitid: string;
    isdisabled: boolean;
    /** 0 live; 1 soft-deleted by a first DELETE. */
    deletedstate: number;
    azureactivedirectoryobjectid: string;
    internalemailaddress: string;
}

export interface RoleRow {
    roleid: string;
    name: string;
    businessunitid: string;
    /** The root business unit's copy of this role; the root copy points at itself, as Dataverse does. */
    parentrootroleid: string;
    ismanaged: boolean;
    /** Unique name of the solution that installed the role; null for system roles. */
    solutionuniquename: string | null;
    /** Dataverse lets System Administrator through every privilege check. */
    bypassesPrivilegeChecks: boolean;
}

export interface PrivilegeRow {
    privilegeid: string;
    name: string;
    canbebasic: boolean;
    canbelocal: boolean;
    canbedeep: boolean;
    canbeglobal: boolean;
}

export interface UserRoleLink {
    systemuserid: string;
    roleid: string;
}

export interface SolutionRow {
    solutionid: string;
    uniquename: string;
    friendlyname: string;
    version: string;
    ismanaged: boolean;
    installedon: string;
}

/** What a finished async operation applies; plain data so tests can inspect or rewrite it. */
export type PendingWork =
    | { kind: "import"; importjobid: string; uniquename: string; version: string; managed: boolean; roles: SolutionRoleDefinition[] | null }
    | { kind: "uninstall"; uniquename: string };

export interface AsyncOperationRow {
    asyncoperationid: string;
    name: string;
    /** 0 Ready, 1 Suspended, 2 Locked, 3 Completed. */
    statecode: number;
    /** 0 Waiting for resources, 20 In progress, 30 Succeeded, 31 Failed, 32 Canceled. */
    statuscode: number;
    message: string | null;
    friendlymessage: string | null;
    createdon: string;
    completedon: string | null;
    /** 54 "Execute Async Request" for work queued by ImportSolutionAsync; null for other work. */
    operationtype: number | null;
    /** systemuserid of the caller that queued it. */
    createdby: string | null;
    /** GETs still to answer "in progress" before the work is applied. */
    pollsRemaining: number;
    /** ms epoch the work finishes at, when the emulator runs jobs by the clock (`importDurationMs`). */
    dueAt?: number;
    pending: PendingWork | null;
}

export interface ImportJobRow {
    importjobid: string;
    asyncoperationid: string;
    solutionname: string;
    progress: number;
    createdon: string;
    /** systemuserid of the caller that started the import. */
    createdby: string;
    startedon: string;
    completedon: string | null;
    result: "Passed" | "Failed" | null;
    errorMessages: string[];
}

export interface LeadRow {
    leadid: string;
    subject: string;
    lastname: string;
    firstname: string | null;
    emailaddress1: string | null;
    companyname: string | null;
    jobtitle?: string | null;
    leadsourcecode: number | null;
    description: string | null;
    ownerid: string;
    createdon: string;
}

export interface SolutionRoleDefinition {
    name: string;
    privileges: { name: string; depth: PrivilegeDepthName }[];
}

export interface EmulatorQuirks {
    /**
     * Answer to associating a role the user already has. Dataverse's answer is UNCONFIRMED (contract: Roles), so
     * "noop" (204) is the default and "duplicateKeyError" lets a test prove its client reads before writing.
     */
    duplicateRoleAssociation: "noop" | "duplicateKeyError";
}

export interface EmulatorState {
    organizationId: string;
    businessUnits: BusinessUnitRow[];
    systemUsers: SystemUserRow[];
    roles: RoleRow[];
    privileges: PrivilegeRow[];
    /** roleId → privilegeId → depth. */
    rolePrivileges: Record<string, Record<string, PrivilegeDepthName>>;
    userRoles: UserRoleLink[];
    solutions: SolutionRow[];
    asyncOperations: AsyncOperationRow[];
    importJobs: ImportJobRow[];
    leads: LeadRow[];
    /** Entra applications (service principals) the tenant knows, by lower-case application id. */
    knownApplications: Record<string, { failuresBeforeVisible: number }>;
    /** Roles a solution installs when its zip carries no <Roles> of its own (the real package's layout is unknown). */
    solutionCatalog: Record<string, SolutionRoleDefinition[]>;
    quirks: EmulatorQuirks;
    /** The directory (Microsoft Graph) of the instance's tenant: see graph.ts. */
    graph: GraphState;
}

export const LEAD_PRIVILEGE_NAMES = [
    "prvCreateLead",
    "prvReadLead",
    "prvWriteLead",
    "prvDeleteLead",
    "prvAppendLead",
    "prvAppendToLead",
] as const;
export const USER_ENTITY_UI_SETTINGS_PRIVILEGE_NAMES = [
    "prvCreateUserEntityUISettings",
    "prvReadUserEntityUISettings",
    "prvWriteUserEntityUISettings",
] as const;
export const ASYNC_OPERATION_PRIVILEGE_NAMES = [
    "prvReadAsyncOperation",
    "prvWriteAsyncOperation",
    "prvAppendToAsyncOperation",
    "prvDeleteAsyncOperation",
] as const;

/** The set the Lead Writer solution installs; no delete (contract: Leads — UNCONFIRMED, emulated as absent). */
export const LEAD_WRITER_ROLE_PRIVILEGES: readonly { name: string; depth: PrivilegeDepthName }[] = [
    { name: "prvCreateLead", depth: "Global" },
    { name: "prvReadLead", depth: "Global" },
    { name: "prvWriteLead", depth: "Global" },
    { name: "prvAppendLead", depth: "Global" },
];

export function leadWriterRoleDefinition(): SolutionRoleDefinition {
    return { name: LEAD_WRITER_ROLE_NAME, privileges: LEAD_WRITER_ROLE_PRIVILEGES.map((p) => ({ ...p })) };
}

export function nowIso(): string {
    return new Date().toISOString().replace(/\.\d{3}Z$/, "Z");
}

export function createInitialState(): EmulatorState {
    const privileges: PrivilegeRow[] = [
        ...LEAD_PRIVILEGE_NAMES.map((name) => privilege(name, true)),
        // contract: Role privileges — User Entity UI Settings is "Basic depth only".
        ...USER_ENTITY_UI_SETTINGS_PRIVILEGE_NAMES.map((name) => privilege(name, false)),
        ...ASYNC_OPERATION_PRIVILEGE_NAMES.map((name) => privilege(name, true)),
    ];
    const sysAdminPrivileges: Record<string, PrivilegeDepthName> = {};
    for (const p of privileges) sysAdminPrivileges[p.privilegeid] = p.canbeglobal ? "Global" : "Basic";

    return {
        organizationId: ORGANIZATION_ID,
        businessUnits: [
            { businessunitid: ROOT_BUSINESS_UNIT_ID, name: ROOT_BUSINESS_UNIT_NAME, parentbusinessunitid: null },
            { businessunitid: CHILD_BUSINESS_UNIT_ID, name: CHILD_BUSINESS_UNIT_NAME, parentbusinessunitid: ROOT_BUSINESS_UNIT_ID },
        ],
        systemUsers: [
            {
                systemuserid: ADMIN_USER_ID,
                fullname: "Emulator Administrator",
                applicationid: null,
                accessmode: 0,
                businessunitid: ROOT_BUSINESS_UNIT_ID,
                isdisabled: false,
                deletedstate: 0,
                azureactivedirectoryobjectid: "6f1c2a9e-0d4b-4c1e-9a57-3b8e2f40e001",
                internalemailaddress: "admin@emulator.invalid",
            },
        ],
        roles: [
            systemAdministrator(SYSTEM_ADMINISTRATOR_ROLE_ID, ROOT_BUSINESS_UNIT_ID),
            systemAdministrator(CHILD_SYSTEM_ADMINISTRATOR_ROLE_ID, CHILD_BUSINESS_UNIT_ID),
        ],
        privileges,
        rolePrivileges: {
            [SYSTEM_ADMINISTRATOR_ROLE_ID]: { ...sysAdminPrivileges },
            [CHILD_SYSTEM_ADMINISTRATOR_ROLE_ID]: { ...sysAdminPrivileges },
        },
        userRoles: [{ systemuserid: ADMIN_USER_ID, roleid: SYSTEM_ADMINISTRATOR_ROLE_ID }],
        solutions: [],
        asyncOperations: [],
        importJobs: [],
        leads: [],
        knownApplications: {},
        solutionCatalog: { [LEAD_WRITER_SOLUTION_UNIQUE_NAME]: [leadWriterRoleDefinition()] },
        quirks: { duplicateRoleAssociation: "noop" },
        graph: createGraphState(),
    };
}

function privilege(name: string, allDepths: boolean): PrivilegeRow {
    // Random per emulator so a client that hard-codes privilege GUIDs fails (contract: Role privileges).
    return {
        privilegeid: randomUUID(),
        name,
        canbebasic: true,
        canbelocal: allDepths,
        canbedeep: allDepths,
        canbeglobal: allDepths,
    };
}

function systemAdministrator(roleid: string, businessunitid: string): RoleRow {
    return {
        roleid,
        name: SYSTEM_ADMINISTRATOR_ROLE_NAME,
        businessunitid,
        parentrootroleid: SYSTEM_ADMINISTRATOR_ROLE_ID,
        ismanaged: true,
        solutionuniquename: null,
        bypassesPrivilegeChecks: true,
    };
}
