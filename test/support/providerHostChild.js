// A stand-in for the engine's dynamic-provider host (@pulumi/pulumi/cmd/dynamic-provider): it turns a serialized
// `__provider` string into a provider with require-from-string and `.handler()`, caches it per string, and calls
// its methods. Plain JavaScript in its own process, with the project as working directory, like the real host.
"use strict";
const path = require("path");

const pulumiDir = path.dirname(require.resolve("@pulumi/pulumi/package.json"));
const requireFromString = require(require.resolve("require-from-string", { paths: [pulumiDir] }));
const providers = new Map();

process.on("message", async ({ id, providerString, method, args }) => {
    try {
        let provider = providers.get(providerString);
        if (!provider) {
            provider = requireFromString(providerString).handler();
            providers.set(providerString, provider);
        }
        if (typeof provider[method] !== "function") {
            throw new Error(`the provider has no ${method} method`);
        }
        // The engine moves values as protobuf Structs: JSON is the same model (no undefined, no functions).
        const result = await provider[method](...JSON.parse(JSON.stringify(args)));
        process.send({ id, result: result === undefined ? null : JSON.parse(JSON.stringify(result)) });
    } catch (err) {
        process.send({ id, error: { name: err && err.name, message: String(err && err.message), stack: err && err.stack } });
    }
});
process.send({ ready: true });
