/**
 * Runs the lead check core (`runLeadCheck`) once per target read from stdin (a JSON array) and prints each outcome as
 * one JSON array on stdout. It exists so that a test can drive many failure classes through the real
 * `@azure/identity` flow in a single child process: NODE_EXTRA_CA_CERTS, which the emulated identity platform needs,
 * is read only when a process starts. The deploying identity (DATAVERSE_TOKEN) deletes each lead that lands.
 */
import * as fs from "node:fs";
import { clientFromEnvironment } from "../../components/dataverse/client";
import { LeadCheckError, type LeadCheckTarget, runLeadCheck } from "../../components/validation/leadCheck";

export type LeadCheckOutcome =
    { ok: true; systemUserId: string; deleted: boolean } | { ok: false; failure: string; exitCode: number; message: string };

async function main(): Promise<void> {
    const targets = JSON.parse(fs.readFileSync(0, "utf8")) as LeadCheckTarget[];
    const outcomes: LeadCheckOutcome[] = [];
    for (const target of targets) {
        try {
            const result = await runLeadCheck(target, {
                cleanupClient: clientFromEnvironment(target.instanceUrl, { retry: { maxAttempts: 1 } }),
                clientOptions: { retry: { maxAttempts: 1 } },
            });
            outcomes.push({ ok: true, systemUserId: result.systemUserId, deleted: result.deleted });
        } catch (err) {
            const failure = err instanceof LeadCheckError ? err : new LeadCheckError("unexpected", `not a LeadCheckError: ${String(err)}`);
            outcomes.push({ ok: false, failure: failure.failure, exitCode: failure.exitCode, message: failure.message });
        }
    }
    process.stdout.write(JSON.stringify(outcomes));
}

main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
});
