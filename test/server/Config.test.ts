/** GatewayConfig from the environment: defaults, validation naming the key, dev mode. */
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Duration, Effect, Either, LogLevel, Option, Redacted } from "effect"
import * as Config from "../../src/server/Config.js"

const load = (env: Record<string, string>) =>
  Effect.either(Effect.withConfigProvider(Config.make, ConfigProvider.fromMap(new Map(Object.entries(env)))))

const SECRET = "s".repeat(32)
const KEY = "k".repeat(32)

describe("GatewayConfig", () => {
  it.effect("defaults are the original's limits", () =>
    Effect.gen(function* () {
      const config = Either.getOrThrow(yield* load({ GATEWAY_JWT_SECRET: SECRET, GATEWAY_PUBLISH_KEY: KEY }))
      expect(config).toMatchObject({
        host: "127.0.0.1",
        port: 8080,
        listenBacklog: 4096,
        devMode: false,
        maxEventBytes: 65536,
        outboundQueue: 256,
        ingressEventsPerWindow: 60,
        socketHighWaterBytes: 1_048_576,
        maxSubscriptionsPerConnection: 1024,
        maxConnectionsPerUser: 32,
        maxPendingCommands: 64,
        otlpTracesUrl: Option.none(),
        traceSampleRatio: 1
      })
      expect(Duration.toSeconds(config.ingressWindow)).toBe(10)
      expect(Duration.toSeconds(config.commandTimeout)).toBe(30)
      expect(Duration.toSeconds(config.pingInterval)).toBe(30)
      expect(Duration.toSeconds(config.pongTimeout)).toBe(30)
      expect(Duration.toSeconds(config.workerReportTimeout)).toBe(2)
      expect(Redacted.value(config.jwtSecret)).toBe(SECRET)
    })
  )

  it.effect("every limit is read from its key", () =>
    Effect.gen(function* () {
      const config = Either.getOrThrow(
        yield* load({
          GATEWAY_JWT_SECRET: SECRET,
          GATEWAY_PUBLISH_KEY: KEY,
          GATEWAY_PORT: "0",
          GATEWAY_LISTEN_BACKLOG: "65535",
          GATEWAY_MAX_EVENT_BYTES: "1024",
          GATEWAY_OUTBOUND_QUEUE: "8",
          GATEWAY_INGRESS_EVENTS_PER_WINDOW: "5",
          GATEWAY_INGRESS_WINDOW_SECS: "2.5",
          GATEWAY_PONG_TIMEOUT_SECS: "7",
          GATEWAY_MAX_PENDING_COMMANDS: "3",
          GATEWAY_COMMAND_TIMEOUT_SECS: "0.5",
          GATEWAY_WORKER_REPORT_TIMEOUT_SECS: "0.5",
          GATEWAY_OTLP_TRACES_URL: "http://127.0.0.1:4318/v1/traces",
          GATEWAY_TRACE_SAMPLE_RATIO: "0.25"
        })
      )
      expect(config).toMatchObject({
        port: 0,
        listenBacklog: 65535,
        maxEventBytes: 1024,
        outboundQueue: 8,
        ingressEventsPerWindow: 5,
        maxPendingCommands: 3,
        otlpTracesUrl: Option.some("http://127.0.0.1:4318/v1/traces"),
        traceSampleRatio: 0.25
      })
      expect(Duration.toMillis(config.ingressWindow)).toBe(2500)
      expect(Duration.toMillis(config.commandTimeout)).toBe(500)
      expect(Duration.toSeconds(config.pongTimeout)).toBe(7)
      expect(Duration.toMillis(config.workerReportTimeout)).toBe(500)
    })
  )

  it.effect("invalid values fail with an error naming the key", () =>
    Effect.gen(function* () {
      const cases: ReadonlyArray<readonly [string, string]> = [
        ["GATEWAY_MAX_EVENT_BYTES", "65537"],
        ["GATEWAY_OUTBOUND_QUEUE", "0"],
        ["GATEWAY_INGRESS_EVENTS_PER_WINDOW", "many"],
        ["GATEWAY_INGRESS_WINDOW_SECS", "0"],
        ["GATEWAY_MAX_PENDING_COMMANDS", "0"],
        ["GATEWAY_COMMAND_TIMEOUT_SECS", "-1"],
        ["GATEWAY_WORKER_REPORT_TIMEOUT_SECS", "-1"],
        ["GATEWAY_OTLP_TRACES_URL", "collector:4318"],
        ["GATEWAY_TRACE_SAMPLE_RATIO", "0"],
        ["GATEWAY_TRACE_SAMPLE_RATIO", "1.5"],
        ["GATEWAY_PORT", "70000"],
        ["GATEWAY_LISTEN_BACKLOG", "0"],
        ["GATEWAY_LISTEN_BACKLOG", "65536"],
        ["GATEWAY_JWT_SECRET", "short"],
        ["GATEWAY_JWT_PREVIOUS_SECRET", "short"],
        ["GATEWAY_PUBLISH_PREVIOUS_KEY", "short"],
        ["GATEWAY_LOG_LEVEL", "warning"],
        ["GATEWAY_LOG_FORMAT", "JSON"]
      ]
      for (const [key, value] of cases) {
        const result = yield* load({ GATEWAY_JWT_SECRET: SECRET, GATEWAY_PUBLISH_KEY: KEY, [key]: value })
        expect(Either.isLeft(result), key).toBe(true)
        expect(
          String(Either.getLeft(result).pipe((left) => (left._tag === "Some" ? left.value : ""))),
          key
        ).toContain(key)
      }
    })
  )

  it.effect("history and recovery: defaults, read from their keys, validated strictly", () =>
    Effect.gen(function* () {
      const base = { GATEWAY_JWT_SECRET: SECRET, GATEWAY_PUBLISH_KEY: KEY }
      const defaults = Either.getOrThrow(yield* load(base))
      expect([defaults.historyMaxEvents, defaults.recoveryMaxReplay]).toEqual([1000, 1000])
      expect(Duration.toSeconds(defaults.historyTtl)).toBe(120)
      expect(Duration.toSeconds(defaults.historyMetaTtl)).toBe(86_400)
      expect(defaults.historyGapStreams).toBe(10_000)
      const chosen = Either.getOrThrow(
        yield* load({
          ...base,
          GATEWAY_HISTORY_MAX_EVENTS: "50",
          GATEWAY_HISTORY_TTL_SECS: "2.5",
          GATEWAY_HISTORY_META_TTL_SECS: "2.5",
          GATEWAY_HISTORY_GAP_STREAMS: "7",
          GATEWAY_RECOVERY_MAX_REPLAY: "20"
        })
      )
      expect(chosen.historyGapStreams).toBe(7)
      expect([chosen.historyMaxEvents, chosen.recoveryMaxReplay]).toEqual([50, 20])
      expect(Duration.toMillis(chosen.historyTtl)).toBe(2500)
      expect(Duration.toMillis(chosen.historyMetaTtl)).toBe(2500)
      const refused: ReadonlyArray<readonly [Record<string, string>, string]> = [
        [{ GATEWAY_HISTORY_MAX_EVENTS: "0" }, "GATEWAY_HISTORY_MAX_EVENTS must be a positive integer"],
        [{ GATEWAY_HISTORY_MAX_EVENTS: "10x" }, "GATEWAY_HISTORY_MAX_EVENTS must be a positive integer"],
        [{ GATEWAY_HISTORY_TTL_SECS: "0" }, "GATEWAY_HISTORY_TTL_SECS must be a positive number of seconds"],
        [{ GATEWAY_HISTORY_META_TTL_SECS: "-1" }, "GATEWAY_HISTORY_META_TTL_SECS must be a positive number"],
        [{ GATEWAY_RECOVERY_MAX_REPLAY: "1.5" }, "GATEWAY_RECOVERY_MAX_REPLAY must be a positive integer"],
        [{ GATEWAY_HISTORY_GAP_STREAMS: "0" }, "GATEWAY_HISTORY_GAP_STREAMS must be a positive integer"],
        [{ GATEWAY_HISTORY_GAP_STREAMS: "1e3" }, "GATEWAY_HISTORY_GAP_STREAMS must be a positive integer"],
        [
          { GATEWAY_HISTORY_TTL_SECS: "600", GATEWAY_HISTORY_META_TTL_SECS: "300" },
          "GATEWAY_HISTORY_META_TTL_SECS must be at least GATEWAY_HISTORY_TTL_SECS (600)"
        ]
      ]
      for (const [env, message] of refused) {
        const result = yield* load({ ...base, ...env })
        expect(
          String(Either.getLeft(result).pipe((left) => (left._tag === "Some" ? left.value : "accepted")))
        ).toContain(message)
      }
    })
  )

  it.effect("without a JWT secret: dev mode with generated secret and publish key", () =>
    Effect.gen(function* () {
      const config = Either.getOrThrow(yield* load({}))
      expect(config.devMode).toBe(true)
      expect(Redacted.value(config.jwtSecret).length).toBeGreaterThanOrEqual(32)
      expect(Redacted.value(config.publishKey).length).toBeGreaterThanOrEqual(32)
      expect(Redacted.value(config.publishKey)).not.toBe(Redacted.value(config.jwtSecret))
    })
  )

  it.effect("a JWT secret without a publish key fails naming GATEWAY_PUBLISH_KEY", () =>
    Effect.gen(function* () {
      const result = yield* load({ GATEWAY_JWT_SECRET: SECRET })
      expect(Either.isLeft(result)).toBe(true)
      expect(
        String(Either.getLeft(result).pipe((left) => (left._tag === "Some" ? left.value : "")))
      ).toContain("GATEWAY_PUBLISH_KEY")
    })
  )

  it.effect("logging: pretty at info by default; GATEWAY_LOG_LEVEL in any case, GATEWAY_LOG_FORMAT", () =>
    Effect.gen(function* () {
      const base = { GATEWAY_JWT_SECRET: SECRET, GATEWAY_PUBLISH_KEY: KEY }
      const defaults = Either.getOrThrow(yield* load(base))
      expect([defaults.logLevel, defaults.logFormat]).toEqual([LogLevel.Info, "pretty"])
      const chosen = Either.getOrThrow(
        yield* load({ ...base, GATEWAY_LOG_LEVEL: "DEBUG", GATEWAY_LOG_FORMAT: "json" })
      )
      expect([chosen.logLevel, chosen.logFormat]).toEqual([LogLevel.Debug, "json"])
      const quiet = Either.getOrThrow(
        yield* load({ ...base, GATEWAY_LOG_LEVEL: "off", GATEWAY_LOG_FORMAT: "logfmt" })
      )
      expect([quiet.logLevel, quiet.logFormat]).toEqual([LogLevel.None, "logfmt"])
    })
  )

  for (const { key, field, requires, value } of [
    {
      key: "GATEWAY_JWT_PREVIOUS_SECRET",
      field: "jwtPreviousSecret",
      requires: "GATEWAY_JWT_SECRET",
      value: "o".repeat(32)
    },
    {
      key: "GATEWAY_PUBLISH_PREVIOUS_KEY",
      field: "publishPreviousKey",
      requires: "GATEWAY_PUBLISH_KEY",
      value: "q".repeat(32)
    }
  ] as const) {
    it.effect(`${key}: none by default, read when set, refused without ${requires}`, () =>
      Effect.gen(function* () {
        const base = { GATEWAY_JWT_SECRET: SECRET, GATEWAY_PUBLISH_KEY: KEY }
        expect(Either.getOrThrow(yield* load(base))[field]._tag).toBe("None")
        const rotating = Either.getOrThrow(yield* load({ ...base, [key]: value }))
        expect(rotating[field].pipe(Option.map(Redacted.value))).toEqual(Option.some(value))
        const alone = yield* load({ [key]: value })
        expect(String(Either.getLeft(alone).pipe(Option.getOrElse(() => "")))).toContain(requires)
      })
    )
  }
})
