import * as pulumi from "@pulumi/pulumi";
import { sharedClient, DataverseClient, DataverseError, ErrorCodes, odataGuid, odataString, sleep } from "./client";
import { redactUrl } from "../redact";
import {
    CheckFailure,
    ignoreNotFound,
    isUnknown,
    knownChanges,
    mustBeInstanceUrl,
    progress,
    validateField,
    providerChanged,
    Versioned,
    Warned,
    warningCollector,
} from "./common";
import { PROVIDER_VERSION } from "./providerVersion";
import { compareVersions, loadSolutionPackage, SolutionPackage } from "./solutionPackage";

/** Inputs of the solution resource, as the engine stores them. */
export interface SolutionInputs extends Versioned {
    instanceUrl: string;
    /** Local path or https URL of the managed solution zip. */
    source: string;
    importTimeoutMinutes: number;
    retainOnDelete: boolean;
    /**
     * The config `solutionSha256`: when set, the package must have this sha256 (64 lowercase hex digits) before
     * anything is imported. When unset, the `sha256` recorded at the first import pins the package of that version.
     */
    expectedSha256?: string;
    /** Filled by `check` from the package's solution.xml. */
    uniqueName: string;
    version: string;
    managed: boolean;
    sha256: string;
}

/** Outputs: the inputs plus what Dataverse reports. */
export interface SolutionOutputs extends SolutionInputs, Warned {
    solutionId: string;
    installedVersion: string;
    /** The same version was installed before this stack: destroy leaves it in place. */
    adopted: boolean;
}

interface SolutionRow {
    solutionid: string;
    uniquename: string;
    version: string;
    ismanaged: boolean;
}

interface AsyncOperation {
    statecode: number;
    statuscode: number;
    message?: string | null;
    friendlymessage?: string | null;
}

// asyncoperation: statecode 3 = Completed; statuscode 30 Succeeded, 31 Failed, 32 Canceled.
const COMPLETED = 3;
const SUCCEEDED = 30;
// asyncoperation operationtype 54 "Execute Async Request": how ImportSolutionAsync queues its work.
const EXECUTE_ASYNC_REQUEST = 54;
/** Starts of one import after answers that were lost before the service received the request. */
const IMPORT_STARTS = 3;
/** How far the service's clock may be from ours when its timestamps are compared with our request times. */
const CLOCK_MARGIN_MS = 5 * 60_000;

/** An `importjobs` row: one per solution import, named by the solution's unique name. */
interface ImportJob {
    importjobid: string;
    solutionname: string;
    createdon: string;
    completedon?: string | null;
    progress?: number | null;
    _createdby_value?: string | null;
}

const IMPORT_JOB_COLUMNS = "importjobid,solutionname,createdon,completedon,progress,_createdby_value";

async function importJobs(client: DataverseClient, uniqueName: string): Promise<ImportJob[]> {
    return client.list<ImportJob>("importjobs", { $select: IMPORT_JOB_COLUMNS, $filter: `solutionname eq ${odataString(uniqueName)}` });
}

/** The caller's `systemuserid`: import jobs record who started them. */
async function whoAmI(client: DataverseClient): Promise<string> {
    return (await client.get<{ UserId: string }>("WhoAmI")).UserId.toLowerCase();
}

/**
 * Whether a solution found installed is this stack's own after all: the create that imported it may have died
 * before the engine saved its state (a crash right after the import started). Rule: an import job for this
 * solution, started by the same identity no longer ago than the import window (`importTimeoutMinutes`), and
 * completed. Anything older or by someone else was there before the stack, and destroy leaves it in place.
 */
async function importedByThisIdentity(client: DataverseClient, jobs: ImportJob[], windowMinutes: number): Promise<ImportJob | undefined> {
    if (!jobs.some((j) => j.completedon)) return undefined;
    const me = await whoAmI(client);
    const since = Date.now() - windowMinutes * 60_000;
    return jobs.find((j) => (j._createdby_value ?? "").toLowerCase() === me && Date.parse(j.createdon) >= since && !!j.completedon);
}

