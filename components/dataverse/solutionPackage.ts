import { createHash } from "crypto";
import { promises as fs } from "fs";
import { unzipSync } from "fflate";
import { downloadFile } from "./client";
import { redactUrl } from "../redact";

/** What a managed solution zip says about itself in `solution.xml`. */
export interface SolutionPackage {
    uniqueName: string;
    version: string;
    managed: boolean;
    /** sha256 of the zip, so a changed package at the same version is noticed. */
    sha256: string;
    bytes: Buffer;
}

/** sha256 of a package, as `solutionSha256` takes it: 64 lowercase hex digits. */
export function packageSha256(bytes: Uint8Array): string {
    return createHash("sha256").update(bytes).digest("hex");
}

/**
 * Reads a solution package from a local path or an https URL. Any other URL (plain http above all) is refused:
 * the package is imported with administrator rights. Messages quote the source without its query (a SAS token).
 */
export async function loadSolutionPackage(source: string): Promise<SolutionPackage> {
    const label = redactUrl(source);
    let bytes: Buffer;
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(source)) {
        if (!/^https:\/\//i.test(source)) {
            throw new Error(`${label} is not an https URL: solution packages are downloaded over https only`);
        }
        bytes = await downloadFile(source);
    } else {
        bytes = await fs.readFile(source);
    }
    return { ...parseSolutionManifest(bytes, label), sha256: packageSha256(bytes), bytes };
}

function tag(xml: string, name: string, source: string): string {
    const match = new RegExp(`<${name}>\\s*([^<]*?)\\s*</${name}>`).exec(xml);
    if (!match || match[1] === "") {
        throw new Error(`${source}: solution.xml has no <${name}> in its SolutionManifest`);
    }
    return match[1];
}

/** `ImportExportXml/SolutionManifest/{UniqueName,Version,Managed}` of a solution zip. */
export function parseSolutionManifest(
    bytes: Uint8Array,
    sourceUrlOrPath: string,
): { uniqueName: string; version: string; managed: boolean } {
    const source = redactUrl(sourceUrlOrPath);
    let files: Record<string, Uint8Array>;
    try {
        files = unzipSync(bytes, { filter: (file) => file.name.toLowerCase() === "solution.xml" });
    } catch (err) {
        throw new Error(`${source} is not a readable zip: ${(err as Error).message}`, { cause: err });
    }
    const entry = Object.values(files)[0];
    if (!entry) {
        throw new Error(`${source} has no solution.xml: it is not a Dataverse solution package`);
    }
    const xml = Buffer.from(entry).toString("utf8");
    const manifest = /<SolutionManifest[\s>][\s\S]*<\/SolutionManifest>/.exec(xml)?.[0] ?? "";
    const version = tag(manifest, "Version", source);
    if (!/^\d+(\.\d+){1,3}$/.test(version)) {
        throw new Error(`${source}: solution.xml has an invalid Version "${version}"`);
    }
    return { uniqueName: tag(manifest, "UniqueName", source), version, managed: tag(manifest, "Managed", source) === "1" };
}

/** Compares dotted versions numerically: negative when a < b. */
export function compareVersions(a: string, b: string): number {
    const pa = a.split(".").map(Number);
    const pb = b.split(".").map(Number);
    for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
        const diff = (pa[i] ?? 0) - (pb[i] ?? 0);
        if (diff !== 0) return diff;
    }
    return 0;
}
