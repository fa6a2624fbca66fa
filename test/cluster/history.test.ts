/**
 * The event history in a real `redis-server`: the `History` contract under TestClock, keys that
 * expire, a new epoch after FLUSHALL and after a restart empty, `history_unavailable` while Redis is
 * down, the bus message published atomically with the append (every subscriber sees offset order),
 * and the same on a three-master Redis Cluster.
 */
import { describe, expect, it } from "@effect/vitest"
import { Cause, Duration, Effect, Either, Exit } from "effect"
import { Cluster } from "ioredis"
import * as Metrics from "../../src/server/Metrics.js"
import * as RedisClient from "../../src/server/RedisClient.js"
import type { HistoryLimits, Position, StreamName } from "../../src/server/recovery/History.js"
import * as RedisHistory from "../../src/server/recovery/RedisHistory.js"
import { eventuallyEffect } from "../deadline.js"
import { newId } from "../server/harness.js"
import { event, historyContract, LIMITS } from "../server/history-contract.js"
import { hasRedisServer, startRedis, startRedisCluster, type RedisBackend } from "./redis.js"

const storeOn = (
  backend: RedisBackend,
  limits: HistoryLimits,
  metrics: Metrics.GatewayMetricsShape,
  options: { readonly timeout?: Duration.Duration; readonly gapStreams?: number } = {}
) =>
  Effect.provideService(
    RedisHistory.makeRedis({
      ...limits,
      endpoint: backend.endpoint,
      timeout: options.timeout ?? Duration.seconds(5),
      reconnectMax: Duration.millis(200),
      gapStreams: options.gapStreams ?? 10_000
    }),
    Metrics.GatewayMetrics,
    metrics
  )

const channelStream = (guild = newId()): StreamName => `channel:${guild}:${newId()}`

/** Messages on a sharded channel, as the bus subscriber receives them. */
const subscribeTo = (backend: RedisBackend, channel: string) =>
  Effect.gen(function* () {
    const client = yield* RedisClient.make(backend.endpoint, {
      connectionName: "test-subscriber",
      lazyConnect: true,
      offlineQueue: false,
      maxRetriesPerRequest: 1,
      shardedSubscriber: true
    })
    yield* Effect.promise(() => RedisClient.connect(client))
    const received: Array<Buffer> = []
    client.on("smessageBuffer", (_channel: Buffer, message: Buffer) => received.push(message))
    yield* Effect.promise(() => client.ssubscribe(channel))
    return received
  })

/** The position the script wrote between prefix and suffix. */
const positionIn = (message: Buffer, prefix: Buffer, suffix: Buffer): Position => {
  expect(message.subarray(0, prefix.length).equals(prefix)).toBe(true)
  expect(message.subarray(message.length - suffix.length).equals(suffix)).toBe(true)
  const text = message.subarray(prefix.length, message.length - suffix.length).toString()
  const [epoch, offset] = text.split(":")
  return { epoch: epoch!, offset: Number(offset) }
}

/** Binary on purpose: the message is bytes (a signature, a length prefix), not text. */
const PREFIX = Buffer.from([0x01, 0x00, 0xff, 0x7b])
const SUFFIX = Buffer.from([0x7d, 0x00, 0xfe])

