/**
 * A jest reporter that ends the run with one line, `tests: N passed, N failed, N skipped`, in the plain form CI
 * tools read as a test summary in any language (jest's own summary puts the counts on a `Tests:` line with a total).
 * It is written as jest's process exits, so it is the run's last line, after jest's own summary.
 * Plain JavaScript: jest loads reporters without transforming them.
 */
class SummaryReporter {
    onRunComplete(_contexts, results) {
        const skipped = results.numPendingTests + results.numTodoTests;
        const line = `tests: ${results.numPassedTests} passed, ${results.numFailedTests} failed, ${skipped} skipped\n`;
        process.once("exit", () => process.stdout.write(line));
    }
}

module.exports = SummaryReporter;
