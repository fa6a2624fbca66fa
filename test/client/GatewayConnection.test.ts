import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Fiber, Random, Stream, SubscriptionRef, TestClock } from "effect"
import { WebSocket } from "ws"
import type { TokenRequest } from "../../src/client/GatewayClient.js"
import * as GatewayConnection from "../../src/client/GatewayConnection.js"
import { startPeer } from "./peer.js"

const GUILD = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
const CHANNEL_A = "01ARZ3NDEKTSV4RRFFQ69G5FAW"
const USER = "01ARZ3NDEKTSV4RRFFQ69G5FAZ"

const subscribeFrame = (channel: string) => ({
  v: 1,
  t: "subscribe",
  d: { guild_id: GUILD, channel_id: channel }
})

describe("GatewayClient (Effect API)", () => {
  it.scoped("streams decoded events, reconnects on TestClock backoff, closes the socket with its scope", () =>
    Effect.gen(function* () {
      const peer = yield* Effect.acquireRelease(
        Effect.promise(() => startPeer()),
        (peer) => Effect.promise(() => peer.stop())
      )
      const tokens: Array<TokenRequest> = []
      const events = yield* Effect.gen(function* () {
        const connection = yield* GatewayConnection.connect({
          url: peer.url,
          WebSocket,
          accessToken: (request) => Effect.sync(() => (tokens.push(request), `effect-${tokens.length}`)),
          channels: [{ guild_id: GUILD, channel_id: CHANNEL_A }]
        })
        const collected = yield* Effect.fork(Stream.runCollect(Stream.take(connection.events, 2)))

        const first = yield* Effect.promise(() => peer.waitFor("first connection", () => peer.connections[0]))
        yield* Effect.promise(() => peer.waitFor("subscribe", () => first.frames.length === 1))
        expect(yield* SubscriptionRef.get(connection.open)).toBe(true)
        first.send({ v: 1, t: "ready", d: { user_id: USER } })
        first.close(1001, "going_away")
        // Full jitter with Random.fixed(0.5): retry 1 waits floor(0.5 × 2000) ms of TestClock time.
        yield* Effect.promise(() => peer.waitFor("first closed", () => first.closed))
        yield* TestClock.adjust(999)
        expect(peer.connections.length).toBe(1)
        yield* TestClock.adjust(1)
        const second = yield* Effect.promise(() =>
          peer.waitFor("second connection subscribed", () => {
            const connection = peer.connections[1]
            return connection !== undefined && connection.frames.length === 1 && connection
          })
        )
        expect(second.frames).toEqual([subscribeFrame(CHANNEL_A)])
        expect(second.token).toBe("effect-2")
        second.send({ v: 1, t: "subscribed", d: { guild_id: GUILD, channel_id: CHANNEL_A } })
        return Chunk.toReadonlyArray(yield* Fiber.join(collected))
      }).pipe(Effect.scoped, Effect.withRandom(Random.fixed([0.5])))

      expect(events).toEqual([
        { type: "ready", payload: { user_id: USER } },
        { type: "subscribed", payload: { guild_id: GUILD, channel_id: CHANNEL_A } }
      ])
      // The inner scope closed: the live socket was closed by the client.
      const second = peer.connections[1]!
      yield* Effect.promise(() => peer.waitFor("peer saw the close", () => second.closed))
      expect(second.closed).toEqual({ code: 1000, reason: "client_close" })
      expect(tokens).toEqual([
        { refresh: false, retry: 0 },
        { refresh: false, retry: 1 }
      ])
    })
  )

  it.scoped("GatewayConnection.events ends the stream when the server closes with 1000", () =>
    Effect.gen(function* () {
      const peer = yield* Effect.acquireRelease(
        Effect.promise(() => startPeer()),
        (peer) => Effect.promise(() => peer.stop())
      )
      const fiber = yield* Effect.fork(
        Stream.runCollect(
          GatewayConnection.events({ url: peer.url, WebSocket, accessToken: () => Effect.succeed("t") })
        )
      )
      const connection = yield* Effect.promise(() => peer.waitFor("connection", () => peer.connections[0]))
      connection.send({ v: 1, t: "ready", d: { user_id: USER } })
      connection.send({ v: 1, t: "no_such_event", d: {} })
      connection.close(1000, "normal")
      const events = yield* Fiber.join(fiber)
      expect(Chunk.toReadonlyArray(events)).toEqual([{ type: "ready", payload: { user_id: USER } }])
    })
  )
})
