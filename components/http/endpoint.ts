import * as pulumi from "@pulumi/pulumi";

/**
 * The one rule for an endpoint override read from the environment (`GRAPH_ENDPOINT`, and the same rule as
 * `DATAVERSE_ENDPOINT`): requests carry a bearer token, so they may go only over https, or over plain http to this
 * machine (an emulator on 127.0.0.1). Anything else is refused before a token is fetched. An accepted override is
 * announced once per process, because every call then goes somewhere other than the real service.
 */

const LOOPBACK_HOSTS: readonly string[] = ["localhost", "127.0.0.1", "[::1]", "::1"];

function isLoopback(hostname: string): boolean {
    return LOOPBACK_HOSTS.includes(hostname.toLowerCase()) || /^127(\.\d{1,3}){3}$/.test(hostname);
}

/**
 * Checks an endpoint override and returns its origin. Throws naming `variable` when the value is not an https URL
 * or an http URL on the loopback interface, or when it carries a path, query or credentials.
 */
export function checkEndpointOverride(variable: string, value: string): string {
    let url: URL;
    try {
        url = new URL(value);
    } catch {
        throw new Error(`${variable}="${value}" is not a URL; expected https://<host> or http://127.0.0.1:<port>`);
    }
    if (url.protocol !== "https:" && !(url.protocol === "http:" && isLoopback(url.hostname))) {
        throw new Error(
            `${variable}="${value}" would send bearer tokens in the clear; use https, or http only to this machine (127.0.0.1, ::1, localhost)`,
        );
    }
    if (url.username || url.password || (url.pathname !== "/" && url.pathname !== "") || url.search || url.hash) {
        throw new Error(`${variable}="${value}" must be an origin only (scheme, host, port), without path, query or credentials`);
    }
    return url.origin;
}

// A plain object, not a Set: closure serialization stores a Set as a plain object.
const announced: Record<string, true> = {};

/**
 * The checked override in `process.env[variable]`, or undefined when it is unset or blank. Read at call time, never
 * stored; the first use of each value is announced as a warning naming the service it replaces.
 */
export function endpointOverride(variable: string, replaces: string): string | undefined {
    const raw = process.env[variable]?.trim();
    if (!raw) return undefined;
    const origin = checkEndpointOverride(variable, raw);
    const key = `${variable}=${origin}`;
    if (!announced[key]) {
        announced[key] = true;
        void pulumi.log.warn(`${variable} is set: requests meant for ${replaces} go to ${origin}.`);
    }
    return origin;
}
