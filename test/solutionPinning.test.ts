/**
 * The solution package is pinned and its URL never leaks: downloads are https only and stay on the configured
 * host, `solutionSha256` must match before anything is imported, a package swapped under the same version is
 * refused in preview, and no message quotes a URL's query (a SAS token).
 *
 * Downloads come from an https server started here with a certificate made by openssl for this run. The provider
 * process trusts it through NODE_EXTRA_CA_CERTS, as a user behind a corporate proxy would; this jest process trusts
 * it through the global https agent's CA list, the same effect for requests made here. The https rule itself is
 * never relaxed.
 */
import { execFileSync } from "child_process";
import { createHash } from "crypto";
import * as fs from "fs";
import * as https from "https";
import type { AddressInfo } from "net";
import * as os from "os";
import * as path from "path";
import * as tls from "tls";
import { Emulator, LEAD_WRITER_SOLUTION_UNIQUE_NAME, startEmulator } from "./emulator/server";
import { buildSolutionZip } from "./support/solutionZip";
import { EngineSimulator, ProviderHost, providersOf, ResourceState, PLAIN_STACK_CONFIG, runMockProgram } from "./support/providerHost";
import { downloadFile, MAX_DOWNLOAD_REDIRECTS, redirectTarget } from "../components/dataverse/client";
import { redactUrl } from "../components/redact";
import { loadSolutionPackage, parseSolutionManifest } from "../components/dataverse/solutionPackage";
import { solutionInputs } from "./support/providerInputs";

const SAS = "sv=2024-11-04&se=2030-01-01&sr=b&sp=r&sig=TOPSECRETsignature%3D";

let dir: string;
let certFile: string;
let server: https.Server;
/** `https://127.0.0.1:<port>`; the same server answers as `https://localhost:<port>`, which is another host. */
let origin: string;
let otherHostOrigin: string;
/** Paths the https server was asked for, with their Host header. */
let served: { host: string; path: string }[] = [];
const packages = {
    v1: buildSolutionZip({ uniqueName: LEAD_WRITER_SOLUTION_UNIQUE_NAME, version: "1.0.0.0", managed: true }),
    // The same name and version, other bytes: what a tampered or silently republished package looks like.
    v1Swapped: buildSolutionZip({ uniqueName: LEAD_WRITER_SOLUTION_UNIQUE_NAME, version: "1.0.0.0", managed: true, roles: null }),
    v1_1: buildSolutionZip({ uniqueName: LEAD_WRITER_SOLUTION_UNIQUE_NAME, version: "1.0.0.1", managed: true }),
};
// Computed here, not by the code under test: what `sha256sum <zip>` prints.
const sha256sum = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");
const sha = {
    v1: sha256sum(packages.v1),
    v1Swapped: sha256sum(packages.v1Swapped),
    v1_1: sha256sum(packages.v1_1),
};

let emulator: Emulator;
let host: ProviderHost;
let solutionProvider: string;

function startHttpsServer(key: string, cert: string): Promise<https.Server> {
    const routes: Record<string, (res: import("http").ServerResponse) => void> = {
        "/v1.zip": (res) => res.writeHead(200, { "Content-Type": "application/zip" }).end(packages.v1),
        "/v1-swapped.zip": (res) => res.writeHead(200).end(packages.v1Swapped),
        "/v1.1.zip": (res) => res.writeHead(200).end(packages.v1_1),
        "/same-host-redirect.zip": (res) => res.writeHead(302, { Location: "/v1.zip" }).end(),
        "/other-host-redirect.zip": (res) => res.writeHead(302, { Location: `${otherHostOrigin}/v1.zip` }).end(),
        "/http-redirect.zip": (res) => res.writeHead(301, { Location: `${origin.replace("https:", "http:")}/v1.zip` }).end(),
        "/redirect-loop.zip": (res) => res.writeHead(307, { Location: "/redirect-loop.zip" }).end(),
        "/missing.zip": (res) => res.writeHead(404, "The specified blob does not exist.").end(),
    };
    const srv = https.createServer({ key, cert }, (req, res) => {
        const url = new URL(req.url ?? "/", "https://placeholder");
        served.push({ host: req.headers.host ?? "", path: url.pathname });
        (routes[url.pathname] ?? ((r) => r.writeHead(404).end()))(res);
    });
    return new Promise((resolve) => srv.listen(0, "127.0.0.1", () => resolve(srv)));
}

