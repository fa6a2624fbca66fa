/**
 * The docs run: every fenced code block of README.md, docs/CLIENT.md and docs/OPERATIONS.md is
 * either run here, as written, against a real gateway, or marked as not run by an HTML comment
 * (`<!-- not run by test/docs.test.ts: why -->`) as its last line before the fence.
 *
 * - `ts` blocks are subscriber programs: each is saved in a folder where the packed package is
 *   installed (as `npm install filament-gateway` gives it) and runs with tsx, pointed at the gateway
 *   by GATEWAY_URL, GATEWAY_TOKEN, GUILD_ID and CHANNEL_ID.
 * - `js` blocks are publishers: once every subscriber holds its subscription, each runs with node
 *   (GATEWAY_HTTP_URL, GATEWAY_PUBLISH_KEY, GUILD_ID, CHANNEL_ID) and must exit 0; then every
 *   subscriber must have printed the published message's `content`.
 * - `text` and `http` blocks show shapes and output; they are never run.
 */
import { spawn, type ChildProcess } from "node:child_process"
import { readFileSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import { join } from "node:path"
import { Effect, Redacted } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { signToken } from "../src/server/Auth.js"
import { eventually, eventuallyEffect } from "./deadline.js"
import { installPacked, root, type Installed } from "./client/packed.js"
import { seriesValue } from "./server/harness.js"

const DOCS = ["README.md", "docs/CLIENT.md", "docs/OPERATIONS.md"]
const NOT_RUN = /^<!-- not run by test\/docs\.test\.ts: .+ -->$/
const ILLUSTRATIVE = new Set(["text", "http"])
const DEADLINE_MS = 20_000

interface Block {
  readonly file: string
  readonly line: number
  readonly lang: string
  readonly code: string
  readonly notRun: boolean
}

const blocksOf = (file: string): ReadonlyArray<Block> => {
  const lines = readFileSync(join(root, file), "utf8").split("\n")
  const blocks: Array<Block> = []
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\S*)$/.exec(lines[i]!)
    if (open === null) continue
    const end = lines.indexOf("```", i + 1)
    const before = lines
      .slice(0, i)
      .reverse()
      .find((line) => line.trim() !== "")
    blocks.push({
      file,
      line: i + 1,
      lang: open[1]!,
      code: lines.slice(i + 1, end).join("\n") + "\n",
      notRun: NOT_RUN.test(before ?? "")
    })
    i = end
  }
  return blocks
}

const blocks = DOCS.flatMap(blocksOf)
const runnable = blocks.filter((block) => !block.notRun && !ILLUSTRATIVE.has(block.lang))
const subscribers = runnable.filter((block) => block.lang === "ts")
const publishers = runnable.filter((block) => block.lang === "js")
const where = (block: Block) => `${block.file}:${block.line}`

const JWT_SECRET = "d".repeat(32)
const PUBLISH_KEY = "k".repeat(32)
const GUILD = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
const CHANNEL = "01ARZ3NDEKTSV4RRFFQ69G5FAW"
const USER = "01ARZ3NDEKTSV4RRFFQ69G5FAZ"
const tsx = createRequire(import.meta.url).resolve("tsx")

interface Running {
  readonly child: ChildProcess
  readonly output: () => string
  readonly exited: Promise<number | null>
}

const running = new Set<ChildProcess>()
afterAll(() => running.forEach((child) => child.kill("SIGKILL")))

const start = (args: ReadonlyArray<string>, cwd: string, env: Readonly<Record<string, string>>): Running => {
  const gatewayFree = Object.fromEntries(
    Object.entries(process.env).filter(([key]) => !key.startsWith("GATEWAY_"))
  )
  const child = spawn(process.execPath, args, {
    cwd,
    env: { ...gatewayFree, ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  running.add(child)
  let output = ""
  child.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()))
  child.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()))
  const exited = new Promise<number | null>((resolve) =>
    child.once("close", (code) => {
      running.delete(child)
      resolve(code)
    })
  )
  return { child, output: () => output, exited }
}

const waitUntil = (label: string, check: () => boolean) =>
  Effect.runPromise(eventually(label, check, DEADLINE_MS))

describe("code blocks of the docs", () => {
  it("every block is run here or marked as not run, and the docs hold a subscriber and a publisher", () => {
    const unknown = runnable.filter((block) => block.lang !== "ts" && block.lang !== "js")
    expect(unknown.map(where), "blocks this test cannot run and that are not marked").toEqual([])
    expect(subscribers.length).toBeGreaterThanOrEqual(2)
    expect(publishers.map((block) => block.code)).toEqual([expect.stringContaining('t: "message_create"')])
  })

  describe("run against a real gateway (the packed package, installed with production dependencies)", () => {
    let installed: Installed
    let gateway: Running
    let port: number
    beforeAll(async () => {
      installed = await installPacked()
      gateway = start(["node_modules/filament-gateway/dist/server/main.js"], installed.consumer, {
        GATEWAY_PORT: "0",
        GATEWAY_JWT_SECRET: JWT_SECRET,
        GATEWAY_PUBLISH_KEY: PUBLISH_KEY
      })
      await waitUntil("gateway listening", () =>
        /listening on http:\/\/127\.0\.0\.1:\d+ /.test(gateway.output())
      )
      port = Number(/listening on http:\/\/127\.0\.0\.1:(\d+) /.exec(gateway.output())![1])
    }, 180_000)
    afterAll(() => {
      gateway?.child.kill("SIGTERM")
      installed?.remove()
    })

    it("the subscribers connect and subscribe; each publisher exits 0; every subscriber prints the published content", async () => {
      const token = await Effect.runPromise(
        signToken({
          secret: Redacted.make(JWT_SECRET),
          userId: USER,
          expiresAt: Math.floor(Date.now() / 1000) + 3600,
          guilds: { [GUILD]: [CHANNEL] }
        })
      )
      const env = {
        GATEWAY_URL: `ws://127.0.0.1:${port}`,
        GATEWAY_HTTP_URL: `http://127.0.0.1:${port}`,
        GATEWAY_TOKEN: token,
        GATEWAY_PUBLISH_KEY: PUBLISH_KEY,
        GUILD_ID: GUILD,
        CHANNEL_ID: CHANNEL
      }
      const run = (block: Block, index: number) => {
        const file = join(installed.consumer, `block-${index}.${block.lang === "ts" ? "ts" : "mjs"}`)
        writeFileSync(file, block.code)
        return start(block.lang === "ts" ? ["--import", tsx, file] : [file], installed.consumer, env)
      }
      const clients = subscribers.map(run)
      const metrics = Effect.promise(() => fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text()))
      await Effect.runPromise(
        eventuallyEffect(
          "every subscriber subscribed",
          Effect.map(
            metrics,
            (text) => seriesValue(text, "filament_gateway_subscriptions") === subscribers.length
          ),
          DEADLINE_MS
        )
      )
      for (const [index, block] of publishers.entries()) {
        const publisher = run(block, subscribers.length + index)
        expect(await publisher.exited, `${where(block)}: ${publisher.output()}`).toBe(0)
        expect(publisher.output()).toContain(`202 { recipients: ${subscribers.length} }`)
        const content = /content: "([^"]+)"/.exec(block.code)![1]!
        for (const [i, client] of clients.entries()) {
          await waitUntil(`${where(subscribers[i]!)} prints "${content}" (output: ${client.output()})`, () =>
            client.output().includes(content)
          )
        }
      }
      // Still running: a subscriber that crashed after printing would have exited.
      for (const client of clients) expect(client.child.exitCode).toBe(null)
    }, 120_000)
  })
})
