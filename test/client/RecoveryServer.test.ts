/**
 * The client's missed-event recovery against the real gateway (127.0.0.1 port 0, real sockets): the
 * Effect API (`GatewayConnection`: events and the `recoveries` stream) and the callback client
 * (`GatewayClient`, `onRecovery`). The server drops the connection, events are published while the
 * client waits its backoff (TestClock), and after the reconnect the app sees exactly the missed
 * events, once, then the verdicts; a gateway restarted without persistence answers `epoch_changed`.
 */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Queue, Random, Stream, TestClock } from "effect"
import { WebSocket } from "ws"
import type { ClientEvent } from "../../src/client/Decode.js"
import * as GatewayClient from "../../src/client/GatewayClient.js"
import * as GatewayConnection from "../../src/client/GatewayConnection.js"
import { MessageCreate } from "../../src/protocol/events/message.js"
import { ProfileUpdate } from "../../src/protocol/events/profile.js"
import { ChannelCreate } from "../../src/protocol/events/workspace.js"
import type { UserId } from "../../src/protocol/Ids.js"
import { eventually, withinEffect } from "../deadline.js"
import { message, newId, startGateway, typed, type Harness } from "../server/harness.js"

const QUIET_HEARTBEAT = { pingInterval: Duration.hours(24), pongTimeout: Duration.hours(24) }

const publishMissed = (harness: Harness, guild: string, channel: string, user: string) =>
  Effect.gen(function* () {
    yield* harness.gateway.publish(MessageCreate, message(guild, channel, "missed 1"))
    yield* harness.gateway.publish(
      ChannelCreate,
      typed(ChannelCreate, {
        guild_id: guild,
        channel: { channel_id: newId(), name: "missed", kind: "text" }
      })
    )
    yield* harness.gateway.publish(MessageCreate, message(guild, channel, "missed 2"))
    yield* harness.gateway.publishToUsers(
      ProfileUpdate,
      typed(ProfileUpdate, {
        user_id: user,
        updated_fields: { username: "missed" },
        updated_at_unix: 1_700_000_002
      }),
      [user as UserId]
    )
  })

/** The server ends the user's connection (1008, the client reconnects after its backoff). */
const dropConnections = (harness: Harness, user: string) =>
  Effect.flatMap(harness.serverConnections(user), (connections) =>
    Effect.sync(() => connections.forEach((connection) => connection.close("slow_consumer")))
  )

const describeEvent = (event: ClientEvent): string | undefined => {
  switch (event.type) {
    case "message_create":
      return `message_create ${event.payload.content}`
    case "channel_create":
      return `channel_create ${event.payload.channel.name}`
    case "profile_update":
      return `profile_update ${event.payload.updated_fields.username}`
    default:
      return undefined
  }
}