/** `check` as the engine calls it: the inputs the preview shows, or the failures. */
function check(inputs: Record<string, unknown>, olds: Record<string, unknown> = {}) {
    return host.call<{ inputs?: Record<string, unknown>; failures?: { property: string; reason: string }[] }>(
        solutionProvider,
        "check",
        olds,
        { ...inputs, __provider: solutionProvider },
    );
}

function importsSince(mark: number): number {
    return emulator.requests.slice(mark).filter((r) => r.method === "POST" && r.path.includes("ImportSolutionAsync")).length;
}

beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "solution-pinning-"));
    certFile = path.join(dir, "cert.pem");
    const keyFile = path.join(dir, "key.pem");
    execFileSync(
        "openssl",
        [
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            keyFile,
            "-out",
            certFile,
        ],
        { stdio: "ignore" },
    );
    const cert = fs.readFileSync(certFile, "utf8");
    server = await startHttpsServer(fs.readFileSync(keyFile, "utf8"), cert);
    const port = (server.address() as AddressInfo).port;
    origin = `https://127.0.0.1:${port}`;
    otherHostOrigin = `https://localhost:${port}`;
    https.globalAgent.options.ca = [...tls.rootCertificates, cert];

    const report = await runMockProgram(PLAIN_STACK_CONFIG);
    expect(report.error).toBeUndefined();
    solutionProvider = providersOf(report).get("pulumi-nodejs:dynamic/dataverse:Solution")!;
    emulator = await startEmulator();
    host = await ProviderHost.start({ DATAVERSE_ENDPOINT: emulator.origin, DATAVERSE_TOKEN: "test-token", NODE_EXTRA_CA_CERTS: certFile });
}, 120_000);

afterAll(async () => {
    await host?.stop();
    await emulator?.close();
    await new Promise((resolve) => server?.close(resolve));
    https.globalAgent.options.ca = undefined;
    fs.rmSync(dir, { recursive: true, force: true });
});

beforeEach(() => {
    emulator.reset();
    served = [];
});

describe("redactUrl", () => {
    it.each([
        [`https://x.blob.core.windows.net/c/s.zip?${SAS}`, "https://x.blob.core.windows.net/c/s.zip?<redacted>"],
        ["https://x.blob.core.windows.net/c/s.zip#frag", "https://x.blob.core.windows.net/c/s.zip?<redacted>"],
        ["https://user:p4ss@host.example/s.zip", "https://<redacted>@host.example/s.zip"],
        ["https://host.example/s.zip", "https://host.example/s.zip"],
        ["./solutions/lead writer.zip", "./solutions/lead writer.zip"],
    ])("%s → %s", (url, expected) => {
        expect(redactUrl(url)).toBe(expected);
        expect(redactUrl(expected)).toBe(expected);
    });
});

