/**
 * The event history that missed-event recovery replays from (issue 14): per stream (`channel:G:C`,
 * `guild:G`, `user:U`), the recent events with gapless offsets from 1 under an epoch that names one
 * history of the stream. This folder owns the history: the `History` contract and the in-memory store
 * (one node) here, the Redis store (a cluster) and the choice between them by the configuration in
 * `RedisHistory.ts`. What goes into a stream and how a reconnecting client is answered belong to the
 * gateway core.
 *
 * The in-memory store is gone with the process, so every instance has an epoch of its own.
 * Everything is bounded by time and count: a stream holds at most `GATEWAY_HISTORY_MAX_EVENTS`
 * entries, none older than `GATEWAY_HISTORY_TTL_SECS` (one queue of all entries in append order,
 * popped from its old end), and a stream neither appended to nor read for
 * `GATEWAY_HISTORY_META_TTL_SECS` is forgotten (the streams kept in last-touched order, forgotten
 * from the old end). Both sweeps run at the start of every call, so each costs O(1) amortized per
 * entry or stream and nothing needs a timer; memory is the entries of the last TTL plus one small
 * record per stream used within the meta TTL. A forgotten stream that is used again starts a new
 * epoch: its old positions answer `epoch_changed`, never a wrong replay.
 */
import { randomBytes } from "node:crypto"
import { Context, Data, Duration, Effect, Either, Layer } from "effect"
import { GatewayConfig } from "../Config.js"
import { GatewayMetrics, type HistoryScope } from "../Metrics.js"

/** A stream's name; the part before the first `:` is its scope. */
export type StreamName = `channel:${string}:${string}` | `guild:${string}` | `user:${string}`

export const scopeOf = (stream: StreamName): HistoryScope =>
  stream.slice(0, stream.indexOf(":")) as HistoryScope

/** Where a stream's history stands: offsets are comparable within one epoch only. */
export interface Position {
  readonly epoch: string
  readonly offset: number
}

/** What is recorded of an event: its type and its payload as encoded once for the wire. */
export interface Recorded {
  readonly t: string
  /** The payload's JSON text, exactly as it goes into `d` of the envelope. */
  readonly d: string
}

export interface Entry extends Recorded {
  readonly offset: number
  /** Append time, epoch millis. */
  readonly at: number
  /**
   * Publish order across the streams of one guild (its channels' and its own) or of one user: the
   * channel and guild replays of a subscribe merge by it into the order they were published in.
   */
  readonly stamp: number
}

/**
 * A bus message the Redis store publishes in the same atomic step as the append, so every node
 * receives a stream's events in offset order: `prefix` + `<epoch>:<offset>` + `suffix` on `channel`
 * (the channel must carry the stream's hash tag, `RedisHistory.slotTag`, so that a Redis Cluster
 * can run both in one script). The in-memory store has no other node to tell and ignores it.
 */
export interface BusPublish {
  readonly channel: string
  /**
   * The bytes before and after the position. Called in the step that sends the script, once: a
   * bus numbers its messages there, so they reach Redis in the order they were numbered.
   */
  readonly parts: () => readonly [prefix: Uint8Array, suffix: Uint8Array]
}

export interface Append {
  readonly stream: StreamName
  readonly event: Recorded
  readonly publish?: BusPublish
}

/** Why the events after a position cannot be replayed exactly. */
export type Verdict = "epoch_changed" | "position_trimmed" | "position_ahead" | "too_many_events"

/** The answer to `readAfter`; `position` is the stream's position now either way. */
export type Replay =
  | { readonly _tag: "Entries"; readonly entries: ReadonlyArray<Entry>; readonly position: Position }
  | { readonly _tag: "NotRecovered"; readonly reason: Verdict; readonly position: Position }

/** The history store could not be reached or did not answer in time (Redis down). */
export class HistoryUnavailable extends Data.TaggedError("HistoryUnavailable")<{
  readonly reason: "history_unavailable"
  readonly detail: string
}> {
  override get message() {
    return `the event history in Redis is unavailable (GATEWAY_REDIS_URL): ${this.detail}`
  }
}

export interface HistoryShape {
  /** Appends one event to one stream: the position it was given. */
  readonly append: (append: Append) => Effect.Effect<Position, HistoryUnavailable>
  /**
   * `append` done at once, where the store can (in memory): the publish path appends and delivers in
   * one synchronous step, so two concurrent publishes reach this node's connections in offset order.
   */
  readonly appendNow?: (append: Append) => Position
  /**
   * Appends to several streams at once (one publish to many users), each independently: per append,
   * its position or why it failed, in the order given.
   */
  readonly appendAll: (
    appends: ReadonlyArray<Append>
  ) => Effect.Effect<ReadonlyArray<Either.Either<Position, HistoryUnavailable>>>
  /**
   * The entries after `position` in offset order (at most `max`), or why that cannot be exact:
   * checked in this order — another epoch, an offset beyond the head, an entry after it already
   * trimmed (by count or age), more than `max` missed.
   */
  readonly readAfter: (
    stream: StreamName,
    position: Position,
    max: number
  ) => Effect.Effect<Replay, HistoryUnavailable>
  /** The stream's position now (offset 0 when it has no events yet); starts its epoch if it has none. */
  readonly position: (stream: StreamName) => Effect.Effect<Position, HistoryUnavailable>
}

export class History extends Context.Tag("filament/History")<History, HistoryShape>() {}

export interface HistoryLimits {
  /** Entries kept per stream. */
  readonly maxEvents: number
  /** How long an entry is kept. */
  readonly ttl: Duration.Duration
  /** How long a stream's epoch and offset outlive its last append or read (at least `ttl`). */
  readonly metaTtl: Duration.Duration
}

