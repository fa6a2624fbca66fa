/**
 * The client against the real gateway on 127.0.0.1 port 0 (issue 5): connect, `ready`, subscribe,
 * published events of each scope through the dispatcher; token expiry (4010) and shutdown
 * (`going_away`) followed by a reconnect with backoff. Server and client share the test's Clock, so
 * the server's expiry sweep and the client's backoff sleep are both driven by `TestClock`.
 */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Exit, Queue, Random, Scope, Stream, TestClock } from "effect"
import type { Scope as ScopeType } from "effect"
import { WebSocket } from "ws"
import type { ClientEvent, ClientEventType } from "../../src/client/Decode.js"
import type { TokenRequest } from "../../src/client/GatewayClient.js"
import * as GatewayConnection from "../../src/client/GatewayConnection.js"
import { MessageCreate } from "../../src/protocol/events/message.js"
import { ProfileUpdate } from "../../src/protocol/events/profile.js"
import { ChannelCreate } from "../../src/protocol/events/workspace.js"
import type { UserId } from "../../src/protocol/Ids.js"
import { withinEffect } from "../deadline.js"
import { message, newId, startGateway, typed } from "../server/harness.js"
import type { Harness } from "../server/harness.js"

// No pings during the test: TestClock jumps would otherwise race the (real-time) pongs.
const QUIET_HEARTBEAT = { pingInterval: Duration.hours(24), pongTimeout: Duration.hours(24) }

/** Waits for the next decoded event of `type`, skipping others (presence and voice follow-ups). */
const eventQueue = (connection: GatewayConnection.GatewayConnection) =>
  Effect.gen(function* () {
    const queue = yield* Queue.unbounded<ClientEvent>()
    yield* Effect.forkScoped(Stream.runForEach(connection.events, (event) => Queue.offer(queue, event)))
    return <T extends ClientEventType>(type: T): Effect.Effect<Extract<ClientEvent, { type: T }>> =>
      Effect.iterate(undefined as ClientEvent | undefined, {
        while: (event) => event?.type !== type,
        body: () => withinEffect(`event ${type}`, Queue.take(queue))
      }).pipe(Effect.map((event) => event as Extract<ClientEvent, { type: T }>))
  })

const clientOf = (
  harness: Harness,
  userId: string,
  guilds: Record<string, "*">,
  requests: Array<TokenRequest>,
  extra: Partial<GatewayConnection.GatewayConnectionOptions> = {}
): Effect.Effect<GatewayConnection.GatewayConnection, never, ScopeType.Scope> =>
  GatewayConnection.connect({
    url: `http://127.0.0.1:${harness.port}`,
    WebSocket,
    accessToken: (request) => {
      requests.push(request)
      return harness.token({ userId, guilds, expiresInSeconds: 60 })
    },
    ...extra
  }).pipe(Effect.orDie)

describe("GatewayConnection against the real gateway", () => {
  it.scoped(
    "receives events of every scope through the dispatcher; reconnects after 4010 with a fresh token",
    () =>
      Effect.gen(function* () {
        const harness = yield* startGateway(QUIET_HEARTBEAT)
        const [user, guild, channel] = [newId(), newId(), newId()]
        const requests: Array<TokenRequest> = []
        const handled: Array<string> = []
        const closes = yield* Queue.unbounded<number>()
        const connection = yield* clientOf(harness, user, { [guild]: "*" }, requests, {
          channels: [{ guild_id: guild, channel_id: channel }],
          onClose: (close) => Queue.unsafeOffer(closes, close.code),
          on: {
            message_create: (payload) => handled.push(`message_create ${payload.content}`),
            channel_create: (payload) => handled.push(`channel_create ${payload.channel.name}`),
            profile_update: (payload) => handled.push(`profile_update ${payload.updated_fields.username}`)
          }
        })
        const next = yield* eventQueue(connection)

        expect((yield* next("ready")).payload.user_id).toBe(user)
        expect((yield* next("subscribed")).payload).toEqual({ guild_id: guild, channel_id: channel })

        const messageCreate = message(guild, channel, "hello")
        yield* harness.gateway.publish(MessageCreate, messageCreate)
        yield* harness.gateway.publish(
          ChannelCreate,
          typed(ChannelCreate, {
            guild_id: guild,
            channel: { channel_id: newId(), name: "general", kind: "text" }
          })
        )
        yield* harness.gateway.publishToUsers(
          ProfileUpdate,
          typed(ProfileUpdate, {
            user_id: user,
            updated_fields: { username: "ada" },
            updated_at_unix: 1_700_000_001
          }),
          [user as UserId]
        )
        expect((yield* next("message_create")).payload).toEqual(messageCreate)
        yield* next("channel_create")
        yield* next("profile_update")
        expect(handled).toEqual(["message_create hello", "channel_create general", "profile_update ada"])

        // The token expires: the server's sweep closes with 4010; the client waits its backoff
        // (Random 0.5 of the 2 s ceiling), asks for a fresh token and re-subscribes.
        yield* TestClock.adjust(Duration.seconds(61))
        expect(yield* withinEffect("close 4010", Queue.take(closes))).toBe(4010)
        yield* TestClock.adjust(Duration.millis(1_000))
        expect((yield* next("ready")).payload.user_id).toBe(user)
        expect((yield* next("subscribed")).payload).toEqual({ guild_id: guild, channel_id: channel })
        expect(requests).toEqual([
          { refresh: false, retry: 0 },
          { refresh: true, retry: 1 }
        ])
        expect(Object.fromEntries(yield* connection.compatibilityCounters)).toEqual({
          "channel_override_migration:legacy_decode": 0,
          "channel_override_migration:explicit_decode": 0
        })
      }).pipe(Effect.withRandom(Random.fixed([0.5])))
  )

  it.scoped("reconnects and re-subscribes after the gateway shuts down (going_away) and comes back", () =>
    Effect.gen(function* () {
      const firstScope = yield* Scope.make()
      const first = yield* startGateway(QUIET_HEARTBEAT).pipe(Scope.extend(firstScope))
      const [user, guild, channel] = [newId(), newId(), newId()]
      const requests: Array<TokenRequest> = []
      const closes = yield* Queue.unbounded<number>()
      const connection = yield* clientOf(first, user, { [guild]: "*" }, requests, {
        channels: [{ guild_id: guild, channel_id: channel }],
        onClose: (close) => Queue.unsafeOffer(closes, close.code)
      })
      const next = yield* eventQueue(connection)
      yield* next("ready")
      yield* next("subscribed")

      yield* Scope.close(firstScope, Exit.void)
      expect(yield* withinEffect("close 1001", Queue.take(closes))).toBe(1001)
      const second = yield* startGateway({ ...QUIET_HEARTBEAT, port: first.port })
      expect(second.port).toBe(first.port)
      // Backoff: 0.9 of the 2 s ceiling, on TestClock time.
      yield* TestClock.adjust(Duration.seconds(2))
      yield* next("ready")
      expect((yield* next("subscribed")).payload).toEqual({ guild_id: guild, channel_id: channel })
      expect(yield* Queue.size(closes)).toBe(0)
      expect(requests.map((request) => request.refresh)).toEqual([false, false])
    }).pipe(Effect.withRandom(Random.fixed([0.9])))
  )
})
