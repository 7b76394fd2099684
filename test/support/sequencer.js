/**
 * jest's test order, with one change for a run that has no timings yet (a fresh clone, as in CI): jest then orders
 * files by size, biggest first, so that long files start early and no worker idles at the end. A file that only
 * calls a harness declaring its tests (the fault matrix files call test/support/faultMatrix.ts) is a few lines long
 * but among the longest to run: here its size counts the test/support modules it imports that declare tests.
 * Once jest has timings, its own order (failed first, then longest first) applies unchanged.
 * Plain JavaScript: jest loads the sequencer without transforming it.
 */
const fs = require("fs");
const path = require("path");
const { default: DefaultSequencer } = require("@jest/test-sequencer");

const DECLARES_TESTS = /^\s*(describe|it|test)(\.each\(.*?\))?\(/m;
const SUPPORT_IMPORT = /from "(\.\/support\/[^"]+)"/g;

/** The file's size plus that of each test/support module it imports that declares tests itself. */
function testCodeSize(testPath) {
    const source = fs.readFileSync(testPath, "utf8");
    let size = source.length;
    for (const [, specifier] of source.matchAll(SUPPORT_IMPORT)) {
        const file = path.resolve(path.dirname(testPath), `${specifier}.ts`);
        if (!fs.existsSync(file)) continue;
        const support = fs.readFileSync(file, "utf8");
        if (DECLARES_TESTS.test(support)) size += support.length;
    }
    return size;
}

class Sequencer extends DefaultSequencer {
    sort(tests) {
        const sorted = super.sort(tests);
        if (sorted.some((test) => test.duration != null)) return sorted;
        const sizes = new Map(sorted.map((test) => [test.path, testCodeSize(test.path)]));
        return sorted.sort((a, b) => sizes.get(b.path) - sizes.get(a.path));
    }
}

module.exports = Sequencer;