export const limitsOf = (config: {
  readonly historyMaxEvents: number
  readonly historyTtl: Duration.Duration
  readonly historyMetaTtl: Duration.Duration
}): HistoryLimits => ({
  maxEvents: config.historyMaxEvents,
  ttl: config.historyTtl,
  metaTtl: config.historyMetaTtl
})

/** Bytes an entry holds: its encoded type and payload. */
export const entryBytes = (event: Recorded): number => Buffer.byteLength(event.t) + Buffer.byteLength(event.d)

/** A first-in first-out array: pushes at the end, shifts by moving a start index (compacted now and then). */
export class Fifo<A> {
  private items: Array<A> = []
  private start = 0
  get size() {
    return this.items.length - this.start
  }
  push(item: A) {
    this.items.push(item)
  }
  peek(): A | undefined {
    return this.items[this.start]
  }
  shift(): A | undefined {
    const item = this.items[this.start]
    if (item === undefined) return undefined
    this.items[this.start++] = undefined as A
    if (this.start >= 1024 && this.start * 2 >= this.items.length) {
      this.items = this.items.slice(this.start)
      this.start = 0
    }
    return item
  }
  /** The last `count` items, oldest first. */
  last(count: number): Array<A> {
    return this.items.slice(this.items.length - count)
  }
}

interface StreamState {
  readonly name: StreamName
  readonly scope: HistoryScope
  readonly epoch: string
  head: number
  readonly entries: Fifo<HeldEntry>
  touchedAt: number
}

interface HeldEntry extends Entry {
  readonly owner: StreamState
  readonly bytes: number
}

/** The in-memory store: one node's history, gone with the process (a new epoch per instance). */
export const makeMemory = (limits: HistoryLimits): Effect.Effect<HistoryShape, never, GatewayMetrics> =>
  Effect.gen(function* () {
    const metrics = yield* GatewayMetrics
    const clock = yield* Effect.clock
    const ttlMillis = Duration.toMillis(limits.ttl)
    const metaTtlMillis = Math.max(Duration.toMillis(limits.metaTtl), ttlMillis)
    // Random per instance; a stream (re)started within it gets the next generation.
    const instance = randomBytes(8).toString("hex")
    let generation = 0
    let stamps = 0
    /** In last-touched order: the oldest first. */
    const streams = new Map<StreamName, StreamState>()
    /** Every entry in append order (so in age order), until it ages out. */
    const aging = new Fifo<HeldEntry>()

    const dropOldest = (state: StreamState) => {
      const entry = state.entries.shift()!
      metrics.historyChanged(state.scope, -1, -entry.bytes)
    }

    const sweep = (now: number) => {
      for (
        let entry = aging.peek();
        entry !== undefined && entry.at <= now - ttlMillis;
        entry = aging.peek()
      ) {
        aging.shift()
        // Already gone when its stream trimmed it by count or was forgotten.
        if (entry.owner.entries.peek() === entry) dropOldest(entry.owner)
      }
      for (const state of streams.values()) {
        if (state.touchedAt > now - metaTtlMillis) break
        streams.delete(state.name)
        while (state.entries.size > 0) dropOldest(state)
      }
    }

    /** The stream's state, touched now (created with a new epoch when unknown). */
    const touch = (name: StreamName, now: number): StreamState => {
      sweep(now)
      let state = streams.get(name)
      if (state === undefined) {
        generation++
        state = {
          name,
          scope: scopeOf(name),
          epoch: `${instance}-${generation.toString(36)}`,
          head: 0,
          entries: new Fifo(),
          touchedAt: now
        }
      } else streams.delete(name)
      state.touchedAt = now
      streams.set(name, state)
      return state
    }

    const appendNow = ({ event, stream }: Append): Position => {
      const now = clock.unsafeCurrentTimeMillis()
      const state = touch(stream, now)
      const entry: HeldEntry = {
        t: event.t,
        d: event.d,
        offset: ++state.head,
        at: now,
        stamp: ++stamps,
        owner: state,
        bytes: entryBytes(event)
      }
      state.entries.push(entry)
      aging.push(entry)
      metrics.historyChanged(state.scope, 1, entry.bytes)
      if (state.entries.size > limits.maxEvents) dropOldest(state)
      return { epoch: state.epoch, offset: state.head }
    }

    const history: HistoryShape = {
      append: (append) => Effect.sync(() => appendNow(append)),
      appendNow,
      appendAll: (appends) => Effect.sync(() => appends.map((append) => Either.right(appendNow(append)))),
      readAfter: (stream, from, max) =>
        Effect.sync((): Replay => {
          const state = touch(stream, clock.unsafeCurrentTimeMillis())
          const position = { epoch: state.epoch, offset: state.head }
          const refuse = (reason: Verdict): Replay => ({ _tag: "NotRecovered", reason, position })
          if (from.epoch !== state.epoch) return refuse("epoch_changed")
          if (from.offset > state.head) return refuse("position_ahead")
          const missed = state.head - from.offset
          if (missed > state.entries.size) return refuse("position_trimmed")
          if (missed > max) return refuse("too_many_events")
          const entries = state.entries
            .last(missed)
            .map(({ at, d, offset, stamp, t }): Entry => ({ t, d, offset, at, stamp }))
          return { _tag: "Entries", entries, position }
        }),
      position: (stream) =>
        Effect.sync(() => {
          const state = touch(stream, clock.unsafeCurrentTimeMillis())
          return { epoch: state.epoch, offset: state.head }
        })
    }
    return history
  })

export const layerMemory: Layer.Layer<History, never, GatewayConfig | GatewayMetrics> = Layer.effect(
  History,
  Effect.flatMap(GatewayConfig, (config) => makeMemory(limitsOf(config)))
)