async function findSolution(client: DataverseClient, uniqueName: string): Promise<SolutionRow | undefined> {
    const rows = await client.list<SolutionRow>("solutions", {
        $select: "solutionid,uniquename,version,ismanaged",
        $filter: `uniquename eq ${odataString(uniqueName)}`,
    });
    return rows[0];
}

type ImportStart = { AsyncOperationId: string; ImportJobKey: string };

/** Starts `ImportSolutionAsync`, waiting while another import holds the instance. Undefined: the answer was lost. */
async function startImport(client: DataverseClient, pkg: SolutionPackage, deadline: number): Promise<ImportStart | undefined> {
    for (;;) {
        try {
            return await client.action<ImportStart>(
                "ImportSolutionAsync",
                {
                    OverwriteUnmanagedCustomizations: false,
                    PublishWorkflows: true,
                    CustomizationFile: pkg.bytes.toString("base64"),
                },
                { timeoutMs: 10 * 60_000 },
            );
        } catch (err) {
            if (err instanceof DataverseError && err.ambiguous) {
                progress(`The answer to ImportSolutionAsync for ${pkg.uniqueName} was lost; looking the import job up.`);
                return undefined;
            }
            if (err instanceof DataverseError && err.hasCode(ErrorCodes.anotherImportRunning) && Date.now() + 30_000 < deadline) {
                progress(`Another solution import is running on ${client.instanceUrl}; waiting 30 s before importing ${pkg.uniqueName}.`);
                await sleep(30_000);
                continue;
            }
            throw err;
        }
    }
}

/** Waits for an async operation to complete. */
async function waitForOperation(
    client: DataverseClient,
    pkg: SolutionPackage,
    operationId: string,
    deadline: number,
): Promise<{ operation: AsyncOperation; installed: SolutionRow | undefined } | undefined> {
    // Each poll reads the solutions table alongside the job, so the poll that sees the job done usually has the
    // installed row in hand already: one round trip less between the import and the resources that need it.
    return client.pollUntil(deadline, async () => {
        const [operation, installed] = await Promise.all([
            client.get<AsyncOperation>(`asyncoperations(${odataGuid(operationId)})`, {
                $select: "statecode,statuscode,message,friendlymessage,completedon",
            }),
            installedRow(client, pkg),
        ]);
        return operation.statecode === COMPLETED ? { operation, installed } : undefined;
    });
}

/** The solution's row when the package's version is the one installed. */
async function installedRow(client: DataverseClient, pkg: SolutionPackage): Promise<SolutionRow | undefined> {
    const row = await findSolution(client, pkg.uniqueName);
    return row && compareVersions(row.version, pkg.version) === 0 ? row : undefined;
}

/**
 * After a lost answer to ImportSolutionAsync: the import job this request started, if the service received it.
 * A job that is new since the request (its id was not listed before) is ours and is followed to its end. Without
 * one, the caller's ExecuteAsync operations still queued or running may yet create it: wait for them, then look
 * again. With neither, no job exists and the import can safely start again (contract: Solution import).
 */
async function findLostImport(
    client: DataverseClient,
    pkg: SolutionPackage,
    before: string[],
    requestedAt: number,
    deadline: number,
): Promise<ImportJob | undefined> {
    for (;;) {
        const fresh = (await importJobs(client, pkg.uniqueName)).filter((j) => !before.includes(j.importjobid.toLowerCase()));
        if (fresh.length > 0) {
            return fresh.sort((a, b) => Date.parse(b.createdon) - Date.parse(a.createdon))[0];
        }
        const me = await whoAmI(client);
        // Only work queued since the request can be its job; the margin allows for the service's clock.
        const queued = (
            await client.list<{ asyncoperationid: string; createdon: string }>("asyncoperations", {
                $select: "asyncoperationid,name,statecode,createdon",
                $filter: `operationtype eq ${EXECUTE_ASYNC_REQUEST} and statecode ne ${COMPLETED} and _createdby_value eq ${odataGuid(me)}`,
            })
        ).filter((op) => Date.parse(op.createdon) >= requestedAt - CLOCK_MARGIN_MS);
        if (queued.length === 0) return undefined;
        progress(`Waiting for ${queued.length} queued system job(s) that may be the lost import of ${pkg.uniqueName}.`);
        for (const op of queued) {
            if (!(await waitForOperation(client, pkg, op.asyncoperationid, deadline))) return undefined;
        }
    }
}

