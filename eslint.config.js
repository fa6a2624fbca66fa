import js from "@eslint/js"
import tseslint from "typescript-eslint"

// A later config object's `no-restricted-imports` replaces an earlier one's, so each folder's rule
// repeats the shared entries from here.
const noEffectSchemaPackage = { name: "@effect/schema", message: "Use effect/Schema." }
const isomorphic = [
  { group: ["node:*"], message: "protocol and client are isomorphic: no Node built-ins." },
  { group: ["**/server/**", "**/server/*"], message: "protocol and client never import the server." }
]

// src/server's folder order (docs/ARCHITECTURE.md): protocol <- root services <- registry <- core
// <- chat, cluster <- edge, inspector <- the composition root, main, Workers, index.
const folder = (name) => ({
  group: [`**/${name}/*`],
  message: `src/server's folder order: this folder does not import ${name}/.`
})
// The root modules that import everything (as `./X.js` from the root, `../X.js` from a folder).
const composing = (...names) => ({
  group: names.flatMap((name) => [`./${name}.js`, `../${name}.js`]),
  message: "Composition, main, Workers and index import everything: nothing below them imports them."
})
const composition = composing("Composition", "main", "index", "Workers")
const serverRule = (...patterns) => ["error", { paths: [noEffectSchemaPackage], patterns: [...patterns] }]
const serverFolders = [
  {
    // Cross-cutting services: config, metrics, errors, auth, tracing.
    files: ["src/server/*.ts"],
    ignores: [
      "src/server/Composition.ts",
      "src/server/main.ts",
      "src/server/Workers.ts",
      "src/server/index.ts"
    ],
    patterns: ["core", "registry", "chat", "cluster", "edge", "inspector"].map(folder).concat(composition)
  },
  {
    files: ["src/server/registry/**/*.ts"],
    patterns: [
      ...["chat", "cluster", "edge", "inspector"].map(folder),
      { ...folder("core"), group: ["**/core/*", "!**/core/Connection.js"] },
      // The registry indexes the core's connections: it names their type, never their code.
      { ...folder("core"), group: ["**/core/Connection.js"], allowTypeImports: true },
      composition
    ]
  },
  {
    files: ["src/server/core/**/*.ts"],
    patterns: [...["chat", "cluster", "edge", "inspector"].map(folder), composition]
  },
  {
    files: ["src/server/chat/**/*.ts"],
    patterns: [...["cluster", "edge", "inspector"].map(folder), composition]
  },
  {
    // The cluster implements chat's services (Presence, VoiceParticipants) over Redis: it may import chat/.
    files: ["src/server/cluster/**/*.ts"],
    patterns: [...["edge", "inspector"].map(folder), composition]
  },
  {
    // The routes report the worker group's readiness and metrics (`Workers`).
    files: ["src/server/edge/**/*.ts"],
    patterns: [...["chat", "cluster", "inspector"].map(folder), composing("Composition", "main", "index")]
  },
  {
    // The cluster view reads the nodes' heartbeats over a Redis connection of its own.
    files: ["src/server/inspector/**/*.ts"],
    patterns: [
      folder("chat"),
      { ...folder("cluster"), group: ["**/cluster/*", "!**/cluster/RedisClient.js"] },
      composition
    ]
  }
].map(({ files, ignores, patterns }) => ({
  files,
  ...(ignores === undefined ? {} : { ignores }),
  rules: { "no-restricted-imports": serverRule(...patterns) }
}))

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
  ...serverFolders,
  {
    files: ["src/protocol/**/*.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          paths: [noEffectSchemaPackage],
          patterns: [
            ...isomorphic,
            { group: ["**/client/**", "**/client/*"], message: "the protocol never imports the client." }
          ]
        }
      ]
    }
  },
  {
    files: ["src/client/**/*.ts"],
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
