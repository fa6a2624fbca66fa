/**
 * The `History` contract, run against each store (in memory: test/server/History.test.ts; in Redis:
 * test/cluster/history.test.ts) under TestClock: offsets, exclusive reads, every verdict, both trims,
 * the gauges, the publish stamps of a guild's channel and guild streams.
 */
import { expect, it } from "@effect/vitest"
import { Duration, Effect, Either, TestClock } from "effect"
import type { Scope } from "effect"
import * as Metrics from "../../src/server/Metrics.js"
import type {
  HistoryLimits,
  HistoryShape,
  HistoryUnavailable,
  StreamName
} from "../../src/server/recovery/History.js"
import { newId, seriesValue } from "./harness.js"

export const LIMITS: HistoryLimits = {
  maxEvents: 5,
  ttl: Duration.seconds(10),
  metaTtl: Duration.seconds(60)
}

export type MakeStore = (
  limits: HistoryLimits,
  metrics: Metrics.GatewayMetricsShape
) => Effect.Effect<HistoryShape, HistoryUnavailable, Scope.Scope>

export const event = (text: string) => ({ t: "message_create", d: JSON.stringify({ content: text }) })

export const gauge = (metrics: Metrics.GatewayMetricsShape, family: string, scope: string) =>
  seriesValue(metrics.render(), family, { scope })

