/**
 * Missed-event recovery in the SDK, over a real `ws` peer: the opt-in URL, `since` on re-subscribe
 * with the positions the client holds (from `pos` and from `recovery` events), the per-stream
 * verdicts (callback and Effect `Stream`), and the defensive duplicate drop.
 */
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Fiber, Random, Stream, TestClock } from "effect"
import { WebSocket } from "ws"
import type { FrameDropped } from "../../src/client/Decode.js"
import * as GatewayClient from "../../src/client/GatewayClient.js"
import * as GatewayConnection from "../../src/client/GatewayConnection.js"
import { channelStream, guildStream, userStream } from "../../src/protocol/Streams.js"
import { EVENT_VECTORS } from "../protocol/vectors.js"
import { startPeer, withPeer } from "./peer.js"
import type { PeerConnection, TestPeer } from "./peer.js"

const GUILD = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
const CHANNEL_A = "01ARZ3NDEKTSV4RRFFQ69G5FAW"
const CHANNEL_B = "01ARZ3NDEKTSV4RRFFQ69G5FAX"
const USER = "01ARZ3NDEKTSV4RRFFQ69G5FAZ"
const STREAM_A = channelStream(GUILD, CHANNEL_A)
const STREAM_B = channelStream(GUILD, CHANNEL_B)
const STREAM_G = guildStream(GUILD)
const STREAM_U = userStream(USER)

const message = EVENT_VECTORS.message_create.valid[0]!
const guildEvent = EVENT_VECTORS.workspace_update.valid[0]!
const userEvent = EVENT_VECTORS.friend_remove.valid[0]!

const positioned = (t: string, d: object, stream: string, epoch: string, offset: number) => ({
  v: 1,
  t,
  d,
  pos: { stream, epoch, offset }
})
const recoveryFrame = (streams: ReadonlyArray<object>, channel?: string) => ({
  v: 1,
  t: "recovery",
  d: channel === undefined ? { streams } : { guild_id: GUILD, channel_id: channel, streams }
})
const subscribe = (channel: string, since?: object) => ({
  v: 1,
  t: "subscribe",
  d:
    since === undefined
      ? { guild_id: GUILD, channel_id: channel }
      : { guild_id: GUILD, channel_id: channel, since }
})

/** A timer fired by hand, so a reconnect happens exactly when the test says. */
const manualTimer = (peer: TestPeer) => {
  const pending: Array<() => void> = []
  return {
    timer: {
      schedule: (run: () => void) => {
        pending.push(run)
        peer.notify()
        return () => {}
      }
    } satisfies GatewayClient.Timer,
    fireWhenScheduled: async () => {
      await peer.waitFor("reconnect scheduled", () => pending.length > 0)
      pending.shift()!()
    }
  }
}

const connectionWith = (peer: TestPeer, index: number, frames: number): Promise<PeerConnection> =>
  peer.waitFor(`connection ${index} with ${frames} frames`, () => {
    const connection = peer.connections[index]
    return connection !== undefined && connection.frames.length >= frames && connection
  })

