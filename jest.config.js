/** @type {import('jest').Config} */
module.exports = {
    preset: "ts-jest",
    testEnvironment: "node",
    roots: ["<rootDir>/test"],
    testMatch: ["**/*.test.ts"],
    // Pulumi's mock runtime and the emulator share process-wide state: one worker keeps runs reproducible on 2 cores.
    maxWorkers: 1,
    testTimeout: 60000,
    transform: {
        "^.+\\.ts$": ["ts-jest", { tsconfig: "tsconfig.json" }],
    },
};
