/**
 * What one `jest` run shares between its workers, made by jest's globalSetup (`test/support/globalSetup.ts`) before
 * any worker starts, so every worker inherits it through its environment:
 * - a folder for what is worth making once per run: transpiled sources (cachedTranspiler.js) and the mock program
 *   server's socket (mockProgramServer.ts);
 * - the identity platform's certificate, already named by `NODE_EXTRA_CA_CERTS`, which Node reads only at start:
 *   a worker started with it can run `@azure/identity` against the emulated identity platform in-process.
 */
import * as path from "path";
import type { CertificateFiles } from "../emulator/identityPlatform";

/** The environment variable naming the run's shared folder; unset outside jest (e.g. `npm run docs:preview`). */
export const TEST_RUN_DIR_VARIABLE = "LEAD_MANAGEMENT_TEST_RUN_DIR";

export function testRunDir(): string | undefined {
    return process.env[TEST_RUN_DIR_VARIABLE] || undefined;
}

/** The identity platform certificate this process trusts since its start, if any. */
export function trustedTestCertificate(): CertificateFiles | undefined {
    const dir = testRunDir();
    if (dir === undefined) return undefined;
    return { keyPath: path.join(dir, "identity", "key.pem"), certPath: path.join(dir, "identity", "cert.pem") };
}

/**
 * ts-node's project for the tests' child processes (`npm run validate`, `npm run emulator`, the mock program): the
 * project's tsconfig with a transpiler that emits what `--transpile-only` emits and keeps each output in the run's
 * folder (cachedTranspiler.js), so a run transpiles each source file once instead of once per process.
 */
export function tsNodeTestEnvironment(): Record<string, string> {
    const dir = testRunDir();
    return {
        TS_NODE_PROJECT: path.join(__dirname, "ts-node.tsconfig.json"),
        ...(dir === undefined ? {} : { [TEST_RUN_DIR_VARIABLE]: dir }),
    };
}
