/** The cluster keys of GatewayConfig: defaults, validation naming the key, the refusals. */
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Duration, Effect, Either, Option, Redacted } from "effect"
import { availableParallelism } from "node:os"
import * as Config from "../../src/server/Config.js"

const load = (env: Record<string, string>) =>
  Effect.either(Effect.withConfigProvider(Config.make, ConfigProvider.fromMap(new Map(Object.entries(env)))))

const BASE = { GATEWAY_JWT_SECRET: "s".repeat(32), GATEWAY_PUBLISH_KEY: "k".repeat(32) }
const REDIS = { GATEWAY_REDIS_URL: "redis://127.0.0.1:6379", GATEWAY_BUS_SECRET: "b".repeat(32) }

const failure = (result: Either.Either<unknown, unknown>) =>
  Either.isLeft(result) ? String(result.left) : "no failure"

describe("GatewayConfig: cluster", () => {
  it.effect("defaults: one worker, in-memory bus, the documented bus limits", () =>
    Effect.gen(function* () {
      const config = Either.getOrThrow(yield* load(BASE))
      expect(config.workers).toBe(1)
      expect(Option.isNone(config.redis)).toBe(true)
      expect(config.busMaxMessageBytes).toBe(98_304)
      expect(config.busBacklog).toBe(10_000)
      expect(Duration.toSeconds(config.busMaxLag)).toBe(30)
      expect(Duration.toSeconds(config.busReconnectMax)).toBe(5)
      expect(Duration.toSeconds(config.busTimeout)).toBe(5)
      expect(Duration.toSeconds(config.nodeTtl)).toBe(15)
    })
  )

  it.effect("every cluster key is read", () =>
    Effect.gen(function* () {
      const config = Either.getOrThrow(
        yield* load({
          ...BASE,
          ...REDIS,
          GATEWAY_WORKERS: "3",
          GATEWAY_BUS_MAX_MESSAGE_BYTES: "70000",
          GATEWAY_BUS_BACKLOG: "50",
          GATEWAY_BUS_MAX_LAG_SECS: "2",
          GATEWAY_BUS_RECONNECT_MAX_SECS: "0.5",
          GATEWAY_BUS_TIMEOUT_SECS: "1",
          GATEWAY_NODE_TTL_SECS: "9"
        })
      )
      const redis = Option.getOrThrow(config.redis)
      expect(redis.cluster).toBe(false)
      expect(Redacted.value(redis.urls)).toEqual([REDIS.GATEWAY_REDIS_URL])
      expect(Redacted.value(redis.busSecret)).toBe(REDIS.GATEWAY_BUS_SECRET)
      expect(config).toMatchObject({ workers: 3, busMaxMessageBytes: 70_000, busBacklog: 50 })
      expect(Duration.toMillis(config.busMaxLag)).toBe(2000)
      expect(Duration.toMillis(config.busReconnectMax)).toBe(500)
      expect(Duration.toMillis(config.busTimeout)).toBe(1000)
      expect(Duration.toSeconds(config.nodeTtl)).toBe(9)
      expect(Either.getOrThrow(yield* load({ ...BASE, ...REDIS, GATEWAY_WORKERS: "auto" })).workers).toBe(
        availableParallelism()
      )
    })
  )

  it.effect(
    "GATEWAY_REDIS_CLUSTER: off by default; on, GATEWAY_REDIS_URL is a comma-separated seed list",
    () =>
      Effect.gen(function* () {
        const single = Option.getOrThrow(Either.getOrThrow(yield* load({ ...BASE, ...REDIS })).redis)
        expect(single.cluster).toBe(false)
        const seeds = "redis://127.0.0.1:7000, redis://:pw@127.0.0.1:7001,,redis://127.0.0.1:7002"
        const cluster = Option.getOrThrow(
          Either.getOrThrow(
            yield* load({ ...BASE, ...REDIS, GATEWAY_REDIS_CLUSTER: "true", GATEWAY_REDIS_URL: seeds })
          ).redis
        )
        expect(cluster.cluster).toBe(true)
        expect(Redacted.value(cluster.urls)).toEqual([
          "redis://127.0.0.1:7000",
          "redis://:pw@127.0.0.1:7001",
          "redis://127.0.0.1:7002"
        ])
        // The seeds may carry a password: the list stays redacted.
        expect(String(cluster.urls)).not.toContain("pw")
        expect(
          failure(yield* load({ ...BASE, ...REDIS, GATEWAY_REDIS_CLUSTER: "true", GATEWAY_REDIS_URL: " , " }))
        ).toContain("GATEWAY_REDIS_URL must hold at least one seed URL when GATEWAY_REDIS_CLUSTER=true")
        expect(failure(yield* load({ ...BASE, ...REDIS, GATEWAY_REDIS_CLUSTER: "maybe" }))).toContain(
          "GATEWAY_REDIS_CLUSTER"
        )
      })
  )

  it.effect("refusals name the key and the reason", () =>
    Effect.gen(function* () {
      expect(failure(yield* load({ ...BASE, GATEWAY_REDIS_URL: REDIS.GATEWAY_REDIS_URL }))).toContain(
        "GATEWAY_BUS_SECRET is required when GATEWAY_REDIS_URL is set"
      )
      expect(failure(yield* load({ ...BASE, ...REDIS, GATEWAY_BUS_SECRET: "short" }))).toContain(
        "GATEWAY_BUS_SECRET must be at least 32 characters"
      )
      expect(failure(yield* load({ ...BASE, GATEWAY_WORKERS: "2" }))).toContain(
        "GATEWAY_WORKERS=2 needs GATEWAY_REDIS_URL"
      )
      expect(failure(yield* load({ ...REDIS, GATEWAY_WORKERS: "2" }))).toContain(
        "GATEWAY_WORKERS=2 needs GATEWAY_JWT_SECRET"
      )
      for (const value of ["0", "-1", "two", "1.5"]) {
        expect(failure(yield* load({ ...BASE, ...REDIS, GATEWAY_WORKERS: value }))).toContain(
          'GATEWAY_WORKERS must be a positive integer or "auto"'
        )
      }
    })
  )

  it.effect(
    "GATEWAY_BUS_ACCEPT_SECRET: none by default, read with Redis, refused without it or when short",
    () =>
      Effect.gen(function* () {
        const none = Option.getOrThrow(Either.getOrThrow(yield* load({ ...BASE, ...REDIS })).redis)
        expect(Option.isNone(none.busAcceptSecret)).toBe(true)
        const rotating = Option.getOrThrow(
          Either.getOrThrow(yield* load({ ...BASE, ...REDIS, GATEWAY_BUS_ACCEPT_SECRET: "n".repeat(32) }))
            .redis
        )
        expect(rotating.busAcceptSecret.pipe(Option.map(Redacted.value))).toEqual(Option.some("n".repeat(32)))
        expect(failure(yield* load({ ...BASE, GATEWAY_BUS_ACCEPT_SECRET: "n".repeat(32) }))).toContain(
          "GATEWAY_BUS_ACCEPT_SECRET is set without GATEWAY_REDIS_URL"
        )
        expect(failure(yield* load({ ...BASE, ...REDIS, GATEWAY_BUS_ACCEPT_SECRET: "short" }))).toContain(
          "GATEWAY_BUS_ACCEPT_SECRET"
        )
      })
  )
})
