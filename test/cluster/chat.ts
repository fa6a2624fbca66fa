/**
 * Helpers for the cluster chat tests: chat nodes on one Redis (or a Redis Cluster), a node in its
 * own process, the subscribe sequence, markers.
 */
import { spawn } from "node:child_process"
import { expect } from "@effect/vitest"
import { Effect, Option, Redacted } from "effect"
import WebSocket from "ws"
import { MessageCreate } from "../../src/protocol/events/message.js"
import * as Auth from "../../src/server/Auth.js"
import type { GatewayConfigShape } from "../../src/server/Config.js"
import { message, newId, startGateway, TestClient, type Frame, type Harness } from "../server/harness.js"
import type { RedisBackend } from "./redis.js"

export const BUS_SECRET = "bus-secret-0123456789-0123456789-abcdef"

/** The configuration that joins a node to the others by `redis` (optionally signing with `secret`). */
export const joinedBy = (
  redis: RedisBackend,
  secret: { readonly sign: string; readonly accept?: string } = { sign: BUS_SECRET }
) => ({
  redis: Option.some({
    ...redis.endpoint,
    busSecret: Redacted.make(secret.sign),
    busAcceptSecret: Option.fromNullable(secret.accept).pipe(Option.map(Redacted.make))
  })
})

/** One series summed over `nodes` (each gateway counts its own). */
export const summedMetric = (
  nodes: ReadonlyArray<Harness>,
  name: string,
  labels?: Readonly<Record<string, string>>
) =>
  Effect.map(
    Effect.forEach(nodes, (node) => node.metric(name, labels)),
    (values) => values.reduce((sum, value) => sum + value, 0)
  )

/** A gateway node with the chat follow-ups, joined to the others by `redis`. */
export const startClusterNode = (redis: RedisBackend, overrides: Partial<GatewayConfigShape> = {}) =>
  startGateway(
    {
      ...joinedBy(redis),
      ...overrides
    },
    undefined,
    "chat"
  )

const PROCESS_START_DEADLINE_MS = 20_000

/**
 * A gateway node in its own process (`npm start`'s entry point), configured by `env` alone, SIGKILLed
 * at the latest with the scope; `kill` SIGKILLs it and waits for the exit.
 */
export const startNodeProcess = (env: Record<string, string>) =>
  Effect.gen(function* () {
    const child = spawn(process.execPath, ["--import", "tsx", "src/server/main.ts"], {
      env: {
        ...Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("GATEWAY_"))),
        ...env
      }
    })
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()))
    const kill = Effect.promise(async () => {
      child.kill("SIGKILL")
      await exited
    })
    yield* Effect.addFinalizer(() => kill)
    let output = ""
    yield* Effect.promise(
      () =>
        new Promise<void>((resolve, reject) => {
          const timer = setTimeout(
            () => reject(new Error(`deadline: node listening\n${output}`)),
            PROCESS_START_DEADLINE_MS
          )
          const onData = (chunk: Buffer) => {
            output += chunk.toString()
            if (output.includes("filament-gateway listening on")) {
              clearTimeout(timer)
              resolve()
            }
          }
          child.stdout.on("data", onData)
          child.stderr.on("data", onData)
        })
    )
    return { kill }
  })

/**
 * A new user's client of a gateway process on `port` (one started without the test harness), allowed
 * every channel of `guild`, its `ready` consumed; terminated with the scope.
 */
export const connectToProcess = (port: number, secret: Redacted.Redacted<string>, guild: string) =>
  Effect.gen(function* () {
    const token = yield* Auth.signToken({
      secret,
      userId: newId(),
      expiresAt: Math.floor(Date.now() / 1000) + 3600,
      guilds: { [guild]: "*" }
    })
    const client = new TestClient(new WebSocket(`ws://127.0.0.1:${port}/gateway/ws?access_token=${token}`))
    yield* Effect.addFinalizer(() => Effect.sync(() => client.socket.terminate()))
    yield* client.nextOfType("ready")
    return client
  })

/** Subscribes and consumes the chat sequence up to the `voice_participant_sync` that ends it. */
export const subscribe = (client: TestClient, guild: string, channel: string) =>
  Effect.gen(function* () {
    client.send({ v: 1, t: "subscribe", d: { guild_id: guild, channel_id: channel } })
    const frames: Array<Frame> = []
    do frames.push(yield* client.next("subscribe sequence"))
    while (frames[frames.length - 1]!.t !== "voice_participant_sync")
    return frames
  })

export const presenceOf = (frames: ReadonlyArray<Frame>, user: string) =>
  frames
    .filter((frame) => frame.t === "presence_update" && frame.d["user_id"] === user)
    .map((frame) => frame.d["status"])

/** A message every listed client must receive next: nothing else arrived before it. */
export const expectMarkerNext = (
  node: Harness,
  guild: string,
  channel: string,
  clients: ReadonlyArray<TestClient>
) =>
  Effect.gen(function* () {
    const text = `marker ${newId()}`
    yield* node.gateway.publish(MessageCreate, message(guild, channel, text))
    for (const client of clients) {
      const frame = yield* client.next(text)
      expect(frame.t, JSON.stringify(frame)).toBe("message_create")
      expect(frame.d["content"]).toBe(text)
    }
  })
