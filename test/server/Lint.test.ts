/**
 * The import rules of `eslint.config.js`, run through ESLint's Node API on small files placed in each
 * folder: an import against src/server's folder order (or the protocol / client contract) is
 * reported, an import along it is not.
 */
import { describe, expect, it } from "vitest"
import { ESLint } from "eslint"

const eslint = new ESLint({ cwd: new URL("../..", import.meta.url).pathname })

/** The `no-restricted-imports` messages ESLint reports for `code` as the file at `filePath`. */
const restricted = async (filePath: string, code: string): Promise<ReadonlyArray<string>> => {
  const [result] = await eslint.lintText(code, { filePath })
  return result!.messages
    .filter((message) => message.ruleId === "no-restricted-imports")
    .map((m) => m.message)
}

const offending: ReadonlyArray<readonly [string, string, string]> = [
  ["src/server/core/Example.ts", 'import { fromClaims } from "../chat/Access.js"', "does not import chat/"],
  [
    "src/server/core/Example.ts",
    'import { layerRedis } from "../cluster/EventBus.js"',
    "does not import cluster/"
  ],
  ["src/server/core/Example.ts", 'import { layerGateway } from "../Composition.js"', "import everything"],
  ["src/server/registry/Example.ts", 'import { Gateway } from "../core/Gateway.js"', "does not import core/"],
  [
    "src/server/registry/Example.ts",
    'import { Connection } from "../core/Connection.js"',
    "does not import core/"
  ],
  ["src/server/Example.ts", 'import { refuseRaw } from "./edge/HttpLimits.js"', "does not import edge/"],
  ["src/server/Example.ts", 'import { Gateway } from "./core/Gateway.js"', "does not import core/"],
  [
    "src/server/chat/Example.ts",
    'import { layerRedis } from "../cluster/ClusterVoice.js"',
    "does not import cluster/"
  ],
  ["src/server/edge/Example.ts", 'import { Presence } from "../chat/Presence.js"', "does not import chat/"],
  [
    "src/server/inspector/Example.ts",
    'import { makeRedis } from "../cluster/EventBus.js"',
    "does not import cluster/"
  ],
  [
    "src/protocol/Example.ts",
    'import { make } from "../client/GatewayClient.js"',
    "never imports the client"
  ],
  [
    "src/protocol/Example.ts",
    'import { Gateway } from "../server/core/Gateway.js"',
    "never import the server"
  ],
  ["src/client/Example.ts", 'import { Gateway } from "../server/core/Gateway.js"', "never import the server"],
  ["src/server/cluster/Example.ts", 'import { Schema } from "@effect/schema"', "Use effect/Schema"],
  ["src/protocol/Example.ts", 'import { Schema } from "@effect/schema"', "Use effect/Schema"],
  ["src/client/Example.ts", 'import type { Schema } from "@effect/schema"', "Use effect/Schema"]
]

const along: ReadonlyArray<readonly [string, string]> = [
  ["src/server/core/Example.ts", 'import { SubscriptionRegistry } from "../registry/Subscriptions.js"'],
  ["src/server/registry/Example.ts", 'import type { Connection } from "../core/Connection.js"'],
  ["src/server/chat/Example.ts", 'import { GatewayHooks } from "../core/Seams.js"'],
  ["src/server/cluster/Example.ts", 'import { Presence } from "../chat/Presence.js"'],
  ["src/server/edge/Example.ts", 'import { Gateway } from "../core/Gateway.js"'],
  ["src/server/inspector/Example.ts", 'import { make } from "../cluster/RedisClient.js"'],
  ["src/server/main.ts", 'import { layerRedis } from "./cluster/EventBus.js"'],
  ["src/server/Composition.ts", 'import { layerMemory } from "./chat/Presence.js"']
]

/** One import used as a value (or a type), so no other rule has anything to say. */
const moduleWith = (importLine: string) => {
  const name = /import (?:type )?\{ (\w+) \}/.exec(importLine)![1]
  return `${importLine}\nexport type Used = typeof ${name}\n`
}

describe("import rules", () => {
  for (const [filePath, importLine, message] of offending) {
    it(`reported: ${filePath}: ${importLine}`, async () => {
      const messages = await restricted(filePath, moduleWith(importLine))
      expect(messages).toHaveLength(1)
      expect(messages[0]).toContain(message)
    })
  }
  for (const [filePath, importLine] of along) {
    it(`allowed: ${filePath}: ${importLine}`, async () => {
      expect(await restricted(filePath, moduleWith(importLine))).toEqual([])
    })
  }
})