describe("GatewayClient recovery (callbacks, real ws peer)", () => {
  it("opts in, holds positions from pos and recovery, hands them back on reconnect and reports verdicts", () =>
    withPeer(async (peer) => {
      const clock = manualTimer(peer)
      const verdicts: Array<GatewayClient.RecoveryVerdict> = []
      const messages: Array<number> = []
      const drops: Array<FrameDropped> = []
      const client = GatewayClient.make({
        url: peer.url,
        WebSocket,
        accessToken: () => "token",
        channels: [
          { guild_id: GUILD, channel_id: CHANNEL_A },
          { guild_id: GUILD, channel_id: CHANNEL_B }
        ],
        timer: clock.timer,
        on: { message_create: (_payload, event) => messages.push(event.pos!.offset) },
        onEvent: peer.notify,
        onRecovery: (verdict) => {
          verdicts.push(verdict)
          peer.notify()
        },
        onDrop: (dropped) => {
          drops.push(dropped)
          peer.notify()
        }
      })
      try {
        // First connection: opted in, nothing to hand back yet.
        const first = await connectionWith(peer, 0, 2)
        expect(first.query.get("recovery")).toBe("1")
        expect(first.query.has("user_since")).toBe(false)
        expect(first.frames).toEqual([subscribe(CHANNEL_A), subscribe(CHANNEL_B)])
        first.send({ v: 1, t: "ready", d: { user_id: USER } })
        first.send(recoveryFrame([{ stream: STREAM_U, epoch: "e1", offset: 0 }]))
        first.send(
          recoveryFrame(
            [
              { stream: STREAM_A, epoch: "e1", offset: 3 },
              { stream: STREAM_G, epoch: "e1", offset: 5 }
            ],
            CHANNEL_A
          )
        )
        first.send(recoveryFrame([{ stream: STREAM_B, epoch: "e1", offset: 0 }], CHANNEL_B))
        first.send(positioned("message_create", message, STREAM_A, "e1", 4))
        first.send(positioned("workspace_update", guildEvent, STREAM_G, "e1", 6))
        first.send(positioned("friend_remove", userEvent, STREAM_U, "e1", 1))
        await peer.waitFor("user position", () => client.positions().get(STREAM_U)?.offset === 1)
        // A first subscribe has nothing to recover: the verdicts only state positions.
        expect(verdicts.map((verdict) => [verdict.stream, verdict.offset, verdict.recovered])).toEqual([
          [STREAM_U, 0, undefined],
          [STREAM_A, 3, undefined],
          [STREAM_G, 5, undefined],
          [STREAM_B, 0, undefined]
        ])
        expect(client.positions()).toEqual(
          new Map([
            [STREAM_U, { epoch: "e1", offset: 1 }],
            [STREAM_A, { epoch: "e1", offset: 4 }],
            [STREAM_G, { epoch: "e1", offset: 6 }],
            [STREAM_B, { epoch: "e1", offset: 0 }]
          ])
        )

        // Reconnect: user_since in the URL, since on each re-subscribe, the guild's only on the first.
        first.close(1001, "going_away")
        await clock.fireWhenScheduled()
        const second = await connectionWith(peer, 1, 2)
        expect(second.query.get("recovery")).toBe("1")
        expect(second.query.get("user_since")).toBe("e1:1")
        expect(second.frames).toEqual([
          subscribe(CHANNEL_A, { channel: { epoch: "e1", offset: 4 }, guild: { epoch: "e1", offset: 6 } }),
          subscribe(CHANNEL_B, { channel: { epoch: "e1", offset: 0 } })
        ])
        verdicts.length = 0
        second.send({ v: 1, t: "ready", d: { user_id: USER } })
        // The gateway's head is behind the held position (a bogus one): its position replaces ours.
        second.send(
          recoveryFrame([
            { stream: STREAM_U, epoch: "e1", offset: 0, recovered: false, reason: "position_ahead" }
          ])
        )
        second.send(positioned("message_create", message, STREAM_A, "e1", 5))
        second.send(positioned("message_create", message, STREAM_A, "e1", 6))
        second.send(
          recoveryFrame(
            [
              { stream: STREAM_A, epoch: "e1", offset: 6, recovered: true, replayed: 2 },
              { stream: STREAM_G, epoch: "e1", offset: 20, recovered: false, reason: "position_trimmed" }
            ],
            CHANNEL_A
          )
        )
        second.send(
          recoveryFrame(
            [{ stream: STREAM_B, epoch: "e2", offset: 7, recovered: false, reason: "epoch_changed" }],
            CHANNEL_B
          )
        )
        // A frame the client already has (same epoch, offset ≤ held) is dropped, not dispatched.
        second.send(positioned("message_create", message, STREAM_A, "e1", 6))
        second.send(positioned("message_create", message, STREAM_A, "e1", 7))
        await peer.waitFor("live message 7", () => messages.includes(7))
        expect(messages).toEqual([4, 5, 6, 7])
        expect(drops.map((drop) => [drop.reason, drop.eventType])).toEqual([["duplicate", "message_create"]])
        expect(verdicts).toEqual([
          {
            stream: STREAM_U,
            target: { scope: "user", user_id: USER },
            epoch: "e1",
            offset: 0,
            recovered: false,
            reason: "position_ahead"
          },
          {
            stream: STREAM_A,
            target: { scope: "channel", guild_id: GUILD, channel_id: CHANNEL_A },
            epoch: "e1",
            offset: 6,
            recovered: true,
            replayed: 2
          },
          {
            stream: STREAM_G,
            target: { scope: "guild", guild_id: GUILD },
            epoch: "e1",
            offset: 20,
            recovered: false,
            reason: "position_trimmed"
          },
          {
            stream: STREAM_B,
            target: { scope: "channel", guild_id: GUILD, channel_id: CHANNEL_B },
            epoch: "e2",
            offset: 7,
            recovered: false,
            reason: "epoch_changed"
          }
        ])

        // The positions adopted from the verdicts (another epoch, a trimmed one) are what comes back next.
        second.close(1011, "internal_error")
        await clock.fireWhenScheduled()
        const third = await connectionWith(peer, 2, 2)
        expect(third.query.get("user_since")).toBe("e1:0")
        expect(third.frames).toEqual([
          subscribe(CHANNEL_A, { channel: { epoch: "e1", offset: 7 }, guild: { epoch: "e1", offset: 20 } }),
          subscribe(CHANNEL_B, { channel: { epoch: "e2", offset: 7 } })
        ])
      } finally {
        client.close()
      }
    }))

  it("a stream live before but never positioned comes back as not recovered (no_position)", () =>
    withPeer(async (peer) => {
      const clock = manualTimer(peer)
      const verdicts: Array<GatewayClient.RecoveryVerdict> = []
      const client = GatewayClient.make({
        url: peer.url,
        WebSocket,
        accessToken: () => "token",
        channels: [{ guild_id: GUILD, channel_id: CHANNEL_A }],
        timer: clock.timer,
        onEvent: peer.notify,
        onRecovery: (verdict) => {
          verdicts.push(verdict)
          peer.notify()
        }
      })
      try {
        const first = await connectionWith(peer, 0, 1)
        first.send({ v: 1, t: "ready", d: { user_id: USER } })
        await peer.waitFor("ready handled", () => first.frames.length === 1 && client.isOpen())
        // Dropped before any position arrived.
        first.close(1011, "internal_error")
        await clock.fireWhenScheduled()
        const second = await connectionWith(peer, 1, 1)
        expect(second.query.has("user_since")).toBe(false)
        expect(second.frames).toEqual([subscribe(CHANNEL_A)])
        second.send({ v: 1, t: "ready", d: { user_id: USER } })
        second.send(recoveryFrame([{ stream: STREAM_U, epoch: "e1", offset: 3 }]))
        second.send(
          recoveryFrame(
            [
              { stream: STREAM_A, epoch: "e1", offset: 9 },
              { stream: STREAM_G, epoch: "e1", offset: 2 }
            ],
            CHANNEL_A
          )
        )
        await peer.waitFor("3 verdicts", () => verdicts.length === 3)
        expect(verdicts.map((verdict) => [verdict.stream, verdict.recovered, verdict.reason])).toEqual([
          [STREAM_U, false, "no_position"],
          [STREAM_A, false, "no_position"],
          [STREAM_G, false, "no_position"]
        ])
        // A channel subscribed on this connection for the first time has nothing to recover.
        client.subscribe(GUILD, CHANNEL_B)
        await peer.waitFor("subscribe B", () => second.frames.length === 2)
        expect(second.frames[1]).toEqual(subscribe(CHANNEL_B))
        second.send(recoveryFrame([{ stream: STREAM_B, epoch: "e1", offset: 0 }], CHANNEL_B))
        await peer.waitFor("4 verdicts", () => verdicts.length === 4)
        expect(verdicts[3]).toEqual({
          stream: STREAM_B,
          target: { scope: "channel", guild_id: GUILD, channel_id: CHANNEL_B },
          epoch: "e1",
          offset: 0
        })
      } finally {
        client.close()
      }
    }))

  it("recovery: false speaks the original protocol: no opt-in, no since, no duplicate drop", () =>
    withPeer(async (peer) => {
      const clock = manualTimer(peer)
      const messages: Array<unknown> = []
      const client = GatewayClient.make({
        url: peer.url,
        WebSocket,
        accessToken: () => "token",
        recovery: false,
        channels: [{ guild_id: GUILD, channel_id: CHANNEL_A }],
        timer: clock.timer,
        on: {
          message_create: () => {
            messages.push(1)
            peer.notify()
          }
        }
      })
      try {
        const first = await connectionWith(peer, 0, 1)
        expect([...first.query.keys()]).toEqual(["access_token"])
        first.send({ v: 1, t: "ready", d: { user_id: USER } })
        first.send(positioned("message_create", message, STREAM_A, "e1", 4))
        first.send(positioned("message_create", message, STREAM_A, "e1", 4))
        await peer.waitFor("both delivered", () => messages.length === 2)
        expect(client.positions().size).toBe(0)
        first.close(1001, "going_away")
        await clock.fireWhenScheduled()
        const second = await connectionWith(peer, 1, 1)
        expect([...second.query.keys()]).toEqual(["access_token"])
        expect(second.frames).toEqual([subscribe(CHANNEL_A)])
      } finally {
        client.close()
      }
    }))

  it("unsubscribing forgets the channel's position, and the guild's with its last channel", () =>
    withPeer(async (peer) => {
      const client = GatewayClient.make({
        url: peer.url,
        WebSocket,
        accessToken: () => "token",
        channels: [{ guild_id: GUILD, channel_id: CHANNEL_A }],
        onEvent: peer.notify
      })
      try {
        const first = await connectionWith(peer, 0, 1)
        first.send(
          recoveryFrame(
            [
              { stream: STREAM_A, epoch: "e1", offset: 3 },
              { stream: STREAM_G, epoch: "e1", offset: 5 }
            ],
            CHANNEL_A
          )
        )
        // Positions of streams outside the subscription set are not held.
        first.send(positioned("message_create", message, STREAM_B, "e1", 8))
        await peer.waitFor("positions held", () => client.positions().size === 2)
        client.unsubscribe(GUILD, CHANNEL_A)
        expect(client.positions().size).toBe(0)
      } finally {
        client.close()
      }
    }))
})

