/**
 * The quick start of docs/CLIENT.md works as written: the doc's code block is the body of
 * `example.ts` (only the import specifier differs), and running that module against a real `ws` peer
 * connects with the token, subscribes and logs the dispatched events.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from "@effect/vitest"
import { readFileSync } from "node:fs"
import { startPeer } from "./peer.js"
import type { TestPeer } from "./peer.js"

const read = (path: string) => readFileSync(new URL(path, import.meta.url), "utf8")

const GUILD = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
const CHANNEL = "01ARZ3NDEKTSV4RRFFQ69G5FAW"
const USER = "01ARZ3NDEKTSV4RRFFQ69G5FAZ"

describe("docs/CLIENT.md quick start", () => {
  let peer: TestPeer
  beforeAll(async () => {
    peer = await startPeer()
  })
  afterAll(async () => {
    vi.unstubAllEnvs()
    await peer.stop()
  })

  it("is example.ts verbatim, but for the package import, in docs/CLIENT.md and the README", () => {
    const example = read("./example.ts")
    const body = example
      .slice(example.indexOf("import {"), example.indexOf("// end of quick start"))
      .replace('"../../src/client/index.js"', '"filament-gateway/client"')
    const quickStart = /## Quick start[\s\S]*?```ts\n([\s\S]*?)```/.exec(read("../../docs/CLIENT.md"))?.[1]
    const readme = /## Client[\s\S]*?```ts\n([\s\S]*?)```/.exec(read("../../README.md"))?.[1]
    expect(quickStart).toBe(body)
    expect(readme).toBe(body)
  })

  it("connects, subscribes and logs dispatched events when run", async () => {
    vi.stubEnv("GATEWAY_URL", peer.url)
    vi.stubEnv("GATEWAY_TOKEN", "secret-token")
    vi.stubEnv("GUILD_ID", GUILD)
    vi.stubEnv("CHANNEL_ID", CHANNEL)
    const logs: Array<string> = []
    const spy = vi.spyOn(console, "log").mockImplementation((...args: Array<unknown>) => {
      logs.push(args.join(" "))
      peer.notify()
    })
    const { client } = await import("./example.js")
    try {
      const connection = await peer.waitFor("subscribe frame", () => {
        const connection = peer.connections[0]
        return connection !== undefined && connection.frames.length === 1 && connection
      })
      expect(connection.token).toBe("secret-token")
      expect(connection.frames).toEqual([
        { v: 1, t: "subscribe", d: { guild_id: GUILD, channel_id: CHANNEL } }
      ])
      connection.send({ v: 1, t: "ready", d: { user_id: USER } })
      connection.send({
        v: 1,
        t: "message_create",
        d: {
          message_id: "01ARZ3NDEKTSV4RRFFQ69G5FB0",
          guild_id: GUILD,
          channel_id: CHANNEL,
          author_id: USER,
          content: "hi",
          markdown_tokens: [
            { type: "paragraph_start" },
            { type: "text", text: "hi" },
            { type: "paragraph_end" }
          ],
          attachments: [],
          reactions: [],
          created_at_unix: 1710000000
        }
      })
      await peer.waitFor("two events logged", () => logs.length >= 3)
      expect(logs).toEqual(["online", `connected as ${USER}`, `${USER}: hi`])
    } finally {
      client.close()
      spy.mockRestore()
    }
  })
})