/** Registers the contract's tests; `fresh` names a stream nobody used (a new one per call). */
export const historyContract = (
  make: MakeStore,
  fresh: (scope: "channel" | "guild" | "user") => StreamName
) => {
  const store = (limits: HistoryLimits = LIMITS) =>
    Effect.gen(function* () {
      // The Clock starts at a realistic time, as a gateway's does.
      yield* TestClock.setTime(1_764_000_000_000)
      const metrics = Metrics.make()
      return { history: yield* make(limits, metrics), metrics }
    })

  it.scoped("offsets count from 1 without gaps; a read starts after the position given", () =>
    Effect.gen(function* () {
      const { history } = yield* store()
      const stream = fresh("channel")
      const empty = yield* history.position(stream)
      expect(empty.offset).toBe(0)
      const positions = []
      for (const text of ["a", "b", "c"]) {
        positions.push(yield* history.append({ stream, event: event(text) }))
        yield* TestClock.adjust(Duration.millis(5))
      }
      expect(positions).toEqual([1, 2, 3].map((offset) => ({ epoch: empty.epoch, offset })))
      expect(yield* history.position(stream)).toEqual({ epoch: empty.epoch, offset: 3 })
      const replay = yield* history.readAfter(stream, { epoch: empty.epoch, offset: 1 }, 10)
      if (replay._tag !== "Entries") return expect.unreachable(replay.reason)
      expect(replay.position).toEqual({ epoch: empty.epoch, offset: 3 })
      expect(replay.entries.map(({ d, offset, t }) => ({ t, d, offset }))).toEqual([
        { ...event("b"), offset: 2 },
        { ...event("c"), offset: 3 }
      ])
      const [b, c] = replay.entries
      expect(c!.at - b!.at).toBe(5)
      expect(c!.stamp).toBeGreaterThan(b!.stamp)
      const upToDate = yield* history.readAfter(stream, { epoch: empty.epoch, offset: 3 }, 10)
      expect(upToDate).toEqual({ _tag: "Entries", entries: [], position: { epoch: empty.epoch, offset: 3 } })
      // Streams count apart.
      const other = fresh("user")
      expect((yield* history.append({ stream: other, event: event("x") })).offset).toBe(1)
    })
  )

  it.scoped("verdicts: another epoch, an offset beyond the head, more than max missed", () =>
    Effect.gen(function* () {
      const { history } = yield* store()
      const stream = fresh("guild")
      for (const text of ["a", "b", "c", "d"]) yield* history.append({ stream, event: event(text) })
      const { epoch } = yield* history.position(stream)
      const verdict = (offset: number, max: number, at = epoch) =>
        Effect.map(history.readAfter(stream, { epoch: at, offset }, max), (replay) =>
          replay._tag === "NotRecovered" ? replay.reason : `${replay.entries.length} entries`
        )
      expect(yield* verdict(2, 10, "another-epoch")).toBe("epoch_changed")
      expect(yield* verdict(2, 10, "")).toBe("epoch_changed")
      expect(yield* verdict(5, 10)).toBe("position_ahead")
      expect(yield* verdict(0, 3)).toBe("too_many_events")
      expect(yield* verdict(1, 3)).toBe("3 entries")
      const refused = yield* history.readAfter(stream, { epoch, offset: 9 }, 10)
      expect(refused).toEqual({
        _tag: "NotRecovered",
        reason: "position_ahead",
        position: { epoch, offset: 4 }
      })
    })
  )

  it.scoped("count trim: beyond maxEvents the oldest go, a position before them is trimmed", () =>
    Effect.gen(function* () {
      const { history } = yield* store()
      const stream = fresh("channel")
      for (let i = 1; i <= 7; i++) yield* history.append({ stream, event: event(`e${i}`) })
      const { epoch } = yield* history.position(stream)
      // Entries 3..7 remain: after 2 is exact, after 1 is not.
      const exact = yield* history.readAfter(stream, { epoch, offset: 2 }, 10)
      if (exact._tag !== "Entries") return expect.unreachable(exact.reason)
      expect(exact.entries.map((entry) => entry.offset)).toEqual([3, 4, 5, 6, 7])
      const trimmed = yield* history.readAfter(stream, { epoch, offset: 1 }, 10)
      expect(trimmed).toMatchObject({ _tag: "NotRecovered", reason: "position_trimmed" })
    })
  )

  it.scoped("age window: an entry older than the TTL is trimmed, a quiet stream keeps its position", () =>
    Effect.gen(function* () {
      const { history } = yield* store()
      const stream = fresh("user")
      yield* history.append({ stream, event: event("old") })
      yield* TestClock.adjust(Duration.seconds(6))
      yield* history.append({ stream, event: event("new") })
      const { epoch } = yield* history.position(stream)
      yield* TestClock.adjust(Duration.seconds(5))
      // "old" is 11 s old now, "new" 5 s.
      expect(yield* history.readAfter(stream, { epoch, offset: 0 }, 10)).toMatchObject({
        reason: "position_trimmed"
      })
      const recent = yield* history.readAfter(stream, { epoch, offset: 1 }, 10)
      expect(recent._tag === "Entries" && recent.entries.map((entry) => entry.d)).toEqual([event("new").d])
      yield* TestClock.adjust(Duration.seconds(30))
      expect(yield* history.readAfter(stream, { epoch, offset: 1 }, 10)).toMatchObject({
        reason: "position_trimmed"
      })
      // Nothing missed after the head: exact, the epoch unchanged although every event aged out.
      expect(yield* history.readAfter(stream, { epoch, offset: 2 }, 10)).toEqual({
        _tag: "Entries",
        entries: [],
        position: { epoch, offset: 2 }
      })
    })
  )

  it.scoped("appendAll appends to each stream, each with its own offset", () =>
    Effect.gen(function* () {
      const { history } = yield* store()
      const [u1, u2] = [fresh("user"), fresh("user")]
      yield* history.append({ stream: u2, event: event("before") })
      const results = yield* history.appendAll(
        [u1, u2].map((stream) => ({ stream, event: event("to both") }))
      )
      expect(results.map((result) => Either.map(result, (position) => position.offset))).toEqual([
        Either.right(1),
        Either.right(2)
      ])
    })
  )

  it.scoped("the history gauges count appended entries and their encoded bytes by scope", () =>
    Effect.gen(function* () {
      const { history, metrics } = yield* store()
      expect(gauge(metrics, "filament_gateway_history_entries", "guild")).toBe(0)
      const stream = fresh("guild")
      yield* history.append({ stream, event: event("x") })
      yield* history.append({ stream, event: event("yy") })
      const bytes = 2 * "message_create".length + event("x").d.length + event("yy").d.length
      expect(gauge(metrics, "filament_gateway_history_entries", "guild")).toBe(2)
      expect(gauge(metrics, "filament_gateway_history_bytes", "guild")).toBe(bytes)
      expect(gauge(metrics, "filament_gateway_history_entries", "channel")).toBe(0)
      yield* TestClock.adjust(Duration.seconds(11))
      yield* history.position(stream)
      expect(gauge(metrics, "filament_gateway_history_entries", "guild")).toBe(0)
      expect(gauge(metrics, "filament_gateway_history_bytes", "guild")).toBe(0)
    })
  )

  it.scoped("stamps order a guild's channel and guild streams by publish", () =>
    Effect.gen(function* () {
      const { history } = yield* store()
      const guild = newId()
      const channel = `channel:${guild}:${newId()}` as const
      const guildStream = `guild:${guild}` as const
      const published = ["c1", "g1", "c2", "g2", "g3", "c3"]
      for (const text of published)
        yield* history.append({ stream: text.startsWith("c") ? channel : guildStream, event: event(text) })
      const start = { offset: 0 }
      const replays = yield* Effect.all(
        [channel, guildStream].map((stream) =>
          Effect.flatMap(history.position(stream), ({ epoch }) =>
            history.readAfter(stream, { epoch, ...start }, 10)
          )
        )
      )
      const merged = replays
        .flatMap((replay) => (replay._tag === "Entries" ? replay.entries : []))
        .sort((a, b) => a.stamp - b.stamp)
      expect(merged.map((entry) => entry.d)).toEqual(published.map((text) => event(text).d))
    })
  )
}