describe("download rules", () => {
    it("follows a redirect only to https on the same host, a bounded number of times", () => {
        const source = `https://x.blob.core.windows.net/c/s.zip?${SAS}`;
        expect(redirectTarget(source, source, "/c/v2/s.zip?sig=2", 0)).toBe("https://x.blob.core.windows.net/c/v2/s.zip?sig=2");
        const attempts: [string, number, RegExp][] = [
            ["https://evil.example/s.zip", 0, /redirects to another host \(evil\.example\)/],
            ["http://x.blob.core.windows.net/c/s.zip", 0, /which is not https/],
            ["/c/s.zip", MAX_DOWNLOAD_REDIRECTS, /more than 5 redirects/],
        ];
        for (const [location, count, message] of attempts) {
            const attempt = () => redirectTarget(source, source, location, count);
            expect(attempt).toThrow(message);
            expect(attempt).toThrow("https://x.blob.core.windows.net/c/s.zip?<redacted>");
            expect(attempt).not.toThrow(/TOPSECRET/);
        }
    });

    it("downloads over https and refuses http before any request", async () => {
        expect(Buffer.compare(await downloadFile(`${origin}/v1.zip`), packages.v1)).toBe(0);
        await expect(downloadFile(`${origin.replace("https:", "http:")}/v1.zip?${SAS}`)).rejects.toThrow(
            `http://127.0.0.1:${new URL(origin).port}/v1.zip?<redacted> is not an https URL`,
        );
        expect(served).toEqual([{ host: new URL(origin).host, path: "/v1.zip" }]);
    });

    it("follows a same-host redirect, and never contacts another host", async () => {
        expect(Buffer.compare(await downloadFile(`${origin}/same-host-redirect.zip`), packages.v1)).toBe(0);
        await expect(downloadFile(`${origin}/other-host-redirect.zip?${SAS}`)).rejects.toThrow(/another host \(localhost:\d+\)/);
        await expect(downloadFile(`${origin}/http-redirect.zip`)).rejects.toThrow(/not https/);
        await expect(downloadFile(`${origin}/redirect-loop.zip`)).rejects.toThrow(/more than 5 redirects/);
        expect(served.filter((s) => s.host.startsWith("localhost"))).toEqual([]);
        expect(served.filter((s) => s.path === "/redirect-loop.zip")).toHaveLength(MAX_DOWNLOAD_REDIRECTS + 1);
    });

    it("names a failed download without its query", async () => {
        const err = (await downloadFile(`${origin}/missing.zip?${SAS}`).catch((e: Error) => e)) as Error;
        expect(err.message).toBe(`Downloading ${origin}/missing.zip?<redacted> failed: 404 The specified blob does not exist.`);
    });

    it("refuses a non-https URL as a solution source and keeps its query out of package errors", async () => {
        await expect(loadSolutionPackage(`http://x.example/s.zip?${SAS}`)).rejects.toThrow(
            "http://x.example/s.zip?<redacted> is not an https URL: solution packages are downloaded over https only",
        );
        expect(() => parseSolutionManifest(Buffer.from("not a zip"), `https://x.example/s.zip?${SAS}`)).toThrow(
            /^https:\/\/x\.example\/s\.zip\?<redacted> is not a readable zip/,
        );
    });
});

