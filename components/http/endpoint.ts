import { redactUrl } from "../redact";

/**
 * The one rule for an endpoint override read from the environment (`DATAVERSE_ENDPOINT`, `GRAPH_ENDPOINT`):
 * requests carry a bearer token, so they may go to any origin over https, or over plain http only to this machine
 * (an emulator or a local proxy on loopback). Anything else is refused before a token is fetched, naming the
 * variable. An accepted override is announced once per process, because every call then goes somewhere other than
 * the real service.
 */

function isLoopbackHost(hostname: string): boolean {
    // URL normalises 127.1 to 127.0.0.1 and [0:0:0:0:0:0:0:1] to [::1].
    return hostname === "localhost" || hostname === "[::1]" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname);
}

/** Checks an endpoint override and returns its origin; the error names `variable` and never quotes a query. */
export function checkEndpointOverride(variable: string, value: string): string {
    const refuse = (why: string) =>
        new Error(
            `${variable} "${redactUrl(value)}" ${why}. Set it to an origin: https://<host>[:<port>], or http:// only for a loopback host (127.0.0.1, localhost, [::1]); or unset it to call the service itself.`,
        );
    let url: URL;
    try {
        url = new URL(value);
    } catch {
        throw refuse("is not a URL");
    }
    if (url.protocol !== "https:" && url.protocol !== "http:") {
        throw refuse(`uses ${url.protocol.replace(/:$/, "")}, not http(s)`);
    }
    if (url.username || url.password) {
        throw refuse("carries user info");
    }
    if (url.pathname !== "/" || value.includes("?") || value.includes("#")) {
        throw refuse("has a path, query or fragment; the client adds the API path itself");
    }
    if (url.protocol === "http:" && !isLoopbackHost(url.hostname)) {
        throw refuse("uses http to a host that is not loopback: the bearer token would cross the network unencrypted");
    }
    return url.origin;
}

// A plain object, not a Set: it is serialized with the providers (empty) and filled in the provider process.
const announced: Record<string, boolean> = {};

/**
 * The checked override in `process.env[variable]`, or undefined when it is unset or blank. Read at call time, never
 * stored. The first use of each value is announced on the console: a dynamic provider's `pulumi.log` reaches no
 * engine, while its console output is shown.
 */
export function endpointOverride(variable: string, replaces: string): string | undefined {
    const raw = process.env[variable]?.trim();
    if (!raw) return undefined;
    const origin = checkEndpointOverride(variable, raw);
    const key = `${variable}=${origin}`;
    if (!announced[key]) {
        announced[key] = true;
        console.warn(`warning: ${variable} is set: requests meant for ${replaces}, with their bearer tokens, go to ${origin} instead.`);
    }
    return origin;
}
