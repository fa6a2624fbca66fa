/**
 * The in-memory event history under TestClock: the `History` contract, an epoch per instance, count
 * trims kept exact in the gauges, idle streams forgotten (and a new epoch when used again).
 */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, TestClock } from "effect"
import * as Metrics from "../../src/server/Metrics.js"
import * as History from "../../src/server/recovery/History.js"
import { newId } from "./harness.js"
import { event, gauge, historyContract, LIMITS } from "./history-contract.js"

const make = (limits: History.HistoryLimits, metrics: Metrics.GatewayMetricsShape) =>
  Effect.provideService(History.makeMemory(limits), Metrics.GatewayMetrics, metrics)

describe("History in memory", () => {
  historyContract(make, (scope) =>
    scope === "channel" ? `channel:${newId()}:${newId()}` : `${scope}:${newId()}`
  )

  it.effect("every instance has an epoch of its own: a restarted node's positions are epoch_changed", () =>
    Effect.gen(function* () {
      const stream = `channel:${newId()}:${newId()}` as const
      const before = yield* make(LIMITS, Metrics.make())
      yield* before.append({ stream, event: event("a") })
      const position = yield* before.position(stream)
      const after = yield* make(LIMITS, Metrics.make())
      yield* after.append({ stream, event: event("b") })
      const replay = yield* after.readAfter(stream, position, 10)
      expect(replay).toMatchObject({ _tag: "NotRecovered", reason: "epoch_changed", position: { offset: 1 } })
      expect(replay.position.epoch).not.toBe(position.epoch)
    })
  )

  it.effect("count trims and forgotten streams leave the gauges exact", () =>
    Effect.gen(function* () {
      const metrics = Metrics.make()
      const history = yield* make(LIMITS, metrics)
      const stream = `user:${newId()}` as const
      for (let i = 0; i < 8; i++) yield* history.append({ stream, event: event("12345") })
      expect(gauge(metrics, "filament_gateway_history_entries", "user")).toBe(5)
      expect(gauge(metrics, "filament_gateway_history_bytes", "user")).toBe(
        5 * ("message_create".length + event("12345").d.length)
      )
    })
  )

  it.effect("a stream idle for the meta TTL is forgotten; used again, it starts a new epoch", () =>
    Effect.gen(function* () {
      const metrics = Metrics.make()
      const history = yield* make(
        { ...LIMITS, ttl: Duration.seconds(10), metaTtl: Duration.seconds(60) },
        metrics
      )
      const quiet = `guild:${newId()}` as const
      const busy = `guild:${newId()}` as const
      yield* history.append({ stream: quiet, event: event("a") })
      const position = yield* history.position(quiet)
      // Read at 59 s: the meta TTL counts from the last use, so the position still holds at 118 s.
      yield* TestClock.adjust(Duration.seconds(59))
      expect(yield* history.readAfter(quiet, position, 10)).toMatchObject({ _tag: "Entries", entries: [] })
      yield* TestClock.adjust(Duration.seconds(59))
      expect(yield* history.readAfter(quiet, position, 10)).toMatchObject({ _tag: "Entries", entries: [] })
      // 60 s without use: forgotten by the next call on any stream.
      yield* TestClock.adjust(Duration.seconds(60))
      yield* history.append({ stream: busy, event: event("b") })
      yield* history.append({ stream: quiet, event: event("c") })
      const replay = yield* history.readAfter(quiet, position, 10)
      expect(replay).toMatchObject({ _tag: "NotRecovered", reason: "epoch_changed", position: { offset: 1 } })
      expect(gauge(metrics, "filament_gateway_history_entries", "guild")).toBe(2)
    })
  )
})
