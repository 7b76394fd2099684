import type { MockProgramReport, Registration } from "./mockProgram";

/**
 * Look-ups on a mock run's registrations, for tests that load the report in `beforeAll`: `byName` finds a resource
 * (failing clearly when it was not declared), `dependsOn` lists the names of what it depends on, explicitly or
 * through its inputs.
 */
export function registrationsOf(report: () => MockProgramReport): {
    byName(name: string): Registration;
    dependsOn(name: string): (string | undefined)[];
} {
    const byName = (name: string): Registration => {
        const found = report().registrations.find((r) => r.name === name);
        if (!found) throw new Error(`${name} was not declared`);
        return found;
    };
    const dependsOn = (name: string) => {
        const r = byName(name);
        return [...new Set([...r.dependencies, ...Object.values(r.propertyDependencies).flat()])]
            .map((urn) => urn.split("::").pop())
            .sort();
    };
    return { byName, dependsOn };
}
