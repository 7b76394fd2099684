/** @type {import('jest').Config} */
module.exports = {
    testEnvironment: "node",
    roots: ["<rootDir>/test"],
    testMatch: ["**/*.test.ts"],
    // Each test file runs in a worker process with its own emulator and provider host, so files do not share state.
    // A file spends much of its time waiting on its provider host or a timer: on a 2-core machine four workers keep
    // both cores busy (measured: 2 workers 45 s, 3 36 s, 4 32 s, 5 32 s, 6 37 s).
    maxWorkers: 4,
    // A worker past 1 GB after a file is replaced. Setting a limit also makes jest use workers even for a single
    // file: workers start after globalSetup, so they trust the identity platform's certificate (see testRun.ts).
    workerIdleMemoryLimit: "1GB",
    // Long files first, also in a fresh clone where jest has no timings yet (see the sequencer).
    testSequencer: "<rootDir>/test/support/sequencer.js",
    testTimeout: 60000,
    // One folder per run shared by the workers (transpiled sources, the mock program server's socket) and the identity
    // platform's certificate, trusted by every worker from its start (see test/support/testRun.ts).
    globalSetup: "<rootDir>/test/support/globalSetup.ts",
    globalTeardown: "<rootDir>/test/support/globalTeardown.ts",
    // jest's summary, then one plain `tests: N passed, N failed, N skipped` line that CI reads (see the reporter).
    reporters: ["default", "<rootDir>/test/support/summaryReporter.js"],
    // swc strips the types and emits CommonJS, file by file, as ts-node's transpile-only mode does for the program;
    // `npm run build` (tsc) type-checks. Class fields keep TypeScript's assign semantics, as tsconfig.json asks.
    transform: {
        "^.+\\.ts$": [
            "@swc/jest",
            {
                jsc: { parser: { syntax: "typescript" }, target: "es2022", transform: { useDefineForClassFields: false } },
                module: { type: "commonjs" },
            },
        ],
    },
};