describe("client recovery against the real gateway", () => {
  it.scoped("Effect API: the missed events exactly once after the reconnect, then the verdicts", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway(QUIET_HEARTBEAT)
      const [user, guild, channel] = [newId(), newId(), newId()]
      const connection = yield* GatewayConnection.connect({
        url: `http://127.0.0.1:${harness.port}`,
        WebSocket,
        accessToken: () => harness.token({ userId: user, guilds: { [guild]: "*" } }),
        channels: [{ guild_id: guild, channel_id: channel }]
      }).pipe(Effect.orDie)
      const seen: Array<string> = []
      const verdicts = yield* Queue.unbounded<GatewayClient.RecoveryVerdict>()
      yield* Effect.forkScoped(
        Stream.runForEach(connection.events, (event) =>
          Effect.sync(() => {
            const line = describeEvent(event)
            if (line !== undefined) seen.push(line)
          })
        )
      )
      yield* Effect.forkScoped(
        Stream.runForEach(connection.recoveries, (verdict) => Queue.offer(verdicts, verdict))
      )
      // First connect: the user stream after ready, the channel and guild streams after subscribe.
      const first = yield* Effect.forEach([1, 2, 3], () =>
        withinEffect("first verdicts", Queue.take(verdicts))
      )
      expect(first.map((verdict) => [verdict.stream, verdict.recovered])).toEqual([
        [`user:${user}`, undefined],
        [`channel:${guild}:${channel}`, undefined],
        [`guild:${guild}`, undefined]
      ])
      yield* harness.gateway.publish(MessageCreate, message(guild, channel, "live"))
      yield* eventually("the live event", () => seen.includes("message_create live"))

      yield* dropConnections(harness, user)
      yield* eventually("dropped", () => harness.gateway.connectionCount() === 0)
      yield* publishMissed(harness, guild, channel, user)
      yield* TestClock.adjust(Duration.seconds(2))
      const after = yield* Effect.forEach([1, 2, 3], () =>
        withinEffect("verdicts after reconnect", Queue.take(verdicts))
      )
      expect(after.map(({ recovered, replayed, stream }) => [stream, recovered, replayed])).toEqual([
        [`user:${user}`, true, 1],
        [`channel:${guild}:${channel}`, true, 2],
        [`guild:${guild}`, true, 1]
      ])
      yield* harness.gateway.publish(MessageCreate, message(guild, channel, "live again"))
      yield* eventually("the next live event", () => seen.includes("message_create live again"))
      expect(seen).toEqual([
        "message_create live",
        "profile_update missed",
        "message_create missed 1",
        "channel_create missed",
        "message_create missed 2",
        "message_create live again"
      ])
    }).pipe(Effect.withRandom(Random.fixed([0.5])))
  )

  it.scoped("callback client: onRecovery verdicts; a gateway restarted without history: epoch_changed", () =>
    Effect.gen(function* () {
      const [user, guild, channel] = [newId(), newId(), newId()]
      const seen: Array<string> = []
      const verdicts: Array<GatewayClient.RecoveryVerdict> = []
      const harness = yield* startGateway(QUIET_HEARTBEAT)
      const client = GatewayClient.make({
        url: `http://127.0.0.1:${harness.port}`,
        WebSocket: WebSocket as unknown as GatewayClient.WebSocketConstructor,
        accessToken: () => Effect.runPromise(harness.token({ userId: user, guilds: { [guild]: "*" } })),
        channels: [{ guild_id: guild, channel_id: channel }],
        onEvent: (event) => {
          const line = describeEvent(event)
          if (line !== undefined) seen.push(line)
        },
        onRecovery: (verdict) => verdicts.push(verdict),
        random: () => 0.5
      })
      yield* Effect.addFinalizer(() => Effect.sync(() => client.close()))
      yield* eventually("first verdicts", () => verdicts.length === 3)
      yield* dropConnections(harness, user)
      yield* publishMissed(harness, guild, channel, user)
      yield* eventually("verdicts after the reconnect", () => verdicts.length === 6)
      expect(
        verdicts.slice(3).map(({ recovered, replayed, stream }) => [stream, recovered, replayed])
      ).toEqual([
        [`user:${user}`, true, 1],
        [`channel:${guild}:${channel}`, true, 2],
        [`guild:${guild}`, true, 1]
      ])
      expect(seen).toEqual([
        "profile_update missed",
        "message_create missed 1",
        "channel_create missed",
        "message_create missed 2"
      ])

      // The positions the client holds name this gateway's history; a gateway started afresh (a
      // restarted single node: a new in-memory history) answers them epoch_changed.
      const held = client.positions()
      expect(held.get(`channel:${guild}:${channel}`)?.offset).toBe(2)
      const restarted = yield* startGateway(QUIET_HEARTBEAT)
      const socket = yield* restarted
        .connect(yield* restarted.token({ userId: user, guilds: { [guild]: "*" } }), {
          params: { recovery: "1" }
        })
        .pipe(Effect.orDie)
      yield* socket.nextOfType("ready")
      yield* socket.nextOfType("recovery")
      socket.send({
        v: 1,
        t: "subscribe",
        d: {
          guild_id: guild,
          channel_id: channel,
          since: { channel: held.get(`channel:${guild}:${channel}`) }
        }
      })
      yield* socket.nextOfType("subscribed")
      const answer = yield* socket.nextOfType("recovery")
      expect((answer.d["streams"] as ReadonlyArray<Record<string, unknown>>)[0]).toMatchObject({
        stream: `channel:${guild}:${channel}`,
        offset: 0,
        recovered: false,
        reason: "epoch_changed"
      })
    })
  )
})
