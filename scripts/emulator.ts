/**
 * `npm run emulator [-- --token <value>]… [--app-token <value>=<applicationId>]… [--register-app <applicationId>]…
 *  [--import-polls <n>]`
 *
 * Starts the Dataverse Web API emulator on $PORT (or a free port) and prints its base URL. Without --token or
 * --app-token any non-empty bearer token is the seeded administrator; with them only the listed tokens pass.
 */
import { startEmulator, type Emulator, type EmulatorOptions } from "../test/emulator/server";

function usage(message: string): never {
    console.error(message);
    console.error(
        "usage: emulator [--token <value>]... [--app-token <value>=<applicationId>]... [--register-app <applicationId>]... [--import-polls <n>]",
    );
    process.exit(2);
}

function parseArgs(argv: string[]): { options: EmulatorOptions; registerApps: string[] } {
    const tokens: NonNullable<EmulatorOptions["tokens"]> = {};
    let restricted = false;
    const registerApps: string[] = [];
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
    return { options: { port, tokens: restricted ? tokens : undefined, importPolls }, registerApps };
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
    const { options, registerApps } = parseArgs(process.argv.slice(2));
    const emulator = await listen(options);
    for (const app of registerApps) emulator.registerApplication(app);
    console.log(emulator.baseUrl);
    let stopping = false;
    const stop = (): void => {
        if (stopping) return;
        stopping = true;
        emulator.close().then(
            () => process.exit(0),
            () => process.exit(1),
        );
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
    process.on("SIGHUP", stop);
    // `npm run emulator` starts this process through `sh -c`, and a SIGTERM to npm ends the shell without passing the
    // signal on: the emulator would keep listening as an orphan. Losing the parent is therefore a stop as well.
    const parent = process.ppid;
    setInterval(() => {
        if (process.ppid !== parent) stop();
    }, 200).unref();
}

main().catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
});
