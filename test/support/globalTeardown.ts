import type { ChildProcess } from "child_process";
import * as fs from "fs";
import { testRunDir } from "./testRun";

/** jest globalTeardown: stops and removes what globalSetup started and made, so a test run leaves nothing behind. */
export default async function globalTeardown(): Promise<void> {
    const server = (globalThis as { mockProgramServer?: ChildProcess }).mockProgramServer;
    if (server !== undefined && server.exitCode === null && server.signalCode === null) {
        const exited = new Promise((resolve) => server.once("exit", resolve));
        // globalSetup unreferenced the server so that it never holds jest open; referenced again, jest's process
        // stays until the server is gone, instead of ending with this wait and the folder below left behind.
        server.ref();
        server.kill();
        await exited;
    }
    const dir = testRunDir();
    if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true });
}
