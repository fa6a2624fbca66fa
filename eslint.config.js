import js from "@eslint/js"
import tseslint from "typescript-eslint"

// A later config object's `no-restricted-imports` replaces an earlier one's, so each folder's rule
// repeats the shared entries from here.
const noEffectSchemaPackage = { name: "@effect/schema", message: "Use effect/Schema." }
const isomorphic = [
  { group: ["node:*"], message: "protocol and client are isomorphic: no Node built-ins." },
  { group: ["**/server/**", "**/server/*"], message: "protocol and client never import the server." }
]

export default tseslint.config(
  { ignores: ["node_modules/", "dist/", "coverage/", "src/server/inspector/page/bundle.generated.ts"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/consistent-type-imports": "error",
      "no-restricted-imports": ["error", { paths: [noEffectSchemaPackage] }]
    }
  },
  {
    files: ["src/protocol/**/*.ts", "src/client/**/*.ts"],
    rules: {
      "no-restricted-imports": ["error", { paths: [noEffectSchemaPackage], patterns: isomorphic }]
    }
  },
  {
    // The callback client ships without Effect (its bundle budget is 16 KB); only the Effect entry uses it.
    files: ["src/client/**/*.ts"],
    ignores: ["src/client/GatewayConnection.ts", "src/client/effect.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          paths: [noEffectSchemaPackage],
          patterns: [
            ...isomorphic,
            {
              group: ["effect", "effect/*", "@effect/*"],
              allowTypeImports: true,
              message: "the callback client imports no Effect runtime (types only): see docs/CLIENT.md."
            },
            {
              group: [
                "**/protocol/*",
                "!**/protocol/Rules.js",
                "!**/protocol/CloseCodes.js",
                "!**/protocol/Streams.js"
              ],
              allowTypeImports: true,
              message:
                "protocol modules other than Rules, CloseCodes and Streams load Effect: import types only."
            }
          ]
        }
      ]
    }
  }
)
