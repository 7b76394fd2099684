/** The benchmark's round-trip count (scripts/bench.ts), on request logs whose shape is known. */
import type { RequestLogEntry } from "./emulator/server";
import { criticalPath } from "../scripts/bench";

const L = 100;
const request = (time: number, answered = time + L): RequestLogEntry => ({
    method: "GET",
    path: "/",
    body: undefined,
    status: 200,
    time,
    answered,
});

describe("criticalPath", () => {
    it("counts requests sent together as one round trip, and each request sent after an answer as one more", () => {
        expect(criticalPath([request(0), request(1), request(2)])).toBe(1);
        expect(criticalPath([request(0), request(100), request(200)])).toBe(3);
        // Two chains side by side: the longer one is the path.
        expect(criticalPath([request(0), request(2), request(100), request(200), request(103)])).toBe(3);
    });

    it("leaves out what it is told to, and a request moved back in time no longer follows what ran meanwhile", () => {
        const start = request(0);
        const waiting = [request(100), request(300), request(500)];
        const meanwhile = [request(5), request(105), request(205)];
        const seen = request(700);
        const after = request(800);
        const all = [start, ...waiting, ...meanwhile, seen, after];
        expect(criticalPath(all)).toBe(6);
        // Without the polls that found the job running, the job's end follows the side chain of three.
        expect(criticalPath(all, new Set(waiting))).toBe(5);
        // As if the job took no time: start, seen, after, where after also waits for the side chain.
        expect(criticalPath(all, new Set(waiting), new Map([[seen, start.answered!]]))).toBe(4);
    });

    it("ignores requests whose answer never left", () => {
        expect(criticalPath([request(0), { ...request(100), answered: undefined }])).toBe(1);
    });
});
