/**
 * A loopback emulator of the Dataverse Web API slice described in docs/dataverse-contract.md. This file wires the
 * HTTP server: request log, fault injection, authentication, then routing (routes.ts) to one file per area. See
 * README.md in this folder for which file holds which behaviour.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { authenticate, principalOf } from "./auth";
import { badSegment, PAYLOAD_ERROR } from "./errors";
import { FaultPlan, faultReply, sleep, type Fault, type FaultSchedule, type RequestLogEntry } from "./faults";
import { ODataError } from "./odata";
import { parseSegment, readBody, safeDecode, type Reply, type Service, type TokenPrincipal } from "./protocol";
import { route } from "./routes";
import { advanceDirectorySync, GRAPH_PATH, routeGraph } from "./graph";
import { advance } from "./solutions";
import { createInitialState, type EmulatorState } from "./state";

export * from "./state";
export * from "./graphState";
export type { Fault, RequestLogEntry } from "./faults";

export interface EmulatorOptions {
    /** 0 (default) = a free port on 127.0.0.1. */
    port?: number;
    /** When set, only these bearer tokens are accepted; each maps to the principal it authenticates as. Default: any non-empty token authenticates as the seeded administrator. */
    tokens?: Record<string, { applicationId: string } | "admin">;
    /**
     * How many requests an import or uninstall stays "in progress" for (default 2). Each request to the emulator moves
     * running work one step on, as time passes for the real service whether or not anyone polls.
     */
    importPolls?: number;
    /**
     * When set, an import or uninstall finishes this many milliseconds after it starts, whoever polls (instead of
     * after `importPolls` requests): the clock a real job keeps. The row's `dueAt` says when.
     */
    importDurationMs?: number;
    /**
     * Round-trip time added to every request, half before it is carried out and half before its answer leaves, as a
     * network between the caller and the service would (e.g. for measuring how many round trips a run needs).
     */
    latencyMs?: number;
}

export interface Emulator {
    origin: string;
    baseUrl: string;
    state: EmulatorState;
    requests: RequestLogEntry[];
    injectFault(match: { method?: string; path: RegExp }, on: FaultSchedule, fault: Fault): void;
    clearFaults(): void;
    /** Starts over between tests: the state a new instance has (or a copy of `to`), no faults, an empty request log. */
    reset(to?: EmulatorState): void;
    /** The first logged request (already logged or still to come) that matches. */
    waitForRequest(match: { method?: string; path: RegExp }): Promise<RequestLogEntry>;
    /** Resolves once no request is being worked on (held or delayed ones included). */
    whenIdle(): Promise<void>;
    registerApplication(applicationId: string, opts?: { visibleAfter?: number }): void;
    /**
     * Accepts a token the identity platform issued (see identityPlatform.ts `onTokenIssued`): a user's token (with
     * `objectId`) acts as the systemuser synchronised from that user, an app-only token as the app's application user.
     */
    acceptToken(token: string, principal: TokenPrincipal): void;
    close(): Promise<void>;
}

export const API_PATH = "/api/data/v9.2/";

class DataverseEmulator implements Emulator, Service {
    readonly state: EmulatorState = createInitialState();
    readonly requests: RequestLogEntry[] = [];
    origin = "";
    baseUrl = "";
    readonly tokens: EmulatorOptions["tokens"];
    readonly issuedTokens: Record<string, TokenPrincipal> = {};
    readonly importPolls: number;
    readonly importDurationMs: number | undefined;
    private readonly latencyMs: number;
    private readonly faults = new FaultPlan();
    private inFlight = 0;
    private idleWaiters: (() => void)[] = [];
    private requestWatchers: { matches: (entry: RequestLogEntry) => boolean; resolve: (entry: RequestLogEntry) => void }[] = [];

    constructor(
        private readonly server: http.Server,
        options: EmulatorOptions,
    ) {
        this.tokens = options.tokens;
        this.importPolls = options.importPolls ?? 2;
        this.importDurationMs = options.importDurationMs;
        this.latencyMs = options.latencyMs ?? 0;
    }

    injectFault(match: { method?: string; path: RegExp }, on: FaultSchedule, fault: Fault): void {
        this.faults.add(match, on, fault);
    }

    clearFaults(): void {
        this.faults.clear();
    }

    reset(to: EmulatorState = createInitialState()): void {
        Object.assign(this.state, structuredClone(to));
        this.faults.clear();
        this.requests.length = 0;
    }

    waitForRequest(match: { method?: string; path: RegExp }): Promise<RequestLogEntry> {
        const matches = (entry: RequestLogEntry): boolean =>
            (match.method === undefined || match.method.toUpperCase() === entry.method) &&
            new RegExp(match.path.source, match.path.flags.replace("g", "")).test(entry.path);
        const seen = this.requests.find(matches);
        if (seen !== undefined) return Promise.resolve(seen);
        return new Promise((resolve) => this.requestWatchers.push({ matches, resolve }));
    }

    whenIdle(): Promise<void> {
        if (this.inFlight === 0) return Promise.resolve();
        return new Promise((resolve) => this.idleWaiters.push(resolve));
    }

    registerApplication(applicationId: string, opts?: { visibleAfter?: number }): void {
        this.state.knownApplications[applicationId.toLowerCase()] = { failuresBeforeVisible: opts?.visibleAfter ?? 0 };
    }

