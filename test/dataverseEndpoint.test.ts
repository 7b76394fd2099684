/**
 * `DATAVERSE_ENDPOINT` redirects every Dataverse call, bearer token included: only a loopback origin may use plain
 * http, anything else must be an https origin, and whenever it is set the process says so once.
 */
import { Emulator, startEmulator } from "./emulator/server";
import { ProviderHost, providersOf, PLAIN_STACK_CONFIG, runMockProgram } from "./support/providerHost";
import { clientFromEnvironment, parseDataverseEndpoint, sharedClient } from "../components/dataverse/client";

const INSTANCE = "https://contoso.crm.dynamics.com";

describe("parseDataverseEndpoint", () => {
    it.each([
        ["http://127.0.0.1:8080", "http://127.0.0.1:8080"],
        ["http://127.1.2.3:8080/", "http://127.1.2.3:8080"],
        ["http://localhost:5555", "http://localhost:5555"],
        ["http://[::1]:7000", "http://[::1]:7000"],
        ["https://127.0.0.1:8443", "https://127.0.0.1:8443"],
        ["https://dataverse-proxy.contoso.com", "https://dataverse-proxy.contoso.com"],
        ["HTTPS://Proxy.Contoso.com:443/", "https://proxy.contoso.com"],
    ])("accepts %s as %s", (value, origin) => {
        expect(parseDataverseEndpoint(value)).toBe(origin);
    });

    it.each([
        ["http://dataverse-proxy.contoso.com", /uses http to a host that is not loopback/],
        ["http://10.0.0.5:8080", /uses http to a host that is not loopback/],
        ["http://127.0.0.1.nip.io", /uses http to a host that is not loopback/],
        ["ftp://127.0.0.1", /uses ftp, not http\(s\)/],
        ["127.0.0.1:8080", /is not a URL|uses 127\.0\.0\.1/],
        ["not a url", /is not a URL/],
        ["https://proxy.contoso.com/api/data/v9.2/", /has a path, query or fragment/],
        ["https://proxy.contoso.com/?code=SECRET", /has a path, query or fragment/],
        ["https://user:SECRET@proxy.contoso.com", /carries user info/],
    ])("refuses %s, naming DATAVERSE_ENDPOINT", (value, reason) => {
        const attempt = () => parseDataverseEndpoint(value);
        expect(attempt).toThrow(/^DATAVERSE_ENDPOINT "/);
        expect(attempt).toThrow(reason);
        expect(attempt).not.toThrow(/SECRET/);
    });
});

describe("clientFromEnvironment", () => {
    const saved = process.env.DATAVERSE_ENDPOINT;
    let warnings: string[];
    beforeEach(() => {
        warnings = [];
        jest.spyOn(console, "warn").mockImplementation((...args: unknown[]) => {
            warnings.push(args.join(" "));
        });
    });
    afterEach(() => {
        jest.restoreAllMocks();
        if (saved === undefined) delete process.env.DATAVERSE_ENDPOINT;
        else process.env.DATAVERSE_ENDPOINT = saved;
    });

    it("refuses plain http to a remote host before any client exists", () => {
        process.env.DATAVERSE_ENDPOINT = "http://attacker.example:8080";
        expect(() => clientFromEnvironment(INSTANCE)).toThrow(/^DATAVERSE_ENDPOINT "http:\/\/attacker\.example:8080" uses http/);
        expect(() => sharedClient(INSTANCE)).toThrow(/^DATAVERSE_ENDPOINT/);
        expect(warnings).toEqual([]);
    });

    it("warns once per process, naming the endpoint, however many clients are made", () => {
        process.env.DATAVERSE_ENDPOINT = "http://127.0.0.1:39017/";
        clientFromEnvironment(INSTANCE);
        clientFromEnvironment(INSTANCE);
        sharedClient(INSTANCE);
        expect(warnings).toEqual([expect.stringMatching(/DATAVERSE_ENDPOINT is set: .* go to http:\/\/127\.0\.0\.1:39017 instead/)]);
    });

    it("says nothing when DATAVERSE_ENDPOINT is unset", () => {
        delete process.env.DATAVERSE_ENDPOINT;
        expect(clientFromEnvironment(INSTANCE).baseUrl).toBe(`${INSTANCE}/api/data/v9.2/`);
        expect(warnings).toEqual([]);
    });
});

describe("in the provider process", () => {
    let emulator: Emulator;
    let solutionProvider: string;
    const props = {
        providerVersion: "1.0.0",
        instanceUrl: INSTANCE,
        uniqueName: "MicrosoftMarketplacesLeadIntegrationSolution",
        installedVersion: "1.0.0.0",
    };

    beforeAll(async () => {
        const report = await runMockProgram(PLAIN_STACK_CONFIG);
        expect(report.error).toBeUndefined();
        solutionProvider = providersOf(report).get("pulumi-nodejs:dynamic/dataverse:Solution")!;
        emulator = await startEmulator();
    }, 120_000);
    afterAll(async () => {
        await emulator?.close();
    });
    beforeEach(() => {
        emulator.reset();
    });

    it("fails every Dataverse call when the endpoint is plain http to a remote host, and sends no token", async () => {
        const host = await ProviderHost.start({ DATAVERSE_ENDPOINT: "http://dataverse.attacker.example", DATAVERSE_TOKEN: "test-token" });
        try {
            for (let i = 0; i < 2; i++) {
                await expect(host.call(solutionProvider, "read", "id", props)).rejects.toThrow(
                    /^DATAVERSE_ENDPOINT "http:\/\/dataverse\.attacker\.example" uses http/,
                );
            }
        } finally {
            await host.stop();
        }
    });

    it("prints the warning once per provider process, naming the endpoint", async () => {
        const host = await ProviderHost.start({ DATAVERSE_ENDPOINT: emulator.origin, DATAVERSE_TOKEN: "test-token" });
        try {
            for (let i = 0; i < 3; i++) {
                await host.call(solutionProvider, "read", "id", props);
            }
            expect(emulator.requests.length).toBe(3);
            expect(host.output.split(`go to ${emulator.origin} instead`).length - 1).toBe(1);
        } finally {
            await host.stop();
        }
    });
});
