import js from "@eslint/js"
import tseslint from "typescript-eslint"

export default tseslint.config(
  { ignores: ["node_modules/", "dist/", "coverage/", "src/server/inspector/page/bundle.generated.ts"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/consistent-type-imports": "error",
      "no-restricted-imports": [
        "error",
        { paths: [{ name: "@effect/schema", message: "Use effect/Schema." }] }
      ]
    }
  },
  {
    files: ["src/protocol/**/*.ts", "src/client/**/*.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            { group: ["node:*"], message: "protocol and client are isomorphic: no Node built-ins." },
            {
              group: ["**/server/**", "**/server/*"],
              message: "protocol and client never import the server."
            }
          ]
        }
      ]
    }
  }
)
