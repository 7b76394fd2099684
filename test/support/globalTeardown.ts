import * as fs from "fs";
import { testRunDir } from "./testRun";

/** jest globalTeardown: removes what globalSetup made, so a test run leaves no temporary folder behind. */
export default function globalTeardown(): void {
    const dir = testRunDir();
    if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true });
}