/** Follows an import job found by lookup to its end; throws with the service's messages when it failed. */
async function followImportJob(client: DataverseClient, pkg: SolutionPackage, job: ImportJob, deadline: number): Promise<void> {
    progress(`Found import job ${job.importjobid} for ${pkg.uniqueName}; waiting for it.`);
    const done = await client.pollUntil(deadline, async () => {
        const row = await client.get<ImportJob>(`importjobs(${odataGuid(job.importjobid)})`, { $select: IMPORT_JOB_COLUMNS });
        return row.completedon ? row : undefined;
    });
    if (!done) {
        throw new Error(
            `The import of ${pkg.uniqueName} ${pkg.version} (import job ${job.importjobid}) did not finish in time. It may still complete: run 'pulumi up' again to pick it up.`,
        );
    }
    await throwIfImportFailed(client, pkg, job.importjobid, []);
}

async function throwIfImportFailed(
    client: DataverseClient,
    pkg: SolutionPackage,
    importJobId: string,
    details: (string | null | undefined)[],
) {
    const result = await client
        .callFunction<{ SolutionOperationResult?: { Status?: string; ErrorMessages?: string[] } }>("RetrieveSolutionImportResult", {
            ImportJobId: odataGuid(importJobId),
        })
        .catch(() => undefined);
    const status = result?.SolutionOperationResult?.Status;
    if (details.length === 0 && (status === undefined || status === "Passed")) return;
    const messages = [...details, ...(result?.SolutionOperationResult?.ErrorMessages ?? [])].filter((m): m is string => !!m);
    throw new Error(
        `The import of ${pkg.uniqueName} ${pkg.version} failed (${status ?? "status unknown"}): ${[...new Set(messages)].join(" ") || "no message"}`,
    );
}

/** Imports the package and waits for the job; returns the installed row. */
async function importSolution(
    client: DataverseClient,
    pkg: SolutionPackage,
    timeoutMinutes: number,
    jobsBefore: ImportJob[],
): Promise<SolutionRow> {
    const deadline = Date.now() + timeoutMinutes * 60_000;
    progress(`Importing ${pkg.uniqueName} ${pkg.version} into ${client.instanceUrl}.`);
    // Which import jobs existed before (read by the caller): a lost answer is settled by the job that is new since.
    const before = jobsBefore.map((j) => j.importjobid.toLowerCase());
    // This identity's import of this solution still running (a crashed run's, within the window) is followed, not
    // started twice; an older unfinished row is not taken for running work.
    const me = jobsBefore.some((j) => !j.completedon) ? await whoAmI(client) : undefined;
    const running = jobsBefore.find(
        (j) =>
            !j.completedon &&
            (j._createdby_value ?? "").toLowerCase() === me &&
            Date.parse(j.createdon) >= Date.now() - timeoutMinutes * 60_000 - CLOCK_MARGIN_MS,
    );
    let seenInstalled: SolutionRow | undefined;
    for (let starts = 1; !running; starts++) {
        const requestedAt = Date.now();
        const job = await startImport(client, pkg, deadline);
        if (job) {
            const done = await waitForOperation(client, pkg, job.AsyncOperationId, deadline);
            const finished = done?.operation;
            if (!finished) {
                throw new Error(
                    `The import of ${pkg.uniqueName} ${pkg.version} did not finish within ${timeoutMinutes} minutes (async operation ${job.AsyncOperationId}). It may still complete: run 'pulumi up' again to pick it up.`,
                );
            }
            if (finished.statuscode !== SUCCEEDED) {
                await throwIfImportFailed(client, pkg, job.ImportJobKey, [
                    `status ${finished.statuscode}`,
                    finished.friendlymessage,
                    finished.message,
                ]);
            }
            seenInstalled = done?.installed;
            break;
        }
        const lost = await findLostImport(client, pkg, before, requestedAt, deadline);
        if (lost) {
            await followImportJob(client, pkg, lost, deadline);
            break;
        }
        if (starts >= IMPORT_STARTS) {
            throw new Error(
                `ImportSolutionAsync for ${pkg.uniqueName} ${pkg.version} lost its answer ${starts} times and no import job was started; check the connection to ${client.instanceUrl} and run 'pulumi up' again.`,
            );
        }
        progress(`No import job of ${pkg.uniqueName} exists: the request never reached the service. Starting the import again.`);
    }
    if (running) {
        await followImportJob(client, pkg, running, deadline);
    }
    // A job that succeeded has installed the solution: one read, unless the last poll already saw it (both reads of
    // that poll may have been answered either side of the job's end).
    const installed = seenInstalled ?? (await installedRow(client, pkg));
    if (!installed) {
        throw new Error(`${pkg.uniqueName} ${pkg.version} is not installed on ${client.instanceUrl} after its import.`);
    }
    return installed;
}

