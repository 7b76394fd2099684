/**
 * Solutions: ImportSolutionAsync, StageSolution, UninstallSolutionAsync, the async operations and import jobs they
 * start and how that work advances, and RetrieveSolutionImportResult (contract: Solution import).
 */
import { randomUUID } from "node:crypto";
import { ODataError } from "./odata";
import { type SolutionFile, compareVersions, readSolutionFile } from "./solutionFile";
import {
    type AsyncOperationRow,
    type ImportJobRow,
    type PendingWork,
    type PrivilegeDepthName,
    type RoleRow,
    type SolutionRoleDefinition,
    nowIso,
} from "./state";
import {
    IMPORT_ALREADY_RUNNING,
    INVALID_ARGUMENT,
    MANAGED_OVER_UNMANAGED,
    MISSING_DEPENDENCIES,
    PAYLOAD_ERROR,
    UNMANAGED_OVER_MANAGED,
    UNSUPPORTED_ZIP,
    notFound,
} from "./errors";
import { type Caller, type Reply, type Service, isObject, odataContext } from "./protocol";
import { allowsDepth, requireAdministrator } from "./privileges";

export function readCustomizationFile(body: unknown): SolutionFile {
    if (!isObject(body) || typeof body.CustomizationFile !== "string" || body.CustomizationFile.length === 0) {
        throw new ODataError(400, PAYLOAD_ERROR, "The parameter 'CustomizationFile' is required.");
    }
    const file = readSolutionFile(Buffer.from(body.CustomizationFile, "base64"));
    if (file === null) {
        // Message as listed for UnsupportedZipFileForImport in Microsoft Learn "Web service error codes".
        throw new ODataError(
            400,
            UNSUPPORTED_ZIP,
            "The compressed (.zip) or .cab file couldn't be uploaded because the file is corrupted or doesn't contain valid importable files.",
        );
    }
    return file;
}

export function importSolutionAsync(svc: Service, caller: Caller, body: unknown): Reply {
    requireAdministrator(svc, caller, "prvImportCustomization", "solution");
    const known = [
        "CustomizationFile",
        "OverwriteUnmanagedCustomizations",
        "PublishWorkflows",
        "ConvertToManaged",
        "SkipProductUpdateDependencies",
        "HoldingSolution",
        "SkipQueueRibbonJob",
        "LayerDesiredOrder",
        "AsyncRibbonProcessing",
        "ComponentParameters",
        "SolutionParameters",
        "IsTemplateMode",
        "TemplateSuffix",
        "TemplateDisplayNamePrefix",
    ];
    if (isObject(body)) {
        for (const key of Object.keys(body)) {
            if (!known.includes(key)) {
                throw new ODataError(
                    400,
                    PAYLOAD_ERROR,
                    `The parameter '${key}' in the request payload is not a valid parameter for the operation 'ImportSolutionAsync'.`,
                );
            }
        }
        for (const required of ["OverwriteUnmanagedCustomizations", "PublishWorkflows"]) {
            if (typeof body[required] !== "boolean") {
                throw new ODataError(
                    400,
                    PAYLOAD_ERROR,
                    `The parameter '${required}' of 'ImportSolutionAsync' is required and must be a boolean.`,
                );
            }
        }
    }
    const file = readCustomizationFile(body);
    // contract: Solution import — another install running: 0x80071151. Status 400 is UNCONFIRMED.
    if (svc.state.asyncOperations.some((o) => o.statecode !== 3 && o.pending !== null)) {
        throw new ODataError(
            400,
            IMPORT_ALREADY_RUNNING,
            "Cannot start the requested operation [Import] because there is another [Import] running at this moment. Use Solution History for more details.",
        );
    }
    const importJob: ImportJobRow = {
        importjobid: randomUUID(),
        asyncoperationid: randomUUID(),
        solutionname: file.uniqueName,
        progress: 0,
        createdon: nowIso(),
        createdby: caller.user.systemuserid,
        startedon: nowIso(),
        completedon: null,
        result: null,
        errorMessages: [],
    };
    svc.state.importJobs.push(importJob);
    svc.state.asyncOperations.push(
        newOperation(svc, importJob.asyncoperationid, "ImportSolutionAsync", caller, {
            kind: "import",
            importjobid: importJob.importjobid,
            uniquename: file.uniqueName,
            version: file.version,
            managed: file.managed,
            roles: file.roles,
        }),
    );
    return {
        status: 200,
        body: {
            "@odata.context": odataContext(svc, "Microsoft.Dynamics.CRM.ImportSolutionAsyncResponse"),
            AsyncOperationId: importJob.asyncoperationid,
            ImportJobKey: importJob.importjobid,
        },
    };
}