describe("GatewayConnection.recoveries (Effect API, real ws peer)", () => {
  it.scoped("streams the per-stream verdicts of every reconnect", () =>
    Effect.gen(function* () {
      const peer = yield* Effect.acquireRelease(
        Effect.promise(() => startPeer()),
        (peer) => Effect.promise(() => peer.stop())
      )
      const verdicts = yield* Effect.gen(function* () {
        const connection = yield* GatewayConnection.connect({
          url: peer.url,
          WebSocket,
          accessToken: () => Effect.succeed("token"),
          channels: [{ guild_id: GUILD, channel_id: CHANNEL_A }]
        })
        const collected = yield* Effect.fork(Stream.runCollect(Stream.take(connection.recoveries, 4)))
        yield* Effect.yieldNow()
        const first = yield* Effect.promise(() => connectionWith(peer, 0, 1))
        first.send(
          recoveryFrame(
            [
              { stream: STREAM_A, epoch: "e1", offset: 3 },
              { stream: STREAM_G, epoch: "e1", offset: 5 }
            ],
            CHANNEL_A
          )
        )
        yield* Effect.promise(() => peer.waitFor("positions", () => first.frames.length === 1))
        first.close(1001, "going_away")
        yield* Effect.promise(() => peer.waitFor("first closed", () => first.closed))
        yield* TestClock.adjust(1_000)
        const second = yield* Effect.promise(() => connectionWith(peer, 1, 1))
        expect(second.frames).toEqual([
          subscribe(CHANNEL_A, { channel: { epoch: "e1", offset: 3 }, guild: { epoch: "e1", offset: 5 } })
        ])
        second.send(
          recoveryFrame(
            [
              { stream: STREAM_A, epoch: "e1", offset: 4, recovered: true, replayed: 1 },
              { stream: STREAM_G, epoch: "e9", offset: 1, recovered: false, reason: "epoch_changed" }
            ],
            CHANNEL_A
          )
        )
        return Chunk.toReadonlyArray(yield* Fiber.join(collected))
      }).pipe(Effect.scoped, Effect.withRandom(Random.fixed([0.5])))
      expect(
        verdicts.map((verdict) => [verdict.stream, verdict.offset, verdict.recovered, verdict.reason])
      ).toEqual([
        [STREAM_A, 3, undefined, undefined],
        [STREAM_G, 5, undefined, undefined],
        [STREAM_A, 4, true, undefined],
        [STREAM_G, 1, false, "epoch_changed"]
      ])
    })
  )
})
