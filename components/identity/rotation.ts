const DAY_MS = 24 * 60 * 60 * 1000;

/**
 * The rotation period `now` falls in: periods of `rotationDays` counted from the Unix epoch, so every run on any
 * machine agrees on the number, and re-running within a period changes nothing. Credentials derive from it
 * (client secrets, the service account's password).
 */
export function rotationPeriod(now: Date, rotationDays: number): { period: number; periodMs: number; start: Date; nextStart: Date } {
    const periodMs = rotationDays * DAY_MS;
    const period = Math.floor(now.getTime() / periodMs);
    return { period, periodMs, start: new Date(period * periodMs), nextStart: new Date((period + 1) * periodMs) };
}