export function stageSolution(svc: Service, caller: Caller, body: unknown): Reply {
    requireAdministrator(svc, caller, "prvImportCustomization", "solution");
    const file = readCustomizationFile(body);
    const installed = svc.state.solutions.find((s) => s.uniquename.toLowerCase() === file.uniqueName.toLowerCase());
    return {
        status: 200,
        body: {
            "@odata.context": odataContext(svc, "Microsoft.Dynamics.CRM.StageSolutionResponse"),
            StageSolutionResults: {
                StageSolutionUploadId: randomUUID(),
                StageSolutionStatus: "Passed",
                SolutionValidationResults: [],
                MissingDependencies: [],
                SolutionDetails: {
                    SolutionUniqueName: file.uniqueName,
                    SolutionFriendlyName: file.friendlyName,
                    SolutionVersion: file.version,
                    IsManaged: file.managed,
                    IsSolutionUpgrade: installed !== undefined,
                    ExistingSolutionVersion: installed?.version ?? null,
                },
            },
        },
    };
}

export function uninstallSolutionAsync(svc: Service, caller: Caller, body: unknown): Reply {
    requireAdministrator(svc, caller, "prvDeleteSolution", "solution");
    if (!isObject(body) || typeof body.SolutionUniqueName !== "string" || body.SolutionUniqueName === "") {
        throw new ODataError(400, PAYLOAD_ERROR, "The parameter 'SolutionUniqueName' is required.");
    }
    const id = randomUUID();
    svc.state.asyncOperations.push(
        newOperation(svc, id, "UninstallSolutionAsync", caller, { kind: "uninstall", uniquename: body.SolutionUniqueName }),
    );
    return {
        status: 200,
        body: { "@odata.context": odataContext(svc, "Microsoft.Dynamics.CRM.UninstallSolutionAsyncResponse"), AsyncOperationId: id },
    };
}

export function newOperation(svc: Service, id: string, name: string, caller: Caller, pending: PendingWork): AsyncOperationRow {
    return {
        asyncoperationid: id,
        name,
        statecode: 0,
        statuscode: 0,
        message: null,
        friendlymessage: null,
        createdon: nowIso(),
        completedon: null,
        // ImportSolutionAsync queues its work as an ExecuteAsync request (operationtype 54, "Execute Async Request",
        // in the asyncoperation_operationtype option set); what UninstallSolutionAsync queues is UNCONFIRMED.
        operationtype: pending.kind === "import" ? 54 : null,
        createdby: caller.user.systemuserid,
        pollsRemaining: svc.importPolls,
        ...(svc.importDurationMs === undefined ? {} : { dueAt: Date.now() + svc.importDurationMs }),
        pending,
    };
}

/**
 * contract: Solution import — polled until statecode 3 (30 succeeded, 31 failed). In progress is reported as
 * statecode 2 / statuscode 20, the pair Dataverse's asyncoperation status reason table defines ("Locked",
 * "In Progress"); the first answer before any poll is 0 / 0 ("Ready", "Waiting For Resources").
 */
