/** @type {import('jest').Config} */
module.exports = {
    preset: "ts-jest",
    testEnvironment: "node",
    roots: ["<rootDir>/test"],
    testMatch: ["**/*.test.ts"],
    // Each test file runs in its own worker process with its own emulator, provider host and Pulumi mock runtime, so
    // files do not share state. Most of a file's time is waiting on child processes (ts-node, the provider host):
    // two workers overlap those waits on a 2-core machine.
    maxWorkers: 2,
    testTimeout: 60000,
    // One folder per run shared by the workers (transpiled sources, the mock program server's socket) and the identity
    // platform's certificate, trusted by every worker from its start (see test/support/testRun.ts).
    globalSetup: "<rootDir>/test/support/globalSetup.ts",
    globalTeardown: "<rootDir>/test/support/globalTeardown.ts",
    // jest's summary, then one plain `tests: N passed, N failed, N skipped` line that CI reads (see the reporter).
    reporters: ["default", "<rootDir>/test/support/summaryReporter.js"],
    transform: {
        "^.+\\.ts$": ["ts-jest", { tsconfig: "tsconfig.json" }],
    },
};
