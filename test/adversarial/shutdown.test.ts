/**
 * Graceful shutdown under load, on the real process (`src/server/main.ts`): while events are being
 * published, SIGTERM. Every client gets 1001 `going_away`; every event the publish API accepted
 * (202) reaches every healthy subscriber before that close — including the frames waiting in the
 * outboxes of readers that had fallen behind, which are written ahead of the close frame — and the
 * process exits 0 within the close grace.
 */
import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Either, Exit, Fiber, MutableQueue, Redacted, Scope, TestClock } from "effect"
import WebSocket from "ws"
import { MessageCreate } from "../../src/protocol/events/message.js"
import type { PayloadOf } from "../../src/protocol/EventDefinition.js"
import * as Auth from "../../src/server/Auth.js"
import type { Connection } from "../../src/server/core/Connection.js"
import * as Outbound from "../../src/server/core/Outbound.js"
import { eventually, within } from "../deadline.js"
import { plainTextMessage } from "../fixtures/messages.js"
import {
  awaitSleeps,
  BASE_UNIX,
  newId,
  startGateway,
  yieldToIo,
  type Harness,
  type TestClient
} from "../server/harness.js"

const SECRET = "shutdown-secret-0123456789-0123456789-abc"
const PUBLISH_KEY = "shutdown-publish-key-0123456789-0123456789"
const GRACE_SECONDS = 3
const CLIENTS = 200
const LAGGING = 5
const DEADLINE_MS = 20_000

interface Client {
  readonly socket: WebSocket
  readonly seqs: Array<number>
  subscribed: boolean
  closed: { code: number; reason: string } | undefined
}

describe("graceful shutdown under load", () => {
  it(
    "SIGTERM while publishing: all 1001, every accepted event delivered first, exit 0 within the grace",
    async () => {
      const main = fileURLToPath(new URL("../../src/server/main.ts", import.meta.url))
      const child = spawn(process.execPath, ["--import", "tsx", main], {
        env: {
          ...process.env,
          GATEWAY_JWT_SECRET: SECRET,
          GATEWAY_PUBLISH_KEY: PUBLISH_KEY,
          GATEWAY_HOST: "127.0.0.1",
          GATEWAY_PORT: "0",
          GATEWAY_CLOSE_GRACE_SECS: String(GRACE_SECONDS),
          // Small socket buffers, so the lagging readers' frames wait in their outboxes.
          GATEWAY_SOCKET_HIGH_WATER_BYTES: "16384",
          GATEWAY_OUTBOUND_QUEUE: "4096"
        },
        stdio: ["ignore", "pipe", "pipe"]
      })
      const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
      try {
        let output = ""
        const port = await within(
          "listening",
          new Promise<number>((resolve) => {
            const onData = (chunk: Buffer) => {
              output += chunk.toString()
              const match = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(output)
              if (match !== null) resolve(Number(match[1]))
            }
            child.stdout.on("data", onData)
            child.stderr.on("data", onData)
          }),
          DEADLINE_MS
        )
        const [guild, channel] = [newId(), newId()]
        const clients: Array<Client> = []
        await Promise.all(
          Array.from({ length: CLIENTS }, async () => {
            const token = await Effect.runPromise(
              Auth.signToken({
                secret: Redacted.make(SECRET),
                userId: newId(),
                expiresAt: Math.floor(Date.now() / 1000) + 3600,
                guilds: { [guild]: "*" }
              })
            )
            const socket = new WebSocket(`ws://127.0.0.1:${port}/gateway/ws?access_token=${token}`)
            const client: Client = { socket, seqs: [], subscribed: false, closed: undefined }
            clients.push(client)
            socket.on("message", (data) => {
              const frame = JSON.parse(data.toString()) as { t: string; d: Record<string, unknown> }
              if (frame.t === "ready")
                socket.send(
                  JSON.stringify({ v: 1, t: "subscribe", d: { guild_id: guild, channel_id: channel } })
                )
              if (frame.t === "subscribed") client.subscribed = true
              if (frame.t === "message_create")
                client.seqs.push(Number((frame.d["content"] as string).split(":")[0]!.slice(1)))
            })
            socket.on("close", (code, reason) => (client.closed = { code, reason: reason.toString() }))
            socket.on("error", () => undefined)
          })
        )
        await Effect.runPromise(
          eventually(
            "every client subscribed",
            () => clients.every((client) => client.subscribed),
            DEADLINE_MS
          )
        )
        // A few readers fall behind: their frames wait in their outboxes when the shutdown begins.
        const lagging = clients.slice(0, LAGGING)
        for (const client of lagging) client.socket.pause()

        const accepted: Array<number> = []
        let stopped = false
        const publishLoop = (async () => {
          for (let seq = 0; !stopped; seq++) {
            const body = JSON.stringify({ t: "message_create", d: messageWire(guild, channel, seq) })
            try {
              const response = await fetch(`http://127.0.0.1:${port}/v1/publish`, {
                method: "POST",
                headers: { authorization: `Bearer ${PUBLISH_KEY}`, "content-type": "application/json" },
                body
              })
              if (response.status === 202) accepted.push(seq)
              else stopped = true
            } catch {
              stopped = true // the server stopped listening
            }
          }
        })()
        await Effect.runPromise(eventually("load is flowing", () => accepted.length >= 800, DEADLINE_MS))
        const signalled = performance.now()
        child.kill("SIGTERM")
        for (const client of lagging) client.socket.resume()
        const code = await within("process exit", exited, DEADLINE_MS)
        const exitSeconds = (performance.now() - signalled) / 1000
        stopped = true
        await publishLoop
        await Effect.runPromise(
          eventually(
            "every client closed",
            () => clients.every((client) => client.closed !== undefined),
            DEADLINE_MS
          )
        )

        expect(code).toBe(0)
        expect(exitSeconds).toBeLessThan(GRACE_SECONDS + 1.5)
        expect(accepted.length).toBeGreaterThan(0)
        const unexpected = clients.filter(
          (client) => client.closed?.code !== 1001 || client.closed.reason !== "going_away"
        )
        expect(unexpected.map((client) => client.closed)).toEqual([])
        // Every accepted event reached every client, in order, before its close.
        for (const client of clients) {
          expect(client.seqs.slice(0, accepted.length)).toEqual(accepted)
        }
      } finally {
        if (child.exitCode === null) child.kill("SIGKILL")
      }
    },
    DEADLINE_MS * 3
  )
})