/** Brings the instance to the package's version: adopts the same version, upgrades a lower one, refuses a higher one. */
async function ensureInstalled(inputs: SolutionInputs, decideOwnership: boolean): Promise<{ row: SolutionRow; imported: boolean }> {
    const client = sharedClient(inputs.instanceUrl);
    const pkg = await loadSolutionPackage(inputs.source);
    const source = redactUrl(inputs.source);
    // Checked again here, not only in `check`: the bytes imported are the ones just downloaded.
    if (inputs.expectedSha256 && pkg.sha256 !== inputs.expectedSha256) {
        throw new Error(pinMismatch(source, pkg.sha256, inputs.expectedSha256));
    }
    if (pkg.sha256 !== inputs.sha256) {
        throw new Error(`${source} changed between preview and update (sha256 ${inputs.sha256} → ${pkg.sha256}); run 'pulumi up' again.`);
    }
    // The import jobs are needed only for an import, but cost no round trip of their own when read alongside.
    const [existing, jobsBefore] = await Promise.all([findSolution(client, pkg.uniqueName), importJobs(client, pkg.uniqueName)]);
    if (existing) {
        const order = compareVersions(existing.version, pkg.version);
        if (order > 0) {
            throw new Error(
                `${pkg.uniqueName} ${existing.version} is installed, newer than ${pkg.version} from ${source}; Dataverse cannot downgrade a solution. Point solutionSource at ${existing.version} or later.`,
            );
        }
        if (existing.ismanaged !== pkg.managed) {
            throw new Error(
                `${pkg.uniqueName} is installed as ${existing.ismanaged ? "managed" : "unmanaged"} but the package is ${pkg.managed ? "managed" : "unmanaged"}; remove the installed solution first.`,
            );
        }
        if (order === 0) {
            // An update keeps the ownership it recorded; only a create without state has to work it out.
            const job = decideOwnership ? await importedByThisIdentity(client, jobsBefore, inputs.importTimeoutMinutes) : undefined;
            if (job) {
                progress(
                    `${pkg.uniqueName} ${existing.version} was imported by this identity at ${job.createdon} (import job ${job.importjobid}), within the import window: it is this stack's own, and destroy uninstalls it.`,
                );
            }
            return { row: existing, imported: job !== undefined };
        }
    }
    return { row: await importSolution(client, pkg, inputs.importTimeoutMinutes, jobsBefore), imported: true };
}

const SHA256 = /^[0-9a-f]{64}$/;

function pinMismatch(source: string, actual: string, expected: string): string {
    return `solutionSha256: the package at ${source} has sha256 ${actual}, not the pinned ${expected}; nothing was imported. Check where the package comes from, then update solutionSha256 if the new package is the one you want.`;
}

/**
 * With no `solutionSha256`, the package recorded in state pins its version: another package claiming the same
 * version is refused (Dataverse would keep the old one and the state would describe a package never imported).
 */
