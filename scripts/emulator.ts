/**
 * `npm run emulator [-- --token <value>]… [--app-token <value>=<applicationId>]… [--register-app <applicationId>]…
 *  [--import-polls <n>] [--identity-app <tenantId>/<applicationId>]…`
 *
 * Starts the Dataverse Web API emulator on $PORT (or a free port) and prints its base URL. Without --token or
 * --app-token any non-empty bearer token is the seeded administrator; with them only the listed tokens pass.
 * It also starts the identity platform's token endpoint over HTTPS and prints the AZURE_AUTHORITY_HOST and
 * NODE_EXTRA_CA_CERTS values that make @azure/identity sign in there; each --identity-app is registered with a fresh
 * client secret, printed once. Tokens it issues are accepted by the Dataverse emulator as that app.
 */
import { randomBytes } from "node:crypto";
import { startIdentityPlatform } from "../test/emulator/identityPlatform";
import { startEmulator, type Emulator, type EmulatorOptions } from "../test/emulator/server";

function usage(message: string): never {
    console.error(message);
    console.error(
        "usage: emulator [--token <value>]... [--app-token <value>=<applicationId>]... [--register-app <applicationId>]... [--import-polls <n>] [--identity-app <tenantId>/<applicationId>]...",
    );
    process.exit(2);
}

function parseArgs(argv: string[]): { options: EmulatorOptions; registerApps: string[]; identityApps: string[][] } {
    const tokens: NonNullable<EmulatorOptions["tokens"]> = {};
    let restricted = false;
    const registerApps: string[] = [];
    const identityApps: string[][] = [];
    let importPolls: number | undefined;
    for (let i = 0; i < argv.length; i++) {
        const flag = argv[i];
        const value = argv[i + 1];
        if (value === undefined || value === "") usage(`${flag} needs a value`);
        switch (flag) {
            case "--token":
                tokens[value] = "admin";
                restricted = true;
                break;
            case "--app-token": {
                const eq = value.lastIndexOf("=");
                if (eq <= 0 || eq === value.length - 1) usage("--app-token takes <value>=<applicationId>");
                tokens[value.slice(0, eq)] = { applicationId: value.slice(eq + 1) };
                restricted = true;
                break;
            }
            case "--register-app":
                registerApps.push(value);
                break;
            case "--identity-app": {
                const parts = value.split("/");
                if (parts.length !== 2 || !parts[0] || !parts[1]) usage("--identity-app takes <tenantId>/<applicationId>");
                identityApps.push(parts);
                break;
            }
            case "--import-polls":
                importPolls = Number(value);
                if (!Number.isInteger(importPolls) || importPolls < 0) usage("--import-polls takes a whole number");
                break;
            default:
                usage(`unknown argument ${flag}`);
        }
        i++;
    }
    const envPort = process.env.PORT;
    const port = envPort === undefined || envPort === "" ? 0 : Number(envPort);
    if (!Number.isInteger(port) || port < 0 || port > 65535) usage(`PORT=${envPort} is not a port number`);
    return { options: { port, tokens: restricted ? tokens : undefined, importPolls }, registerApps, identityApps };
}

async function listen(options: EmulatorOptions): Promise<Emulator> {
    try {
        return await startEmulator(options);
    } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "EADDRINUSE") {
            console.error(
                `The emulator cannot listen on 127.0.0.1:${options.port}: the port is taken. Stop what uses it, or pick another port with PORT=<n> (PORT=0 picks a free one).`,
            );
            process.exit(1);
        }
        throw err;
    }
}

async function main(): Promise<void> {
    // Taken first: `npm run emulator` starts this process through `sh -c`, and a SIGTERM to npm ends the shell without
    // passing the signal on, so losing the parent is a stop as well; it may go while the servers are still starting.
    const parent = process.ppid;
    const servers: { close(): Promise<void> }[] = [];
    let started: Promise<unknown> = Promise.resolve();
    let stopping = false;
    const stop = (): void => {
        if (stopping) return;
        stopping = true;
        // A stop during start-up waits for it, so that a server still starting (and its temp folder) is closed too.
        started
            .catch(() => undefined)
            .then(() => Promise.all(servers.map((s) => s.close())))
            .then(
                () => process.exit(0),
                () => process.exit(1),
            );
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
    process.on("SIGHUP", stop);
    setInterval(() => {
        if (process.ppid !== parent) stop();
    }, 200).unref();

    const { options, registerApps, identityApps } = parseArgs(process.argv.slice(2));
    started = (async () => {
        const emulator = await listen(options);
        servers.push(emulator);
        for (const app of registerApps) emulator.registerApplication(app);
        console.log(emulator.baseUrl);
        const identity = await startIdentityPlatform({ onTokenIssued: (token, claims) => emulator.acceptToken(token, claims) });
        servers.push(identity);
        console.log(`AZURE_AUTHORITY_HOST=${identity.authorityHost}`);
        console.log(`NODE_EXTRA_CA_CERTS=${identity.caCertPath}`);
        for (const [tenantId, applicationId] of identityApps) {
            const secret = randomBytes(30).toString("base64url");
            identity.registerApp({ tenantId, applicationId, secret });
            console.log(`identity app ${applicationId} in tenant ${tenantId}: LEAD_WRITER_CLIENT_SECRET=${secret}`);
        }
    })();
    await started;
}

main().catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
});
