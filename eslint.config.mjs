import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
    { ignores: ["node_modules/", "bin/", "coverage/", "*.js", "*.mjs"] },
    js.configs.recommended,
    ...tseslint.configs.recommended,
    {
        rules: {
            "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_" }],
        },
    },
    {
        // Plain CommonJS helpers that must run without a compiler (the stand-in provider host).
        files: ["**/*.js"],
        languageOptions: {
            sourceType: "commonjs",
            globals: { require: "readonly", process: "readonly", module: "writable", __dirname: "readonly" },
        },
        rules: { "@typescript-eslint/no-require-imports": "off" },
    },
);
