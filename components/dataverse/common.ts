import * as pulumi from "@pulumi/pulumi";
import { isGuid, normaliseInstanceUrl, PrivilegeDepth, PRIVILEGE_DEPTHS } from "../guide";
import { DataverseError, ErrorCodes } from "./client";

/** What the engine passes for an input that is not known yet (preview); validation must let it through. */
export const UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";

export function isUnknown(value: unknown): boolean {
    return value === UNKNOWN;
}

/**
 * The keys whose new value is known and differs from the old one. A value preview does not know yet is never
 * counted: the `up` that follows may well find it unchanged, and a preview must not promise a replacement.
 */
export function knownChanges<T extends object, K extends keyof T & string>(
    olds: Partial<T>,
    news: Partial<T>,
    keys: readonly K[],
    same: (a: T[K] | undefined, b: T[K] | undefined) => boolean = (a, b) => a === b,
): K[] {
    return keys.filter((k) => !isUnknown(news[k]) && !same(olds[k], news[k]));
}

/** Whether any of the keys holds a value preview does not know yet: that alone is a change (never a replacement). */
export function anyUnknown<T extends object>(news: Partial<T>, keys: readonly (keyof T & string)[]): boolean {
    return keys.some((k) => isUnknown(news[k]));
}

/** Inputs every Dataverse resource carries (see providerVersion.ts). */
export interface Versioned {
    providerVersion: string;
}

/** A new project version is a change of its own: the update stores the new provider code. */
export function providerChanged(olds: Partial<Versioned>, news: Partial<Versioned>): boolean {
    return olds.providerVersion !== news.providerVersion;
}

/** A `check` failure, in the engine's shape. */
export interface CheckFailure {
    property: string;
    reason: string;
}

/** Runs a validator on a known input and turns its error into a check failure naming the field. */
export function validateField(failures: CheckFailure[], property: string, value: unknown, validate: (v: unknown) => void): void {
    if (isUnknown(value)) return;
    try {
        validate(value);
    } catch (err) {
        failures.push({ property, reason: `${property}: ${(err as Error).message}` });
    }
}

/** Field validators for `validateField`. */
export const mustBeInstanceUrl = (v: unknown): void => {
    normaliseInstanceUrl(String(v));
};
export const mustBeGuid = (v: unknown): void => {
    if (typeof v !== "string" || !isGuid(v)) throw new Error(`"${String(v)}" is not a GUID`);
};
export const mustNotBeEmpty = (v: unknown): void => {
    if (typeof v !== "string" || v.trim() === "") throw new Error("must not be empty");
};

export function isNotFound(err: unknown): boolean {
    return err instanceof DataverseError && (err.status === 404 || err.hasCode(ErrorCodes.objectDoesNotExist));
}

/** Runs a call whose target may already be gone; gone counts as done. */
export async function ignoreNotFound<T>(call: Promise<T>): Promise<T | undefined> {
    try {
        return await call;
    } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
    }
}

/** Basic < Local < Deep < Global. */
export function depthRank(depth: PrivilegeDepth): number {
    return PRIVILEGE_DEPTHS.indexOf(depth);
}

/** A wait as a progress message says it: whole seconds, or milliseconds below one second. */
export function describeDelay(ms: number): string {
    return ms >= 1000 ? `${Math.round(ms / 1000)} s` : `${Math.round(ms)} ms`;
}

/** Progress the user should see during `pulumi up` (waits, adoptions); the engine shows it as info. */
export function progress(message: string): void {
    void pulumi.log.info(message);
}

/**
 * Something left undone that the user should know about. The dynamic-provider host is not connected to the engine's
 * log (pulumi/pulumi#6065), so this prints a plain line at best: whatever a user must act on also goes into the
 * resource's `warnings` output (see {@link Warnings}).
 */
export function warn(message: string): void {
    void pulumi.log.warn(message);
}

/** The `warnings` output every Dataverse resource carries: what a user must act on, also visible in stack outputs. */
export interface Warned {
    warnings: string[];
}

/** Collects the warnings of one operation: each is logged at once and returned for the resource's outputs. */
export function warningCollector(): { add(message: string): void; list: string[] } {
    const list: string[] = [];
    return {
        list,
        add(message: string) {
            warn(message);
            list.push(message);
        },
    };
}