/** Event `seq`: a large plain-text message, so that lagging readers' outboxes hold bytes. */
const messageWire = (guild: string, channel: string, seq: number) =>
  plainTextMessage(
    { message_id: newId(), guild_id: guild, channel_id: channel, author_id: newId() },
    `s${seq}:${"p".repeat(1900)}`,
    BASE_UNIX + seq
  )

const message = (guild: string, channel: string, seq: number) =>
  messageWire(guild, channel, seq) as unknown as PayloadOf<typeof MessageCreate>

/** A subscribed reader that stops reading, and events published until its outbox holds some. */
const backlog = (harness: Harness) =>
  Effect.gen(function* () {
    const [user, guild, channel] = [newId(), newId(), newId()]
    const client = yield* harness.connectReady(user, { [guild]: "*" })
    yield* client.subscribe(guild, channel)
    const [connection] = yield* harness.serverConnections(user)
    if (connection === undefined) return yield* Effect.die(new Error("no server-side connection"))
    client.socket.pause()
    let published = 0
    while (MutableQueue.length(connection.outbox) < 20 && published < 50_000) {
      yield* harness.gateway.publish(MessageCreate, message(guild, channel, published++))
      yield* yieldToIo
    }
    expect(MutableQueue.length(connection.outbox)).toBeGreaterThanOrEqual(20)
    return { client, connection: connection as Connection, published }
  })

const contentsOf = (client: TestClient) =>
  client.frames
    .filter((frame) => frame.t === "message_create")
    .map((frame) => String(frame.d["content"]).split(":")[0])

describe("frames waiting in an outbox when a connection ends", () => {
  it.scoped("at shutdown they are written ahead of the 1001 close frame", () =>
    Effect.gen(function* () {
      const scope = yield* Scope.make()
      const harness = yield* startGateway({ socketHighWaterBytes: 16_384, outboundQueue: 100_000 }).pipe(
        Scope.extend(scope)
      )
      const { client, published } = yield* backlog(harness)
      const sleeping = (yield* TestClock.sleeps()).length
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* awaitSleeps(sleeping + 1)
      client.socket.resume()
      expect(yield* client.waitClosed()).toEqual({ code: 1001, reason: "going_away" })
      yield* Fiber.join(closing)
      expect(contentsOf(client)).toEqual(Array.from({ length: published }, (_, seq) => `s${seq}`))
    })
  )

  it.scoped("on any other close they are counted as dropped{reason=closed}", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway({
        socketHighWaterBytes: 16_384,
        outboundQueue: 100_000,
        pingInterval: Duration.seconds(30),
        pongTimeout: Duration.seconds(10)
      })
      const dropped = () =>
        harness.metric("filament_gateway_events_dropped_total", {
          scope: "channel",
          event_type: "message_create",
          reason: "closed"
        })
      const before = yield* dropped()
      const { client, connection } = yield* backlog(harness)
      // A batch (a presence flush's shape: several events in one write) counts as its events.
      const [guild, channel] = [newId(), newId()]
      const frames = [1, 2, 3].map((seq) =>
        Either.getOrThrow(Outbound.encode(MessageCreate, message(guild, channel, seq), 65_536))
      )
      expect(connection.deliver(Outbound.batch(frames))).toBe("queued")
      const queued = MutableQueue.length(connection.outbox) - 1 + frames.length
      // A reader that stopped reading cannot answer pings either.
      yield* TestClock.adjust(Duration.seconds(40))
      expect(connection.disconnectReason).toBe("heartbeat_timeout")
      expect(MutableQueue.length(connection.outbox)).toBe(0)
      expect(yield* dropped()).toBe(before + queued)
      client.socket.resume()
      expect((yield* client.waitClosed()).code).toBe(4009)
    })
  )
})
