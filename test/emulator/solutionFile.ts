import { strFromU8, unzipSync } from "fflate";
import { PRIVILEGE_DEPTHS, type PrivilegeDepthName, type SolutionRoleDefinition } from "./state";

export interface SolutionFile {
    uniqueName: string;
    friendlyName: string;
    version: string;
    managed: boolean;
    /** null when customizations.xml carries no <Roles> element (then the emulator's catalog decides). */
    roles: SolutionRoleDefinition[] | null;
}

function unescapeXml(text: string): string {
    return text
        .replace(/&lt;/g, "<")
        .replace(/&gt;/g, ">")
        .replace(/&quot;/g, '"')
        .replace(/&apos;/g, "'")
        .replace(/&amp;/g, "&");
}

function element(xml: string, name: string): string | null {
    const match = new RegExp(`<${name}(?:\\s[^>]*)?>([^<]*)</${name}>`).exec(xml);
    return match ? unescapeXml(match[1].trim()) : null;
}

function attribute(tag: string, name: string): string | null {
    const match = new RegExp(`\\s${name}="([^"]*)"`).exec(tag);
    return match ? unescapeXml(match[1]) : null;
}

/** Zip entry names differ in case and leading folders between packagers; match on the file name alone. */
function findEntry(files: Record<string, Uint8Array>, fileName: string): Uint8Array | undefined {
    const key = Object.keys(files).find((k) => k.split("/").pop()?.toLowerCase() === fileName.toLowerCase());
    return key === undefined ? undefined : files[key];
}

function parseRoles(customizations: string): SolutionRoleDefinition[] | null {
    const rolesBlock = /<Roles\s*\/>|<Roles(?:\s[^>]*)?>([\s\S]*?)<\/Roles>/.exec(customizations);
    if (!rolesBlock) return null;
    const roles: SolutionRoleDefinition[] = [];
    const roleRe = /<Role\s([^>]*)>([\s\S]*?)<\/Role>/g;
    for (let m = roleRe.exec(rolesBlock[1] ?? ""); m !== null; m = roleRe.exec(rolesBlock[1] ?? "")) {
        const name = attribute(` ${m[1]}`, "name");
        if (name === null) continue;
        const privileges: { name: string; depth: PrivilegeDepthName }[] = [];
        const privRe = /<RolePrivilege\s([^>]*?)\/?>/g;
        for (let p = privRe.exec(m[2]); p !== null; p = privRe.exec(m[2])) {
            const privName = attribute(` ${p[1]}`, "name");
            const level = attribute(` ${p[1]}`, "level");
            const depth = PRIVILEGE_DEPTHS.find((d) => d === level);
            if (privName !== null && depth !== undefined) privileges.push({ name: privName, depth });
        }
        roles.push({ name, privileges });
    }
    return roles;
}

/**
 * Reads the manifest the contract names (Solution import: `ImportExportXml/SolutionManifest/UniqueName`,
 * `Version`, `Managed`). Returns null for anything that is not a readable solution package.
 */
export function readSolutionFile(zip: Buffer): SolutionFile | null {
    let files: Record<string, Uint8Array>;
    try {
        files = unzipSync(new Uint8Array(zip));
    } catch {
        return null;
    }
    const solutionXml = findEntry(files, "solution.xml");
    if (solutionXml === undefined) return null;
    const xml = strFromU8(solutionXml);
    const manifest = /<SolutionManifest(?:\s[^>]*)?>([\s\S]*?)<\/SolutionManifest>/.exec(xml);
    if (!manifest || !/<ImportExportXml[\s>]/.test(xml)) return null;
    const uniqueName = element(manifest[1], "UniqueName");
    const version = element(manifest[1], "Version");
    const managed = element(manifest[1], "Managed");
    if (!uniqueName || !version || !/^\d+(\.\d+){1,3}$/.test(version) || managed === null) return null;
    const localized = /<LocalizedName\s([^>]*)\/?>/.exec(manifest[1]);
    const friendlyName = (localized && attribute(` ${localized[1]}`, "description")) || uniqueName;
    const customizations = findEntry(files, "customizations.xml");
    return {
        uniqueName,
        friendlyName,
        version,
        // Dataverse writes 1 for managed, 0 for unmanaged, 2 for "both" packages; only 1 is treated as managed here.
        managed: managed === "1",
        roles: customizations === undefined ? null : parseRoles(strFromU8(customizations)),
    };
}

/** Negative when a < b, by dotted numeric parts (1.10 > 1.9). */
export function compareVersions(a: string, b: string): number {
    const pa = a.split(".").map(Number);
    const pb = b.split(".").map(Number);
    for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
        const d = (pa[i] ?? 0) - (pb[i] ?? 0);
        if (d !== 0) return d;
    }
    return 0;
}
