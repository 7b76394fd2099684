/**
 * One mock program process per jest run (mockProgram.ts `--serve`), started by globalSetup and shared by every
 * worker: Node packages load once per run instead of once per spec, and each spec runs once per run.
 */
import { ChildProcess, spawn } from "child_process";
import * as fs from "fs";
import * as http from "http";
import * as path from "path";
import type { MockProgramReport, MockProgramSpec } from "./mockProgram";
import { tsNodeTestEnvironment } from "./testRun";

const ROOT = path.join(__dirname, "..", "..");

/** The environment variable naming the server's socket; workers inherit it from globalSetup. */
export const MOCK_PROGRAM_SOCKET_VARIABLE = "LEAD_MANAGEMENT_MOCK_PROGRAM_SOCKET";

/** How ts-node runs mockProgram.ts with `args`, with the environment it needs. */
export function mockProgramCommand(...args: string[]): { file: string; args: string[]; env: NodeJS.ProcessEnv } {
    return {
        file: process.execPath,
        args: [require.resolve("ts-node/dist/bin.js"), "--transpile-only", path.join(__dirname, "mockProgram.ts"), ...args],
        env: { ...process.env, ...tsNodeTestEnvironment() },
    };
}

/** Starts the server in `runDir` and resolves once it listens; its output goes to a log file there. */
export async function startMockProgramServer(runDir: string): Promise<ChildProcess> {
    const socket = path.join(runDir, "mock-program.sock");
    const log = fs.openSync(logPath(socket), "w");
    const command = mockProgramCommand("--serve", socket);
    const child = spawn(command.file, command.args, { cwd: ROOT, env: command.env, stdio: ["ignore", log, log, "ipc"] });
    fs.closeSync(log);
    await new Promise<void>((resolve, reject) => {
        child.once("message", () => resolve());
        child.once("exit", (code) => reject(new Error(`the mock program server exited (${code}): ${logTail(socket)}`)));
    });
    // Neither the child nor its channel keeps jest's process alive; the server exits when the channel closes.
    child.unref();
    child.channel?.unref();
    process.env[MOCK_PROGRAM_SOCKET_VARIABLE] = socket;
    return child;
}

/** The report for `spec` from the run's server (running it, or waiting for a run already asked for). */
export function requestMockRun(socket: string, spec: MockProgramSpec): Promise<MockProgramReport> {
    return new Promise((resolve, reject) => {
        const request = http.request({ socketPath: socket, method: "POST", path: "/" }, (response) => {
            let body = "";
            response.setEncoding("utf8");
            response.on("data", (chunk: string) => (body += chunk));
            response.on("end", () => {
                if (response.statusCode === 200) resolve(JSON.parse(body) as MockProgramReport);
                else reject(new Error(`the mock program failed: ${body}`));
            });
        });
        request.on("error", (err) => reject(new Error(`the mock program server is gone (${err.message}): ${logTail(socket)}`)));
        request.end(JSON.stringify(spec));
    });
}

function logPath(socket: string): string {
    return `${socket}.log`;
}

function logTail(socket: string): string {
    try {
        return fs.readFileSync(logPath(socket), "utf8").slice(-4000);
    } catch {
        return "(no log)";
    }
}
