/**
 * Slow and stalled peers. A reader that stops reading among 1000 healthy ones while events flow is
 * evicted with 1008 `slow_consumer` once its bounded outbox is full, and the healthy ones receive
 * every event, in order. A peer that never answers pings is closed by the heartbeat (TestClock),
 * its healthy neighbours are not. (A peer that opens TCP and never sends an upgrade is closed by
 * the request timeout: see http-limits.test.ts.)
 */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, MutableQueue, TestClock } from "effect"
import WebSocket from "ws"
import { MessageCreate } from "../../src/protocol/events/message.js"
import type { PayloadOf } from "../../src/protocol/EventDefinition.js"
import { plainTextMessage } from "../fixtures/messages.js"
import { awaitSleeps, BASE_UNIX, newId, startGateway, yieldToIo, type Harness } from "../server/harness.js"
import { eventually } from "../deadline.js"

const HEALTHY = 1000
/** Healthy readers may trail the publisher by this many events before it waits (they share our process). */
const MAX_LAG = 64
/** The stalled reader also holds a channel of large events, so that its kernel buffers fill fast. */
const LARGE = 1_900
const LARGE_PER_ROUND = 40

const message = (guild: string, channel: string, seq: number, padding = 0) =>
  plainTextMessage(
    { message_id: newId(), guild_id: guild, channel_id: channel, author_id: newId() },
    `m${seq}:${"p".repeat(padding)}`,
    BASE_UNIX + seq
  ) as unknown as PayloadOf<typeof MessageCreate>

/**
 * A lean healthy reader (a `TestClient` per connection would keep every frame): it checks that
 * message_create sequence numbers arrive consecutively and counts them.
 */
class Reader {
  received = 0
  outOfOrder = 0
  subscribed = false
  closed: number | undefined
  constructor(readonly socket: WebSocket) {
    socket.on("message", (data) => {
      const text = data.toString()
      if (text.startsWith('{"v":1,"t":"subscribed"')) this.subscribed = true
      if (!text.startsWith('{"v":1,"t":"message_create"')) return
      const seq = Number(/"created_at_unix":(\d+)/.exec(text)?.[1]) - BASE_UNIX
      if (seq !== this.received) this.outOfOrder++
      this.received++
    })
    socket.on("close", (code) => (this.closed = code))
    socket.on("error", () => undefined)
  }
}

const openReaders = (harness: Harness, guild: string, channel: string, count: number) =>
  Effect.gen(function* () {
    const tokens: Array<string> = []
    for (let i = 0; i < count; i++)
      tokens.push(yield* harness.token({ userId: newId(), guilds: { [guild]: "*" } }))
    const readers = yield* Effect.promise(() =>
      Promise.all(
        tokens.map(
          (token) =>
            new Promise<Reader>((resolve, reject) => {
              const socket = new WebSocket(`ws://127.0.0.1:${harness.port}/gateway/ws?access_token=${token}`)
              const reader = new Reader(socket)
              socket.once("open", () => {
                socket.send(
                  JSON.stringify({ v: 1, t: "subscribe", d: { guild_id: guild, channel_id: channel } })
                )
                resolve(reader)
              })
              socket.once("unexpected-response", () => reject(new Error("upgrade refused")))
            })
        )
      )
    )
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => readers.forEach((reader) => reader.socket.terminate()))
    )
    yield* eventually("every reader subscribed", () => readers.every((reader) => reader.subscribed), 20_000)
    return readers
  })

