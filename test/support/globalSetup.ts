import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { makeCertificate } from "../emulator/identityPlatform";
import { startMockProgramServer } from "./mockProgramServer";
import { TEST_RUN_DIR_VARIABLE } from "./testRun";

/**
 * jest globalSetup: runs in jest's own process before any worker starts; workers inherit `process.env` as set here,
 * and globalTeardown sees the globals set here.
 */
export default async function globalSetup(): Promise<void> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "lead-management-test-run-"));
    process.env[TEST_RUN_DIR_VARIABLE] = dir;
    const [server] = await Promise.all([startMockProgramServer(dir), trustIdentityPlatform(dir)]);
    (globalThis as { mockProgramServer?: unknown }).mockProgramServer = server;
}

async function trustIdentityPlatform(dir: string): Promise<void> {
    const identityDir = path.join(dir, "identity");
    fs.mkdirSync(identityDir);
    const { certPath } = await makeCertificate(identityDir);
    // NODE_EXTRA_CA_CERTS names one file: keep trusting what the caller already trusted.
    const inherited = process.env.NODE_EXTRA_CA_CERTS;
    const bundle = path.join(identityDir, "trusted.pem");
    const inheritedPem = inherited && fs.existsSync(inherited) ? `${fs.readFileSync(inherited, "utf8").trimEnd()}\n` : "";
    fs.writeFileSync(bundle, inheritedPem + fs.readFileSync(certPath, "utf8"));
    process.env.NODE_EXTRA_CA_CERTS = bundle;
}