function refuseSwappedPackage(olds: Partial<SolutionOutputs>, news: SolutionInputs): void {
    if (news.expectedSha256 || isUnknown(news.sha256) || isUnknown(news.version) || !olds.sha256 || !news.sha256) return;
    if (olds.uniqueName === news.uniqueName && olds.version === news.version && olds.sha256 !== news.sha256) {
        throw new Error(
            `${news.uniqueName} ${news.version} was imported from a package with sha256 ${olds.sha256}, but ${redactUrl(news.source)} now has sha256 ${news.sha256} for the same version. A changed package needs a higher version. To accept it anyway (Dataverse keeps the installed copy of ${news.version}), pin it: 'pulumi config set solutionSha256 ${news.sha256}'.`,
        );
    }
}

/** The solution's lasting warnings: an adopted solution stays adopted, so its warning stays too. */
function solutionWarnings(
    props: Pick<SolutionOutputs, "uniqueName" | "instanceUrl" | "adopted" | "retainOnDelete">,
    version: string,
): string[] {
    return props.adopted && !props.retainOnDelete
        ? [
              `${props.uniqueName} ${version} was installed on ${props.instanceUrl} before this stack: it was adopted, not imported, and destroy leaves it installed (with its Lead Writer role).`,
          ]
        : [];
}

function outputs(inputs: SolutionInputs, row: SolutionRow, adopted: boolean): SolutionOutputs {
    const warnings = warningCollector();
    solutionWarnings({ ...inputs, adopted }, row.version).forEach(warnings.add);
    return { ...inputs, solutionId: row.solutionid, installedVersion: row.version, adopted, warnings: warnings.list };
}

/** Imports and tracks the managed Marketplace Lead Writer solution. */
export const solutionProvider: pulumi.dynamic.ResourceProvider = {
    async check(_olds: SolutionInputs, news: SolutionInputs) {
        const failures: CheckFailure[] = [];
        validateField(failures, "instanceUrl", news.instanceUrl, mustBeInstanceUrl);
        validateField(failures, "importTimeoutMinutes", news.importTimeoutMinutes, (v) => {
            if (typeof v !== "number" || !Number.isInteger(v) || v < 1) throw new Error("must be a whole number of minutes, at least 1");
        });
        if (news.expectedSha256 !== undefined && news.expectedSha256 !== "" && !isUnknown(news.expectedSha256)) {
            if (typeof news.expectedSha256 !== "string" || !SHA256.test(news.expectedSha256)) {
                failures.push({
                    property: "expectedSha256",
                    reason: "solutionSha256: must be 64 lowercase hex digits (sha256sum of the zip)",
                });
            }
        }
        if (failures.length > 0 || isUnknown(news.source) || isUnknown(news.expectedSha256)) {
            return { inputs: news, failures };
        }
        const source = redactUrl(news.source);
        try {
            const pkg = await loadSolutionPackage(news.source);
            if (news.expectedSha256 && pkg.sha256 !== news.expectedSha256) {
                return {
                    inputs: news,
                    failures: [{ property: "expectedSha256", reason: pinMismatch(source, pkg.sha256, news.expectedSha256) }],
                };
            }
            if (!pkg.managed) {
                return {
                    inputs: news,
                    failures: [
                        { property: "source", reason: `source: ${source} is an unmanaged solution; the guide's package is managed` },
                    ],
                };
            }
            return { inputs: { ...news, uniqueName: pkg.uniqueName, version: pkg.version, managed: pkg.managed, sha256: pkg.sha256 } };
        } catch (err) {
            return { inputs: news, failures: [{ property: "source", reason: `source: ${(err as Error).message}` }] };
        }
    },

    async diff(_id: string, olds: SolutionOutputs, news: SolutionInputs) {
        // The unique name is missing when check could not read a package preview does not know yet: not a replacement.
        const replaces = knownChanges(olds, news, ["instanceUrl", "uniqueName"]).filter((k) => news[k] !== undefined);
        const unknown = isUnknown(news.instanceUrl) || isUnknown(news.uniqueName);
        if (replaces.length === 0 && !isUnknown(news.version) && compareVersions(news.version, olds.installedVersion) < 0) {
            throw new Error(
                `${news.uniqueName} ${olds.installedVersion} is installed; the package at ${redactUrl(news.source)} is the older ${news.version}. Dataverse cannot downgrade a solution.`,
            );
        }
        // Refused here, in preview, rather than at update: the earliest point that sees both the state and the package.
        if (replaces.length === 0) refuseSwappedPackage(olds, news);
        const changed =
            (["source", "version", "sha256", "expectedSha256", "importTimeoutMinutes", "retainOnDelete"] as const).some(
                (k) => (olds[k] ?? "") !== (news[k] ?? ""),
            ) ||
            olds.installedVersion !== news.version ||
            providerChanged(olds, news);
        return { changes: replaces.length > 0 || unknown || changed, replaces };
    },

    async create(inputs: SolutionInputs) {
        const { row, imported } = await ensureInstalled(inputs, true);
        return { id: row.solutionid, outs: outputs(inputs, row, !imported) };
    },

    async read(_id: string, props: SolutionOutputs) {
        const row = await findSolution(sharedClient(props.instanceUrl), props.uniqueName);
        if (!row) {
            return { id: "", props: {} };
        }
        return {
            id: row.solutionid,
            props: { ...props, solutionId: row.solutionid, installedVersion: row.version, warnings: solutionWarnings(props, row.version) },
        };
    },

    async update(_id: string, olds: SolutionOutputs, news: SolutionInputs) {
        refuseSwappedPackage(olds, news);
        const { row } = await ensureInstalled(news, false);
        return { outs: outputs(news, row, olds.adopted) };
    },

    async delete(id: string, props: SolutionOutputs) {
        if (props.retainOnDelete || props.adopted) {
            progress(
                `Leaving ${props.uniqueName} installed on ${props.instanceUrl} (${props.adopted ? "it was installed before this stack" : "retainSolutionOnDelete"}).`,
            );
            return;
        }
        // Uninstalling removes the solution's components, the Lead Writer role among them.
        await ignoreNotFound(sharedClient(props.instanceUrl).remove("solutions", id));
    },
};