describe.skipIf(!hasRedisServer)("History in Redis", () => {
  historyContract(
    (limits, metrics) => Effect.flatMap(startRedis, (redis) => storeOn(redis, limits, metrics)),
    (scope) => (scope === "channel" ? channelStream() : `${scope}:${newId()}`)
  )

  it.scoped("keys carry the stream's hash tag and expire: an idle stream leaves nothing behind", () =>
    Effect.gen(function* () {
      const redis = yield* startRedis
      const history = yield* storeOn(redis, LIMITS, Metrics.make())
      const guild = newId()
      const stream = channelStream(guild)
      yield* history.append({ stream, event: event("a") })
      const client = yield* redis.client()
      const keys = (yield* Effect.promise(() => client.keys("*"))).sort()
      const prefix = `filament:{g:${guild}}:history:`
      expect(keys).toEqual([`${prefix}${stream}`, `${prefix}${stream}:meta`, `${prefix}stamp`])
      const ttl = (key: string) => Effect.promise(() => client.pttl(key))
      expect(yield* ttl(`${prefix}${stream}`)).toBeGreaterThan(9_000)
      expect(yield* ttl(`${prefix}${stream}`)).toBeLessThanOrEqual(10_000)
      expect(yield* ttl(`${prefix}${stream}:meta`)).toBeGreaterThan(59_000)
      expect(yield* ttl(`${prefix}stamp`)).toBeGreaterThan(59_000)
      expect(RedisHistory.slotTag(`user:${guild}`)).toBe(`{u:${guild}}`)
    })
  )

  it.scoped("FLUSHALL: a new epoch, offsets from 1 again, the old position answers epoch_changed", () =>
    Effect.gen(function* () {
      const redis = yield* startRedis
      const history = yield* storeOn(redis, LIMITS, Metrics.make())
      const stream = channelStream()
      yield* history.append({ stream, event: event("a") })
      const before = yield* history.append({ stream, event: event("b") })
      const client = yield* redis.client()
      yield* Effect.promise(() => client.flushall())
      const after = yield* history.append({ stream, event: event("c") })
      expect(after.offset).toBe(1)
      expect(after.epoch).not.toBe(before.epoch)
      expect(yield* history.readAfter(stream, before, 10)).toEqual({
        _tag: "NotRecovered",
        reason: "epoch_changed",
        position: after
      })
    })
  )

  it.scopedLive("down: history_unavailable; restarted empty: a new epoch, epoch_changed", () =>
    Effect.gen(function* () {
      const redis = yield* startRedis
      const history = yield* storeOn(redis, LIMITS, Metrics.make())
      const stream = channelStream()
      const before = yield* history.append({ stream, event: event("a") })
      yield* redis.kill
      const failures = yield* Effect.all([
        Effect.flip(history.append({ stream, event: event("b") })),
        Effect.flip(history.readAfter(stream, before, 10)),
        Effect.flip(history.position(stream))
      ])
      expect(failures.map((failure) => [failure._tag, failure.reason])).toEqual(
        Array(3).fill(["HistoryUnavailable", "history_unavailable"])
      )
      const [failed] = yield* history.appendAll([{ stream, event: event("c") }])
      expect(Either.isLeft(failed!)).toBe(true)
      yield* redis.start
      // The client reconnects by itself (a real-time backoff); the script is loaded again on first use.
      yield* eventuallyEffect(
        "history reachable again",
        Effect.map(Effect.exit(history.position(stream)), Exit.isSuccess),
        10_000,
        20
      )
      const replay = yield* history.readAfter(stream, before, 10)
      expect(replay).toMatchObject({ _tag: "NotRecovered", reason: "epoch_changed", position: { offset: 0 } })
      expect(replay.position.epoch).not.toBe(before.epoch)
    })
  )

  it.scopedLive(
    "a failed append: the stream is history_unavailable here until this node invalidated it, then epoch_changed on every node",
    () =>
      Effect.gen(function* () {
        const redis = yield* startRedis
        const timeout = Duration.millis(300)
        const [nodeA, nodeB] = yield* Effect.all([
          storeOn(redis, LIMITS, Metrics.make(), { timeout }),
          storeOn(redis, LIMITS, Metrics.make())
        ])
        const stream = channelStream()
        const quiet = channelStream()
        const before = yield* nodeA.append({ stream, event: event("a") })
        expect(yield* nodeB.readAfter(stream, before, 10)).toMatchObject({ _tag: "Entries", entries: [] })
        const admin = yield* redis.client()
        // Redis stops answering for a while: nodeA's append times out (the event went out live only).
        yield* Effect.promise(() => admin.call("CLIENT", "PAUSE", "1500", "ALL"))
        const failed = yield* Effect.flip(nodeA.append({ stream, event: event("b") }))
        expect(failed.reason).toBe("history_unavailable")
        // Still remembered (its invalidation cannot run yet): never an answer across the gap.
        expect((yield* Effect.flip(nodeA.readAfter(stream, before, 10))).reason).toBe("history_unavailable")
        // Redis answers again: nodeA's next command of any stream invalidates the stream first.
        yield* eventuallyEffect(
          "nodeA's history reachable again",
          Effect.map(Effect.exit(nodeA.position(quiet)), Exit.isSuccess),
          10_000,
          20
        )
        const mine = yield* nodeA.readAfter(stream, before, 10)
        expect(mine).toMatchObject({ _tag: "NotRecovered", reason: "epoch_changed", position: { offset: 0 } })
        expect(mine.position.epoch).not.toBe(before.epoch)
        expect(yield* nodeB.readAfter(stream, before, 10)).toEqual(mine)
        // Forgotten once invalidated: the new epoch carries on.
        const next = yield* nodeA.append({ stream, event: event("c") })
        expect(next).toEqual({ epoch: mine.position.epoch, offset: 1 })
        expect(yield* nodeB.readAfter(stream, mine.position, 10)).toMatchObject({
          _tag: "Entries",
          entries: [{ offset: 1, d: event("c").d }]
        })
      })
  )

  it.scopedLive(
    "more failed streams than GATEWAY_HISTORY_GAP_STREAMS: those remembered are invalidated, the others only logged",
    () =>
      Effect.gen(function* () {
        const redis = yield* startRedis
        const history = yield* storeOn(redis, LIMITS, Metrics.make(), {
          timeout: Duration.millis(300),
          gapStreams: 1
        })
        const [first, second, other] = [channelStream(), channelStream(), channelStream()]
        const positions = yield* Effect.forEach([first, second, other], (stream) =>
          history.append({ stream, event: event("a") })
        )
        const admin = yield* redis.client()
        yield* Effect.promise(() => admin.call("CLIENT", "PAUSE", "1500", "ALL"))
        yield* Effect.flip(history.append({ stream: first, event: event("b") }))
        yield* Effect.flip(history.append({ stream: second, event: event("b") }))
        yield* eventuallyEffect(
          "Redis answers again",
          Effect.map(Effect.exit(Effect.promise(() => admin.ping())), Exit.isSuccess),
          10_000,
          20
        )
        // The next read invalidates what is remembered first (the overflow is logged then).
        expect(yield* history.readAfter(other, positions[2]!, 10)).toMatchObject({
          _tag: "Entries",
          entries: []
        })
        expect(yield* history.readAfter(first, positions[0]!, 10)).toMatchObject({ reason: "epoch_changed" })
        // Beyond the bound: not remembered, so not invalidated (the documented limit of the bound).
        expect(yield* history.readAfter(second, positions[1]!, 10)).toMatchObject({
          _tag: "Entries",
          position: { epoch: positions[1]!.epoch }
        })
      })
  )

  it.scoped("a bus channel outside the stream's slot is refused before anything is appended", () =>
    Effect.gen(function* () {
      const redis = yield* startRedis
      const history = yield* storeOn(redis, LIMITS, Metrics.make())
      const stream = channelStream()
      const publish = { channel: `filament:{g:${newId()}}:bus`, parts: () => [PREFIX, SUFFIX] as const }
      const exit = yield* Effect.exit(history.append({ stream, event: event("a"), publish }))
      expect(Exit.isFailure(exit) && Cause.isDie(exit.cause)).toBe(true)
      expect((yield* history.position(stream)).offset).toBe(0)
    })
  )

  it.scopedLive(
    "the bus message is published with the append: two nodes racing, subscribers see offset order",
    () =>
      Effect.gen(function* () {
        const redis = yield* startRedis
        const [nodeA, nodeB] = yield* Effect.all([
          storeOn(redis, { ...LIMITS, maxEvents: 1000 }, Metrics.make()),
          storeOn(redis, { ...LIMITS, maxEvents: 1000 }, Metrics.make())
        ])
        const guild = newId()
        const stream = channelStream(guild)
        const channel = `filament:${RedisHistory.slotTag(stream)}:bus`
        const [first, second] = yield* Effect.all([subscribeTo(redis, channel), subscribeTo(redis, channel)])
        const publish = { channel, parts: () => [PREFIX, SUFFIX] as const }
        const appended = yield* Effect.all(
          Array.from({ length: 200 }, (_, i) =>
            (i % 2 === 0 ? nodeA : nodeB).append({ stream, event: event(`e${i}`), publish })
          ),
          { concurrency: "unbounded" }
        )
        expect(appended.map((position) => position.offset).sort((a, b) => a - b)).toEqual(
          Array.from({ length: 200 }, (_, i) => i + 1)
        )
        yield* eventuallyEffect(
          "every message on both subscribers",
          Effect.sync(() => first.length === 200 && second.length === 200)
        )
        for (const received of [first, second]) {
          const positions = received.map((message) => positionIn(message, PREFIX, SUFFIX))
          expect(positions).toEqual(appended.map((position) => position).sort((a, b) => a.offset - b.offset))
        }
        // Without `publish` nothing is sent.
        yield* nodeA.append({ stream, event: event("quiet") })
        yield* nodeA.append({ stream, event: event("loud"), publish })
        yield* eventuallyEffect(
          "the next published message",
          Effect.sync(() => first.length === 201)
        )
        expect(positionIn(first[200]!, PREFIX, SUFFIX).offset).toBe(202)
      })
  )
})