describe("a stalled reader among 1000 healthy ones", () => {
  it.scoped("is evicted 1008 within its bounded outbox; the healthy ones receive everything in order", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway({ socketHighWaterBytes: 16_384 })
      const [guild, channel] = [newId(), newId()]
      const readers = yield* openReaders(harness, guild, channel, HEALTHY)
      const stalledUser = newId()
      const stalled = yield* harness.connectReady(stalledUser, { [guild]: "*" })
      const large = newId()
      yield* stalled.subscribe(guild, channel)
      yield* stalled.subscribe(guild, large)
      const [connection] = yield* harness.serverConnections(stalledUser)
      if (connection === undefined) return expect.fail("no server-side connection")
      const evictions = yield* harness.metric("filament_ws_disconnects_total", { reason: "slow_consumer" })
      const fullQueue = yield* harness.metric("filament_gateway_events_dropped_total", {
        scope: "channel",
        event_type: "message_create",
        reason: "full_queue"
      })
      stalled.socket.pause()

      let published = 0
      let maxOutbox = 0
      const slowest = () => readers.reduce((min, reader) => Math.min(min, reader.received), Infinity)
      const publish = Effect.gen(function* () {
        yield* harness.gateway.publish(MessageCreate, message(guild, channel, published++))
        maxOutbox = Math.max(maxOutbox, MutableQueue.length(connection.outbox))
        for (let i = 0; i < LARGE_PER_ROUND && connection.isOpen; i++) {
          yield* harness.gateway.publish(MessageCreate, message(guild, large, published, LARGE))
          maxOutbox = Math.max(maxOutbox, MutableQueue.length(connection.outbox))
        }
        yield* yieldToIo
        if (published - slowest() > MAX_LAG) {
          yield* eventually("healthy readers keep up", () => published - slowest() <= MAX_LAG / 2, 20_000)
        }
      })
      while (connection.isOpen && published < 5_000) {
        yield* publish
      }
      // Events keep flowing after the eviction.
      for (let i = 0; i < 20; i++) yield* publish

      expect(connection.disconnectReason).toBe("slow_consumer")
      expect(maxOutbox).toBe(harness.config.outboundQueue)
      yield* eventually("every healthy reader has every event", () => slowest() === published, 20_000)
      expect(readers.filter((reader) => reader.outOfOrder > 0 || reader.closed !== undefined)).toHaveLength(0)
      stalled.socket.resume()
      expect(yield* stalled.waitClosed()).toEqual({ code: 1008, reason: "slow_consumer" })
      expect(yield* harness.metric("filament_ws_disconnects_total", { reason: "slow_consumer" })).toBe(
        evictions + 1
      )
      expect(
        yield* harness.metric("filament_gateway_events_dropped_total", {
          scope: "channel",
          event_type: "message_create",
          reason: "full_queue"
        })
      ).toBe(fullQueue + 1)
      expect(harness.gateway.connectionCount()).toBe(HEALTHY)
    })
  )
})

describe("a peer that never answers pings", () => {
  it.scoped("is closed 4009 by the heartbeat on the TestClock; neighbours that answer stay", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway({
        pingInterval: Duration.seconds(30),
        pongTimeout: Duration.seconds(10)
      })
      const silentUser = newId()
      const silent = yield* harness.connect(yield* harness.token({ userId: silentUser }), { autoPong: false })
      yield* silent.nextOfType("ready")
      const neighbourUsers = [newId(), newId()]
      const neighbours = [
        yield* harness.connectReady(neighbourUsers[0]!),
        yield* harness.connectReady(neighbourUsers[1]!)
      ]
      const neighbourConnections = (yield* Effect.forEach(neighbourUsers, harness.serverConnections)).flat()
      const before = yield* harness.metric("filament_ws_disconnects_total", { reason: "heartbeat_timeout" })
      // Listening now, before the clock moves.
      const ping = new Promise((resolve) => silent.socket.once("ping", resolve))
      const pinged = Effect.promise(() => ping)
      yield* awaitSleeps(1)
      yield* TestClock.adjust(Duration.seconds(30))
      yield* pinged
      // Neighbours answer (ws auto-pong): wait until the server has seen both pongs.
      expect(neighbourConnections).toHaveLength(2)
      yield* eventually("neighbours' pongs", () =>
        neighbourConnections.every((c) => c.pingSentAt === undefined)
      )
      yield* TestClock.adjust(Duration.seconds(9))
      const [silentConnection] = yield* harness.serverConnections(silentUser)
      expect(silentConnection?.isOpen).toBe(true)
      yield* TestClock.adjust(Duration.seconds(1))
      expect(yield* silent.waitClosed()).toEqual({ code: 4009, reason: "heartbeat_timeout" })
      expect(yield* harness.metric("filament_ws_disconnects_total", { reason: "heartbeat_timeout" })).toBe(
        before + 1
      )
      for (const neighbour of neighbours) expect(neighbour.closed).toBeUndefined()
      expect(harness.gateway.connectionCount()).toBe(2)
    })
  )
})