/** Arguments of {@link LeadWriterSolution}. */
export interface LeadWriterSolutionArgs {
    /** The Dynamics 365 instance, `https://<org>.crm<N>.dynamics.com`. */
    readonly instanceUrl: pulumi.Input<string>;
    /** Local path or https URL of the managed solution zip; its solution.xml names the solution and version. */
    readonly source: pulumi.Input<string>;
    /** How long to wait for the import job. */
    readonly importTimeoutMinutes: pulumi.Input<number>;
    /** Keep the solution installed when this resource is deleted. */
    readonly retainOnDelete: pulumi.Input<boolean>;
    /** sha256 the package must have (config `solutionSha256`); unset: the first import's package pins its version. */
    readonly expectedSha256?: pulumi.Input<string>;
}

/** The guide's step 1: Microsoft's managed "Marketplace Lead Writer" solution, installed on the instance. */
export class LeadWriterSolution extends pulumi.dynamic.Resource {
    declare readonly uniqueName: pulumi.Output<string>;
    declare readonly version: pulumi.Output<string>;
    declare readonly solutionId: pulumi.Output<string>;
    /** The version Dataverse reports; downstream resources re-apply their changes when it moves. */
    declare readonly installedVersion: pulumi.Output<string>;
    declare readonly adopted: pulumi.Output<boolean>;
    /** What the user must act on, such as a solution adopted rather than imported; gathered into the stack's `warnings`. */
    declare readonly warnings: pulumi.Output<string[]>;

    constructor(name: string, args: LeadWriterSolutionArgs, opts?: pulumi.CustomResourceOptions) {
        super(
            solutionProvider,
            name,
            {
                uniqueName: undefined,
                version: undefined,
                managed: undefined,
                sha256: undefined,
                solutionId: undefined,
                installedVersion: undefined,
                adopted: undefined,
                warnings: undefined,
                ...args,
                providerVersion: PROVIDER_VERSION,
            },
            opts,
            "dataverse",
            "Solution",
        );
    }
}
