/**
 * Fault injection and the request log: how tests make the emulator answer 429/5xx, stall, drop a connection, or
 * carry a request out and lose its answer, and how they see which requests were made.
 */
import { REQUEST_LIMIT_EXCEEDED } from "./errors";
import type { Reply } from "./protocol";

export type Fault =
    | { kind: "status"; status: number; retryAfter?: string; code?: string; message?: string }
    | { kind: "delay"; ms: number }
    /** Carry the request out only once `until` settles: a request the service is still working on, for as long as a test needs. */
    | { kind: "hold"; until: Promise<unknown> }
    | { kind: "reset" }
    /** Carry the request out, then drop the connection without answering (a lost answer). */
    | { kind: "resetAfter" }
    /**
     * Never answer and never act: hold the request until the caller gives up (its timeout) or `ms` pass (default
     * 10 s), then drop the connection, as a stalled server or gateway does.
     */
    | { kind: "timeout"; ms?: number };

export interface RequestLogEntry {
    method: string;
    /** Path + query, decoded. */
    path: string;
    body: unknown;
    status: number;
    /** ms epoch, when the request arrived */
    time: number;
    /** ms epoch, when the service carried it out (after the first half of `latencyMs` and any delay fault) */
    carriedOut?: number;
    /** ms epoch, when its answer left (unset for a dropped connection) */
    answered?: number;
    /** systemuserid */
    principal?: string;
}

/** Which matching request(s) a fault hits: the n-th (1-based), several, or every one. */
export type FaultSchedule = number | number[] | "every";

interface FaultRule {
    method?: string;
    path: RegExp;
    on: FaultSchedule;
    fault: Fault;
    seen: number;
}

/** The faults injected so far; each matching request counts towards every rule it matches. */
export class FaultPlan {
    private rules: FaultRule[] = [];

    add(match: { method?: string; path: RegExp }, on: FaultSchedule, fault: Fault): void {
        this.rules.push({ method: match.method, path: match.path, on, fault, seen: 0 });
    }

    clear(): void {
        this.rules = [];
    }

    /** The fault for this request, if any; the first rule that hits wins. */
    next(method: string, path: string): Fault | undefined {
        let chosen: Fault | undefined;
        for (const rule of this.rules) {
            if (rule.method !== undefined && rule.method.toUpperCase() !== method) continue;
            rule.path.lastIndex = 0;
            if (!rule.path.test(path)) continue;
            rule.seen++;
            const hit = rule.on === "every" || (Array.isArray(rule.on) ? rule.on.includes(rule.seen) : rule.on === rule.seen);
            if (hit && chosen === undefined) chosen = rule.fault;
        }
        return chosen;
    }
}

export function faultReply(fault: Extract<Fault, { kind: "status" }>): Reply {
    const headers: Record<string, string> = {};
    if (fault.retryAfter !== undefined) headers["Retry-After"] = fault.retryAfter;
    // contract: Service protection — 429 defaults to the 6000-requests limit code.
    const code = fault.code ?? (fault.status === 429 ? REQUEST_LIMIT_EXCEEDED : "");
    const message =
        fault.message ??
        (fault.status === 429
            ? "Number of requests exceeded the limit of 6000 over time window of 300 seconds."
            : `The service answered ${fault.status} (injected fault).`);
    return { status: fault.status, headers, body: { error: { code, message } } };
}

export function sleep(ms: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, ms));
}