export function advance(svc: Service, op: AsyncOperationRow): void {
    if (op.statecode === 3 || op.pending === null) return;
    const job = jobFor(svc, op);
    const running = op.dueAt === undefined ? op.pollsRemaining > 0 : Date.now() < op.dueAt;
    if (running) {
        op.pollsRemaining = Math.max(0, op.pollsRemaining - 1);
        op.statecode = 2;
        op.statuscode = 20;
        if (job !== undefined) job.progress = Math.min(90, job.progress + 30);
        return;
    }
    const failure = op.pending.kind === "import" ? applyImport(svc, op.pending) : applyUninstall(svc, op.pending.uniquename);
    op.statecode = 3;
    op.statuscode = failure === null ? 30 : 31;
    op.message = failure;
    op.friendlymessage = failure;
    // A timed job finished at its due time, even when no request came by at that moment.
    op.completedon = op.dueAt === undefined ? nowIso() : new Date(op.dueAt).toISOString().replace(/\.\d{3}Z$/, "Z");
    if (job !== undefined) {
        job.progress = 100;
        job.completedon = op.completedon;
        job.result = failure === null ? "Passed" : "Failed";
        job.errorMessages = failure === null ? [] : [failure];
    }
}

export function jobFor(svc: Service, op: AsyncOperationRow): ImportJobRow | undefined {
    const pending = op.pending;
    if (pending?.kind !== "import") return undefined;
    return svc.state.importJobs.find((j) => j.importjobid === pending.importjobid);
}

/** Returns a failure message, or null when the solution is installed. */
export function applyImport(svc: Service, work: Extract<PendingWork, { kind: "import" }>): string | null {
    const installed = svc.state.solutions.find((s) => s.uniquename.toLowerCase() === work.uniquename.toLowerCase());
    if (installed !== undefined) {
        if (installed.ismanaged !== work.managed) {
            // contract: Solution import — managed/unmanaged mismatch 0x80048040/41. Which code is which direction is
            // UNCONFIRMED: 40 = managed package over an unmanaged install, 41 = the reverse.
            const code = work.managed ? MANAGED_OVER_UNMANAGED : UNMANAGED_OVER_MANAGED;
            return `Solution import failed with error ${code}: the solution '${work.uniquename}' is installed as ${installed.ismanaged ? "managed" : "unmanaged"} and the package is ${work.managed ? "managed" : "unmanaged"}.`;
        }
        // contract: Solution import — a lower version than installed is refused (message UNCONFIRMED).
        if (compareVersions(work.version, installed.version) < 0) {
            return `The solution '${work.uniquename}' version ${work.version} cannot be imported because version ${installed.version} is already installed. Downgrading a solution is not supported.`;
        }
    }
    const definitions = work.roles ?? svc.state.solutionCatalog[work.uniquename] ?? [];
    const resolved = resolveRoleDefinitions(svc, definitions);
    if (typeof resolved === "string") return resolved;
    if (installed !== undefined) {
        installed.version = work.version;
    } else {
        svc.state.solutions.push({
            solutionid: randomUUID(),
            uniquename: work.uniquename,
            friendlyname: work.uniquename,
            version: work.version,
            ismanaged: work.managed,
            installedon: nowIso(),
        });
    }
    for (const definition of resolved) installRole(svc, work.uniquename, work.managed, definition);
    return null;
}

export function resolveRoleDefinitions(
    svc: Service,
    definitions: SolutionRoleDefinition[],
): { name: string; grants: Record<string, PrivilegeDepthName> }[] | string {
    const resolved: { name: string; grants: Record<string, PrivilegeDepthName> }[] = [];
    for (const definition of definitions) {
        const grants: Record<string, PrivilegeDepthName> = {};
        for (const { name, depth } of definition.privileges) {
            const privilege = svc.state.privileges.find((p) => p.name === name);
            if (privilege === undefined || !allowsDepth(privilege, depth)) {
                // contract: Solution import — missing dependencies 0x8004801D.
                return `Solution import failed with error ${MISSING_DEPENDENCIES}: the role '${definition.name}' needs privilege ${name} at ${depth}, which this organization does not have.`;
            }
            grants[privilege.privilegeid] = depth;
        }
        resolved.push({ name: definition.name, grants });
    }
    return resolved;
}