describe("Solution provider", () => {
    const engine = () => new EngineSimulator(host, solutionProvider);

    it("shows the package's sha256 in the preview and passes a matching solutionSha256", async () => {
        const result = await check(solutionInputs(`${origin}/v1.zip`, { expectedSha256: sha.v1 }));
        expect(result.failures ?? []).toEqual([]);
        expect(result.inputs).toMatchObject({ version: "1.0.0.0", sha256: sha.v1, expectedSha256: sha.v1 });

        const { state } = await engine().up(solutionInputs(`${origin}/v1.zip`, { expectedSha256: sha.v1 }));
        expect(state.outputs.sha256).toBe(sha.v1);
        // A new version changes the recorded hash: the update is visible in the preview's diff.
        const next = await check(solutionInputs(`${origin}/v1.1.zip`), state.inputs);
        expect(next.inputs?.sha256).toBe(sha.v1_1);
        expect(await engine().preview(solutionInputs(`${origin}/v1.1.zip`), state)).toEqual({ op: "update", replaces: [] });
    });

    it("fails the preview when the package does not match solutionSha256, and imports nothing", async () => {
        const pinned = solutionInputs(`${origin}/v1-swapped.zip?${SAS}`, { expectedSha256: sha.v1 });
        const result = await check(pinned);
        expect(result.failures).toEqual([
            {
                property: "expectedSha256",
                reason: expect.stringContaining(
                    `solutionSha256: the package at ${origin}/v1-swapped.zip?<redacted> has sha256 ${sha.v1Swapped}, not the pinned ${sha.v1}`,
                ),
            },
        ]);
        expect(JSON.stringify(result.failures)).not.toContain("TOPSECRET");
        await expect(engine().up(pinned)).rejects.toThrow(/check failed: solutionSha256/);
        expect(importsSince(0)).toBe(0);
    });

    it("refuses a malformed solutionSha256 before downloading", async () => {
        const result = await check(solutionInputs(`${origin}/v1.zip`, { expectedSha256: sha.v1.toUpperCase() }));
        expect(result.failures).toEqual([
            { property: "expectedSha256", reason: expect.stringMatching(/^solutionSha256: must be 64 lowercase hex/) },
        ]);
        expect(served).toEqual([]);
    });

    it("checks solutionSha256 again right before importing", async () => {
        // What create would meet if the bytes behind the URL changed after check: the pin is compared to the download.
        const inputs = {
            ...solutionInputs(`${origin}/v1-swapped.zip`, { expectedSha256: sha.v1 }),
            uniqueName: LEAD_WRITER_SOLUTION_UNIQUE_NAME,
            version: "1.0.0.0",
            managed: true,
            sha256: sha.v1,
        };
        await expect(host.call(solutionProvider, "create", inputs)).rejects.toThrow(
            /^solutionSha256: .* has sha256 [0-9a-f]{64}, not the pinned/,
        );
        expect(importsSince(0)).toBe(0);
    });

    it("without a pin, refuses another package of the already imported version in preview, naming both hashes", async () => {
        const { state } = await engine().up(solutionInputs(`${origin}/v1.zip`));
        expect(state.outputs.sha256).toBe(sha.v1);
        const mark = emulator.requests.length;
        const swapped = solutionInputs(`${origin}/v1-swapped.zip?${SAS}`);
        const refusal = new RegExp(
            `imported from a package with sha256 ${sha.v1}, but ${origin.replace(/\./g, "\\.")}/v1-swapped\\.zip\\?<redacted> now has sha256 ${sha.v1Swapped}`,
        );
        await expect(engine().preview(swapped, state)).rejects.toThrow(refusal);
        await expect(engine().up(swapped, state)).rejects.toThrow(refusal);
        expect(emulator.requests.slice(mark).filter((r) => r.method !== "GET")).toEqual([]);

        // Pinning the new package deliberately is the way to accept it.
        expect(await engine().preview({ ...swapped, expectedSha256: sha.v1Swapped }, state)).toEqual({ op: "update", replaces: [] });
    });

    it("refuses redirects to another host and http sources in check, naming the source without its query", async () => {
        const failures = async (source: string) => (await check(solutionInputs(source))).failures?.map((f) => f.reason).join("\n") ?? "";
        expect(await failures(`${origin}/other-host-redirect.zip?${SAS}`)).toMatch(
            /^source: Downloading https:\/\/127\.0\.0\.1:\d+\/other-host-redirect\.zip\?<redacted> failed: it redirects to another host/,
        );
        expect(await failures(`http://127.0.0.1:1/s.zip?${SAS}`)).toBe(
            "source: http://127.0.0.1:1/s.zip?<redacted> is not an https URL: solution packages are downloaded over https only",
        );
        expect(await failures(`${origin}/missing.zip?${SAS}`)).toMatch(/\/missing\.zip\?<redacted> failed: 404/);
        expect(served.filter((s) => s.host.startsWith("localhost"))).toEqual([]);
        expect(host.output).not.toContain("TOPSECRET");
    });

    it("keeps the query out of diff and update messages", async () => {
        const { state } = await engine().up(solutionInputs(`${origin}/v1.1.zip`));
        const older: ResourceState = state;
        await expect(engine().preview(solutionInputs(`${origin}/v1.zip?${SAS}`), older)).rejects.toThrow(
            /the package at https:\/\/127\.0\.0\.1:\d+\/v1\.zip\?<redacted> is the older 1\.0\.0\.0/,
        );
    });
});