describe.skipIf(!hasRedisServer)("History on a three-master Redis Cluster", () => {
  it.scopedLive(
    "streams on every shard: appends, reads and the atomic publish",
    () =>
      Effect.gen(function* () {
        const cluster = yield* startRedisCluster
        const history = yield* storeOn(cluster, LIMITS, Metrics.make())
        // One guild per shard (a guild's streams share its slot).
        const guilds = new Map<number, string>()
        const probe = yield* cluster.client()
        expect(probe).toBeInstanceOf(Cluster)
        while (guilds.size < 3) {
          const guild = newId()
          const slot = (yield* Effect.promise(
            () => probe.call("CLUSTER", "KEYSLOT", `{g:${guild}}`) as Promise<number>
          )) as number
          const shard = slot <= 5460 ? 0 : slot <= 10922 ? 1 : 2
          if (!guilds.has(shard)) guilds.set(shard, guild)
        }
        for (const guild of guilds.values()) {
          const channelOf = channelStream(guild)
          const guildOf: StreamName = `guild:${guild}`
          const channel = `filament:${RedisHistory.slotTag(guildOf)}:bus`
          const received = yield* subscribeTo(cluster, channel)
          const publish = { channel, parts: () => [PREFIX, SUFFIX] as const }
          for (const [stream, text] of [
            [channelOf, "c1"],
            [guildOf, "g1"],
            [channelOf, "c2"]
          ] as const)
            yield* history.append({ stream, event: event(text), publish })
          yield* eventuallyEffect(
            "three messages",
            Effect.sync(() => received.length === 3)
          )
          expect(received.map((message) => positionIn(message, PREFIX, SUFFIX).offset)).toEqual([1, 1, 2])
          const { epoch } = yield* history.position(channelOf)
          const replay = yield* history.readAfter(channelOf, { epoch, offset: 0 }, 10)
          expect(replay._tag === "Entries" && replay.entries.map((entry) => entry.d)).toEqual(
            ["c1", "c2"].map((text) => event(text).d)
          )
        }
      }),
    60_000
  )
})
