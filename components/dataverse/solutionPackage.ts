import { createHash } from "crypto";
import { promises as fs } from "fs";
import { unzipSync } from "fflate";
import { downloadFile } from "./client";

/** What a managed solution zip says about itself in `solution.xml`. */
export interface SolutionPackage {
    uniqueName: string;
    version: string;
    managed: boolean;
    /** sha256 of the zip, so a changed package at the same version is noticed. */
    sha256: string;
    bytes: Buffer;
}

/** Reads a solution package from a local path or an https URL. */
export async function loadSolutionPackage(source: string): Promise<SolutionPackage> {
    const bytes = /^https:\/\//i.test(source) ? await downloadFile(source) : await fs.readFile(source);
    return { ...parseSolutionManifest(bytes, source), sha256: createHash("sha256").update(bytes).digest("hex"), bytes };
}

function tag(xml: string, name: string, source: string): string {
    const match = new RegExp(`<${name}>\\s*([^<]*?)\\s*</${name}>`).exec(xml);
    if (!match || match[1] === "") {
        throw new Error(`${source}: solution.xml has no <${name}> in its SolutionManifest`);
    }
    return match[1];
}

/** `ImportExportXml/SolutionManifest/{UniqueName,Version,Managed}` of a solution zip. */
export function parseSolutionManifest(bytes: Uint8Array, source: string): { uniqueName: string; version: string; managed: boolean } {
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
