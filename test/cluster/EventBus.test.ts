/**
 * The Redis EventBus on its own (no gateway): two bus instances on a real `redis-server`. The frame a
 * node receives is byte-identical to the one the publisher built; a node never receives its own
 * messages; user batches reach each user's topic once; the receive backlog is bounded.
 */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Either, Option, Queue, Redacted } from "effect"
import { MessageCreate } from "../../src/protocol/events/message.js"
import { ProfileUpdate } from "../../src/protocol/events/profile.js"
import { ChannelCreate } from "../../src/protocol/events/workspace.js"
import type { GuildId, UserId } from "../../src/protocol/Ids.js"
import { USERS_PER_MESSAGE } from "../../src/server/cluster/BusCodec.js"
import { makeRedis } from "../../src/server/cluster/EventBus.js"
import type { EventBusShape } from "../../src/server/core/Bus.js"
import { guildTopic, userTopic } from "../../src/server/registry/Interest.js"
import * as Metrics from "../../src/server/Metrics.js"
import { GatewayMetrics } from "../../src/server/Metrics.js"
import * as Outbound from "../../src/server/core/Outbound.js"
import { BASE_UNIX, message, newId, seriesValue, typed } from "../server/harness.js"
import { eventuallyEffect } from "../deadline.js"
import { hasRedisServer, startRedis, type RedisBackend } from "./redis.js"

const SECRET = Redacted.make("bus-secret-0123456789-0123456789-abcdef")

const bus = (redis: RedisBackend, backlog = 100) =>
  makeRedis({
    endpoint: redis.endpoint,
    secret: SECRET,
    acceptSecret: Option.none(),
    maxMessageBytes: 98_304,
    maxEventBytes: 65_536,
    maxLag: Duration.seconds(30),
    reconnectMax: Duration.millis(200),
    timeout: Duration.seconds(5),
    backlog,
    slotsRefresh: Duration.seconds(5)
  })

const interested = (node: EventBusShape, topic: string) =>
  Effect.zipRight(
    Effect.sync(() => node.setInterest(topic, true)),
    node.awaitActive(topic)
  )

const counter = (name: string, labels: Record<string, string> = {}) =>
  Effect.map(GatewayMetrics, (metrics) => seriesValue(metrics.render(), name, labels))

// Both nodes of a test share one Metrics.layer instance: the counters add up over them (deltas are read).
describe.skipIf(!hasRedisServer)("EventBus (Redis)", () => {
  it.scoped("another node gets the publisher's frame byte for byte; the publisher never gets its own", () =>
    Effect.gen(function* () {
      const redis = yield* startRedis
      const [a, b] = [yield* bus(redis), yield* bus(redis)]
      const [guild, channel] = [newId() as GuildId, newId()]
      yield* interested(a, guildTopic(guild))
      yield* interested(b, guildTopic(guild))
      const frame = Either.getOrThrow(
        Outbound.encode(MessageCreate, message(guild, channel, "hello"), 65_536)
      )
      const published = yield* counter("filament_gateway_bus_published_total")

      a.publish({ scope: "channel", guildId: guild, channelId: channel as never }, frame)
      const delivery = yield* Queue.take(b.deliveries)
      expect(delivery.route).toEqual({ scope: "channel", guildId: guild, channelId: channel })
      expect(delivery.frame.wire.equals(frame.wire)).toBe(true)
      expect(delivery.frame).toMatchObject({
        eventType: "message_create",
        scope: "channel",
        bytes: frame.bytes
      })
      // Node A's subscriber also got the message from Redis and ignored it: nothing queued.
      const marker = Either.getOrThrow(
        Outbound.encode(
          ChannelCreate,
          typed(ChannelCreate, {
            guild_id: guild,
            channel: { channel_id: newId(), name: "marker", kind: "text" }
          }),
          65_536
        )
      )
      b.publish({ scope: "guild", guildId: guild }, marker) // a marker in the other direction
      expect((yield* Queue.take(a.deliveries)).route).toEqual({ scope: "guild", guildId: guild })
      expect(yield* Queue.size(a.deliveries)).toBe(0)
      expect(yield* Queue.size(b.deliveries)).toBe(0)
      // Counted when Redis acknowledges each SPUBLISH: wait for both acknowledgements.
      yield* eventuallyEffect(
        "two publishes counted",
        Effect.map(counter("filament_gateway_bus_published_total"), (n) => n - published >= 2)
      )
      expect((yield* counter("filament_gateway_bus_published_total")) - published).toBe(2)
    }).pipe(Effect.provide(Metrics.layer))
  )

  it.scoped(
    "a user-scoped publish is signed once per batch and reaches each user's topic for that user only",
    () =>
      Effect.gen(function* () {
        const redis = yield* startRedis
        const [a, b] = [yield* bus(redis), yield* bus(redis)]
        const users = Array.from({ length: USERS_PER_MESSAGE + 44 }, () => newId() as UserId)
        const [first, last] = [users[5]!, users[users.length - 1]!]
        yield* interested(b, userTopic(first))
        yield* interested(b, userTopic(last))
        const frame = Either.getOrThrow(
          Outbound.encode(
            ProfileUpdate,
            typed(ProfileUpdate, {
              user_id: first,
              updated_fields: { about_markdown: "x" },
              updated_at_unix: BASE_UNIX
            }),
            65_536
          )
        )
        a.publish({ scope: "user", userIds: users }, frame)
        const received = [yield* Queue.take(b.deliveries), yield* Queue.take(b.deliveries)]
        expect(received.map((delivery) => delivery.route)).toEqual([
          { scope: "user", userIds: [first] },
          { scope: "user", userIds: [last] }
        ])
        // Nothing more: a marker on one of the same topics comes next.
        a.publish({ scope: "user", userIds: [last] }, frame)
        expect((yield* Queue.take(b.deliveries)).route).toEqual({ scope: "user", userIds: [last] })
        expect(yield* Queue.size(b.deliveries)).toBe(0)
      }).pipe(Effect.provide(Metrics.layer))
  )

  it.scoped("received frames beyond GATEWAY_BUS_BACKLOG are dropped and counted (backlog_full)", () =>
    Effect.gen(function* () {
      const redis = yield* startRedis
      const a = yield* bus(redis)
      const b = yield* bus(redis, 1)
      const [guild, channel] = [newId() as GuildId, newId()]
      yield* interested(b, guildTopic(guild))
      const before = yield* counter("filament_gateway_bus_dropped_total", { reason: "backlog_full" })
      const frames = ["one", "two", "three"].map((text) =>
        Either.getOrThrow(Outbound.encode(MessageCreate, message(guild, channel, text), 65_536))
      )
      // Nobody takes from B's backlog of one: the first waits, the next two are dropped.
      for (const frame of frames)
        a.publish({ scope: "channel", guildId: guild, channelId: channel as never }, frame)
      yield* eventuallyEffect(
        "two backlog drops",
        Effect.map(
          counter("filament_gateway_bus_dropped_total", { reason: "backlog_full" }),
          (n) => n - before >= 2
        )
      )
      expect(
        (yield* counter("filament_gateway_bus_dropped_total", { reason: "backlog_full" })) - before
      ).toBe(2)
      expect((yield* Queue.take(b.deliveries)).frame.wire.equals(frames[0]!.wire)).toBe(true)
    }).pipe(Effect.provide(Metrics.layer))
  )
})
