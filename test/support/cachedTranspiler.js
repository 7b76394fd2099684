/**
 * A ts-node transpiler (named by test/support/ts-node.tsconfig.json, see `tsNodeTestEnvironment` in testRun.ts) that
 * emits what ts-node's own transpile-only mode emits (TypeScript's transpileModule with the project's options) and
 * keeps each output in the test run's folder, so the tests' child processes transpile each source file once per run.
 * Without a test run folder it only transpiles. Plain JavaScript: ts-node loads it before it can compile anything.
 */
const crypto = require("crypto");
const fs = require("fs");
const path = require("path");

exports.create = function create(createOptions) {
    const ts = require("typescript");
    const compilerOptions = createOptions.service.config.options;
    const runDir = process.env.LEAD_MANAGEMENT_TEST_RUN_DIR;
    const cacheDir = runDir ? path.join(runDir, "transpiled") : undefined;
    if (cacheDir) fs.mkdirSync(cacheDir, { recursive: true });
    const optionsKey = JSON.stringify(compilerOptions);
    return {
        transpile(input, { fileName }) {
            const key = crypto.createHash("sha256").update(`${ts.version}\0${optionsKey}\0${fileName}\0${input}`).digest("hex");
            const cached = cacheDir && path.join(cacheDir, `${key}.json`);
            if (cached && fs.existsSync(cached)) return JSON.parse(fs.readFileSync(cached, "utf8"));
            const result = ts.transpileModule(input, { fileName, compilerOptions, reportDiagnostics: true });
            if (cached && (result.diagnostics ?? []).length === 0) {
                // Written whole, then renamed: another process never reads half a file.
                const temporary = `${cached}.${process.pid}.tmp`;
                fs.writeFileSync(temporary, JSON.stringify({ outputText: result.outputText, sourceMapText: result.sourceMapText }));
                fs.renameSync(temporary, cached);
            }
            return result;
        },
    };
};
