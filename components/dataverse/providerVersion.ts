import * as fs from "fs";
import * as path from "path";

/**
 * The project's version, an input of every Dataverse resource. `pulumi destroy` runs the provider code stored in
 * the state, and the engine stores new code only when a resource is updated; a new version makes every resource
 * update once (without writing to Dataverse), so fixed provider code reaches the state before it is needed.
 */
export const PROVIDER_VERSION: string = (
    JSON.parse(fs.readFileSync(path.join(__dirname, "..", "..", "package.json"), "utf8")) as { version: string }
).version;
