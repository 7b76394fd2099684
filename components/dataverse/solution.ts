import * as pulumi from "@pulumi/pulumi";
import { sharedClient, DataverseClient, DataverseError, ErrorCodes, odataGuid, odataString, sleep } from "./client";
import { CheckFailure, ignoreNotFound, isUnknown, mustBeInstanceUrl, progress, validateField, providerChanged, Versioned } from "./common";
import { PROVIDER_VERSION } from "./providerVersion";
import { compareVersions, loadSolutionPackage, SolutionPackage } from "./solutionPackage";

/** Inputs of the solution resource, as the engine stores them. */
export interface SolutionInputs extends Versioned {
    instanceUrl: string;
    /** Local path or https URL of the managed solution zip. */
    source: string;
    importTimeoutMinutes: number;
    retainOnDelete: boolean;
    /** Filled by `check` from the package's solution.xml. */
    uniqueName: string;
    version: string;
    managed: boolean;
    sha256: string;
}

/** Outputs: the inputs plus what Dataverse reports. */
export interface SolutionOutputs extends SolutionInputs {
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

async function findSolution(client: DataverseClient, uniqueName: string): Promise<SolutionRow | undefined> {
    const rows = await client.list<SolutionRow>("solutions", {
        $select: "solutionid,uniquename,version,ismanaged",
        $filter: `uniquename eq ${odataString(uniqueName)}`,
    });
    return rows[0];
}

/** Starts `ImportSolutionAsync`, waiting while another import holds the instance. Undefined: the answer was lost. */
async function startImport(
    client: DataverseClient,
    pkg: SolutionPackage,
    deadline: number,
): Promise<{ AsyncOperationId: string; ImportJobKey: string } | undefined> {
    for (;;) {
        try {
            return await client.action<{ AsyncOperationId: string; ImportJobKey: string }>(
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
                // Never start an import twice: whether it started shows in the solutions table.
                progress(`The answer to ImportSolutionAsync for ${pkg.uniqueName} was lost; watching the solutions table instead.`);
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

/** Imports the package and waits for the job; returns the installed row. */
async function importSolution(client: DataverseClient, pkg: SolutionPackage, timeoutMinutes: number): Promise<SolutionRow> {
    const deadline = Date.now() + timeoutMinutes * 60_000;
    progress(`Importing ${pkg.uniqueName} ${pkg.version} into ${client.instanceUrl}.`);
    const installedRow = async (): Promise<SolutionRow | undefined> => {
        const row = await findSolution(client, pkg.uniqueName);
        return row && compareVersions(row.version, pkg.version) === 0 ? row : undefined;
    };
    const job = await startImport(client, pkg, deadline);
    // Each poll reads the solutions table alongside the job, so the poll that sees the job done usually has the
    // installed row in hand already: one round trip less between the import and the resources that need it.
    let seenInstalled: SolutionRow | undefined;
    if (job) {
        const operationId = odataGuid(job.AsyncOperationId);
        const finished = await client.pollUntil(deadline, async () => {
            const [op, row] = await Promise.all([
                client.get<AsyncOperation>(`asyncoperations(${operationId})`, {
                    $select: "statecode,statuscode,message,friendlymessage,completedon",
                }),
                installedRow(),
            ]);
            seenInstalled = row;
            return op.statecode === COMPLETED ? op : undefined;
        });
        if (!finished) {
            throw new Error(
                `The import of ${pkg.uniqueName} ${pkg.version} did not finish within ${timeoutMinutes} minutes (async operation ${operationId}). It may still complete: run 'pulumi up' again to pick it up.`,
            );
        }
        if (finished.statuscode !== SUCCEEDED) {
            const result = await client
                .callFunction<{ SolutionOperationResult?: { Status?: string; ErrorMessages?: string[] } }>("RetrieveSolutionImportResult", {
                    ImportJobId: odataGuid(job.ImportJobKey),
                })
                .catch(() => undefined);
            const details = [finished.friendlymessage, finished.message, ...(result?.SolutionOperationResult?.ErrorMessages ?? [])].filter(
                (m): m is string => !!m,
            );
            throw new Error(
                `The import of ${pkg.uniqueName} ${pkg.version} failed (status ${finished.statuscode}): ${[...new Set(details)].join(" ") || "no message"}`,
            );
        }
    }
    // A job that succeeded has installed the solution: one read, unless the last poll already saw it (both reads
    // of that poll may have been answered either side of the job's end). Without the job's answer, the table is all there is.
    const installed = job ? (seenInstalled ?? (await installedRow())) : await client.pollUntil(deadline, installedRow);
    if (!installed) {
        throw new Error(`${pkg.uniqueName} ${pkg.version} is not installed on ${client.instanceUrl} after its import.`);
    }
    return installed;
}

/** Brings the instance to the package's version: adopts the same version, upgrades a lower one, refuses a higher one. */
async function ensureInstalled(inputs: SolutionInputs): Promise<{ row: SolutionRow; imported: boolean }> {
    const client = sharedClient(inputs.instanceUrl);
    const pkg = await loadSolutionPackage(inputs.source);
    if (pkg.sha256 !== inputs.sha256) {
        throw new Error(
            `${inputs.source} changed between preview and update (sha256 ${inputs.sha256} → ${pkg.sha256}); run 'pulumi up' again.`,
        );
    }
    const existing = await findSolution(client, pkg.uniqueName);
    if (existing) {
        const order = compareVersions(existing.version, pkg.version);
        if (order > 0) {
            throw new Error(
                `${pkg.uniqueName} ${existing.version} is installed, newer than ${pkg.version} from ${inputs.source}; Dataverse cannot downgrade a solution. Point solutionSource at ${existing.version} or later.`,
            );
        }
        if (existing.ismanaged !== pkg.managed) {
            throw new Error(
                `${pkg.uniqueName} is installed as ${existing.ismanaged ? "managed" : "unmanaged"} but the package is ${pkg.managed ? "managed" : "unmanaged"}; remove the installed solution first.`,
            );
        }
        if (order === 0) {
            return { row: existing, imported: false };
        }
    }
    return { row: await importSolution(client, pkg, inputs.importTimeoutMinutes), imported: true };
}

function outputs(inputs: SolutionInputs, row: SolutionRow, adopted: boolean): SolutionOutputs {
    return { ...inputs, solutionId: row.solutionid, installedVersion: row.version, adopted };
}

/** Imports and tracks the managed Marketplace Lead Writer solution. */
export const solutionProvider: pulumi.dynamic.ResourceProvider = {
    async check(_olds: SolutionInputs, news: SolutionInputs) {
        const failures: CheckFailure[] = [];
        validateField(failures, "instanceUrl", news.instanceUrl, mustBeInstanceUrl);
        validateField(failures, "importTimeoutMinutes", news.importTimeoutMinutes, (v) => {
            if (typeof v !== "number" || !Number.isInteger(v) || v < 1) throw new Error("must be a whole number of minutes, at least 1");
        });
        if (failures.length > 0 || isUnknown(news.source)) {
            return { inputs: news, failures };
        }
        try {
            const pkg = await loadSolutionPackage(news.source);
            if (!pkg.managed) {
                return {
                    inputs: news,
                    failures: [
                        { property: "source", reason: `source: ${news.source} is an unmanaged solution; the guide's package is managed` },
                    ],
                };
            }
            return { inputs: { ...news, uniqueName: pkg.uniqueName, version: pkg.version, managed: pkg.managed, sha256: pkg.sha256 } };
        } catch (err) {
            return { inputs: news, failures: [{ property: "source", reason: `source: ${(err as Error).message}` }] };
        }
    },

    async diff(_id: string, olds: SolutionOutputs, news: SolutionInputs) {
        const replaces = (["instanceUrl", "uniqueName"] as const).filter((k) => olds[k] !== news[k]);
        if (replaces.length === 0 && !isUnknown(news.version) && compareVersions(news.version, olds.installedVersion) < 0) {
            throw new Error(
                `${news.uniqueName} ${olds.installedVersion} is installed; the package at ${news.source} is the older ${news.version}. Dataverse cannot downgrade a solution.`,
            );
        }
        const changed =
            (["source", "version", "sha256", "importTimeoutMinutes", "retainOnDelete"] as const).some((k) => olds[k] !== news[k]) ||
            olds.installedVersion !== news.version ||
            providerChanged(olds, news);
        return { changes: replaces.length > 0 || changed, replaces };
    },

    async create(inputs: SolutionInputs) {
        const { row, imported } = await ensureInstalled(inputs);
        return { id: row.solutionid, outs: outputs(inputs, row, !imported) };
    },

    async read(_id: string, props: SolutionOutputs) {
        const row = await findSolution(sharedClient(props.instanceUrl), props.uniqueName);
        if (!row) {
            return { id: "", props: {} };
        }
        return { id: row.solutionid, props: { ...props, solutionId: row.solutionid, installedVersion: row.version } };
    },

    async update(_id: string, olds: SolutionOutputs, news: SolutionInputs) {
        const { row } = await ensureInstalled(news);
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
}

/** The guide's step 1: Microsoft's managed "Marketplace Lead Writer" solution, installed on the instance. */
export class LeadWriterSolution extends pulumi.dynamic.Resource {
    declare readonly uniqueName: pulumi.Output<string>;
    declare readonly version: pulumi.Output<string>;
    declare readonly solutionId: pulumi.Output<string>;
    /** The version Dataverse reports; downstream resources re-apply their changes when it moves. */
    declare readonly installedVersion: pulumi.Output<string>;
    declare readonly adopted: pulumi.Output<boolean>;

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
                ...args,
                providerVersion: PROVIDER_VERSION,
            },
            opts,
            "dataverse",
            "Solution",
        );
    }
}