/**
 * contract: Roles — one copy per business unit, children pointing at the root copy. contract: Solution import —
 * re-importing resets the role's privileges to the solution's set.
 */
export function installRole(
    svc: Service,
    solution: string,
    managed: boolean,
    definition: { name: string; grants: Record<string, PrivilegeDepthName> },
): void {
    const root = svc.state.businessUnits.find((b) => b.parentbusinessunitid === null);
    if (root === undefined) return;
    const copyIn = (buId: string): RoleRow | undefined =>
        svc.state.roles.find((r) => r.name === definition.name && r.solutionuniquename === solution && r.businessunitid === buId);
    let rootCopy = copyIn(root.businessunitid);
    if (rootCopy === undefined) {
        const roleid = randomUUID();
        rootCopy = {
            roleid,
            name: definition.name,
            businessunitid: root.businessunitid,
            parentrootroleid: roleid,
            ismanaged: managed,
            solutionuniquename: solution,
            bypassesPrivilegeChecks: false,
        };
        svc.state.roles.push(rootCopy);
    }
    const rootRoleId = rootCopy.roleid;
    svc.state.rolePrivileges[rootRoleId] = { ...definition.grants };
    for (const bu of svc.state.businessUnits) {
        if (bu.businessunitid === root.businessunitid) continue;
        let copy = copyIn(bu.businessunitid);
        if (copy === undefined) {
            copy = { ...rootCopy, roleid: randomUUID(), businessunitid: bu.businessunitid, parentrootroleid: rootRoleId };
            svc.state.roles.push(copy);
        }
        svc.state.rolePrivileges[copy.roleid] = { ...definition.grants };
    }
}

/** contract: Solution import — uninstall removes the solution's components, its role included. */
export function applyUninstall(svc: Service, uniqueName: string): string | null {
    const solution = svc.state.solutions.find((s) => s.uniquename.toLowerCase() === uniqueName.toLowerCase());
    if (solution === undefined) return `The solution '${uniqueName}' is not installed.`;
    removeSolution(svc, solution.solutionid);
    return null;
}

export function removeSolution(svc: Service, solutionId: string): void {
    const solution = svc.state.solutions.find((s) => s.solutionid === solutionId);
    if (solution === undefined) return;
    const roleIds = new Set(svc.state.roles.filter((r) => r.solutionuniquename === solution.uniquename).map((r) => r.roleid));
    svc.state.roles = svc.state.roles.filter((r) => !roleIds.has(r.roleid));
    for (const id of roleIds) delete svc.state.rolePrivileges[id];
    svc.state.userRoles = svc.state.userRoles.filter((l) => !roleIds.has(l.roleid));
    svc.state.solutions = svc.state.solutions.filter((s) => s.solutionid !== solutionId);
}

export function deleteSolution(svc: Service, caller: Caller, id: string): Reply {
    requireAdministrator(svc, caller, "prvDeleteSolution", "solution");
    if (!svc.state.solutions.some((s) => s.solutionid === id)) throw notFound("solution", id);
    removeSolution(svc, id);
    return { status: 204 };
}

export function retrieveImportResult(svc: Service, importJobId: string): Reply {
    const job = svc.state.importJobs.find((j) => j.importjobid === importJobId);
    if (job === undefined) throw notFound("importjob", importJobId);
    if (job.result === null) {
        // UNCONFIRMED: the answer before the job finishes; callers are expected to poll the async operation first.
        throw new ODataError(400, INVALID_ARGUMENT, `The import job ${importJobId} has not completed yet.`);
    }
    return {
        status: 200,
        body: {
            "@odata.context": odataContext(svc, "Microsoft.Dynamics.CRM.RetrieveSolutionImportResultResponse"),
            SolutionOperationResult: {
                Status: job.result,
                WarningMessages: [],
                ErrorMessages: job.errorMessages,
                ActionLink: null,
            },
        },
    };
}