    acceptToken(token: string, principal: TokenPrincipal): void {
        this.issuedTokens[token] = principal.objectId
            ? { applicationId: principal.applicationId.toLowerCase(), objectId: principal.objectId.toLowerCase() }
            : { applicationId: principal.applicationId.toLowerCase() };
    }

    close(): Promise<void> {
        return new Promise((resolve, reject) => {
            this.server.close((err) => (err ? reject(err) : resolve()));
            // Keep-alive sockets from HTTP agents would otherwise hold close() open.
            this.server.closeAllConnections();
        });
    }

    async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
        this.inFlight++;
        try {
            await this.serve(req, res);
        } finally {
            if (--this.inFlight === 0) for (const resolve of this.idleWaiters.splice(0)) resolve();
        }
    }

    private async serve(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
        const time = Date.now();
        const method = (req.method ?? "GET").toUpperCase();
        const raw = await readBody(req);
        const url = new URL(req.url ?? "/", this.origin);
        const query = [...url.searchParams].map(([k, v]) => `${k}=${v}`).join("&");
        const path = safeDecode(url.pathname) + (query ? `?${query}` : "");
        let body: unknown = undefined;
        let bodyIsJson = true;
        if (raw.length > 0) {
            try {
                body = JSON.parse(raw);
            } catch {
                body = raw;
                bodyIsJson = false;
            }
        }
        const entry: RequestLogEntry = { method, path, body, status: 0, time };
        const principal = principalOf(this, req);
        if (principal !== undefined) entry.principal = principal;
        this.requests.push(entry);
        this.requestWatchers = this.requestWatchers.filter((watcher) => {
            if (!watcher.matches(entry)) return true;
            watcher.resolve(entry);
            return false;
        });

        if (this.latencyMs > 0) await sleep(this.latencyMs / 2);
        const fault = this.faults.next(method, path);
        if (fault?.kind === "reset") {
            req.socket.destroy();
            return;
        }
        if (fault?.kind === "timeout") {
            await new Promise<void>((resolve) => {
                const timer = setTimeout(resolve, fault.ms ?? 10_000);
                req.socket.once("close", () => {
                    clearTimeout(timer);
                    resolve();
                });
            });
            req.socket.destroy();
            return;
        }
        if (fault?.kind === "delay") await sleep(fault.ms);
        if (fault?.kind === "hold") await fault.until.catch(() => undefined);
        entry.carriedOut = Date.now();
        // The service keeps working between requests: each request moves every running operation one step on.
        for (const op of this.state.asyncOperations) advance(this, op);
        advanceDirectorySync(this);

        let reply: Reply;
        if (fault?.kind === "status") {
            reply = faultReply(fault);
        } else {
            try {
                if (!bodyIsJson) throw new ODataError(400, PAYLOAD_ERROR, "The request body is not valid JSON.");
                reply = this.dispatch(req, method, url, body);
            } catch (err) {
                if (!(err instanceof ODataError)) throw err;
                reply = { status: err.status, headers: err.headers, body: { error: { code: err.code, message: err.message } } };
            }
        }
        entry.status = reply.status;
        if (fault?.kind === "resetAfter") {
            // Carried out, but the answer is lost: the caller cannot tell whether it happened.
            req.socket.destroy();
            return;
        }
        if (this.latencyMs > 0) await sleep(this.latencyMs / 2);
        entry.answered = Date.now();
        const headers: Record<string, string> = { "OData-Version": "4.0", ...reply.headers };
        if (reply.body === undefined) {
            res.writeHead(reply.status, headers);
            res.end();
        } else {
            res.writeHead(reply.status, { ...headers, "Content-Type": "application/json; odata.metadata=minimal" });
            res.end(JSON.stringify(reply.body));
        }
    }

    private dispatch(req: http.IncomingMessage, method: string, url: URL, body: unknown): Reply {
        if (url.pathname.startsWith(GRAPH_PATH)) return routeGraph(this, req, method, url, body);
        const rawSegments = url.pathname.split("/").filter((s) => s.length > 0);
        const base = API_PATH.split("/").filter((s) => s.length > 0);
        for (let i = 0; i < base.length; i++) {
            if (rawSegments[i] !== base[i]) throw badSegment(safeDecode(rawSegments[i] ?? ""));
        }
        const caller = authenticate(this, req);
        const segments = rawSegments.slice(base.length).map((s) => parseSegment(safeDecode(s)));
        return route(this, req, caller, method, segments, url.searchParams, body);
    }
}

export async function startEmulator(options: EmulatorOptions = {}): Promise<Emulator> {
    const server = http.createServer();
    const emulator = new DataverseEmulator(server, options);
    server.on("request", (req: http.IncomingMessage, res: http.ServerResponse) => {
        emulator.handle(req, res).catch((err: unknown) => {
            // A bug in the emulator must show up as a 500 the test sees, not as a hung request.
            if (!res.headersSent) {
                res.writeHead(500, { "Content-Type": "application/json" });
                res.end(JSON.stringify({ error: { code: "0x80040216", message: `Emulator failure: ${String(err)}` } }));
            }
        });
    });
    await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(options.port ?? 0, "127.0.0.1", () => resolve());
    });
    const { port } = server.address() as AddressInfo;
    emulator.origin = `http://127.0.0.1:${port}`;
    emulator.baseUrl = `${emulator.origin}${API_PATH}`;
    return emulator;
}
