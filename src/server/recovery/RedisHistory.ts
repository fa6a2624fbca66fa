/**
 * The event history in Redis (with `GATEWAY_REDIS_URL`), so a client whose node died recovers on any
 * other node; and `layer`, the store the configuration chooses.
 *
 * Keys and scripts: `HistoryScripts.ts` (one hash tag per guild or user, so every script touches one
 * hash slot on a Redis Cluster).
 *
 * One script per append, atomic: the epoch is read, or created when the meta is missing — Redis
 * restarted empty, was flushed, or the stream was idle past `GATEWAY_HISTORY_META_TTL_SECS` — with
 * the old entries dropped; the offset is incremented, the entry added with `XADD MAXLEN` and the
 * stream trimmed by age (`XTRIM MINID`, the node's clock: nodes must agree within a fraction of
 * the TTL, as for presence); the entries key expires with its newest entry, the meta
 * `GATEWAY_HISTORY_META_TTL_SECS` after the stream's last append or read (so a quiet stream keeps
 * its epoch that long and idle streams leave nothing behind); and, when asked, the bus message is
 * published in the same step (`SPUBLISH`, `PUBLISH` before Redis 7) as
 * `prefix .. "<epoch>:<offset>" .. suffix`, so every node receives a stream's events in offset order.
 * The position in that message is written by Redis, outside whatever the caller signed.
 *
 * The stamp orders the events of one tag (a guild's channel and guild streams): the larger of the
 * last stamp + 1 and the append time in microseconds, so it keeps increasing even after its key was
 * lost. A read is one script too: it applies the age window, then answers from the meta and
 * `XREVRANGE … COUNT <missed>` (offsets are gapless and only the oldest entries are ever removed, so
 * the entries after a position are exactly the stream's last head − offset entries).
 *
 * A failed append (Redis down, or no answer in time) leaves a gap in the stream that its offsets do
 * not show: the event was delivered live but never numbered. So this node remembers the stream (at
 * most `gapStreams` of them) and, before its next append or read of any stream, deletes each
 * remembered stream's meta key in Redis (a single-key `DEL`: one slot), so the next append or read
 * of it, on any node, starts a new epoch and an old position answers `epoch_changed`; only then is
 * the stream forgotten. A remembered stream is answered `history_unavailable` on this node until its
 * invalidation ran. When more streams fail than the bound, the others are not remembered (counted
 * and logged as `gateway.history.gaps_overflowed` at the next invalidation) and, until then, every
 * read on this node answers `history_unavailable`.
 *
 * The history gauges of this store count what this node appended within the age window (entries
 * and encoded bytes): summed over the nodes that is the cluster's history, except that entries
 * trimmed early by `GATEWAY_HISTORY_MAX_EVENTS`, or lost with a flushed or restarted Redis, are still
 * counted until they age out. Redis itself holds the truth; reading it per scrape would cost a scan.
 */
import { randomBytes } from "node:crypto"
import { Duration, Effect, Layer, Option } from "effect"
import type { Scope } from "effect"
import { GatewayConfig, type RedisEndpoint } from "../Config.js"
import { GatewayMetrics, type HistoryScope } from "../Metrics.js"
import * as RedisClient from "../RedisClient.js"
import {
  entryBytes,
  Fifo,
  History,
  HistoryUnavailable,
  limitsOf,
  makeMemory,
  scopeOf,
  type Append,
  type HistoryLimits,
  type HistoryShape,
  type Position,
  type Replay,
  type StreamName,
  type Verdict
} from "./History.js"
import { APPEND, hashTagOf, keysOf, READ, slotTag, toEntry, type HistoryCommands } from "./HistoryScripts.js"

export { slotTag } from "./HistoryScripts.js"

export interface RedisHistoryOptions extends HistoryLimits {
  readonly endpoint: RedisEndpoint
  /** Bound on connecting at startup and on one call (then `history_unavailable`). */
  readonly timeout: Duration.Duration
  /** Cap of the reconnect backoff. */
  readonly reconnectMax: Duration.Duration
  /** Streams whose append failed that this node remembers until it has invalidated them. */
  readonly gapStreams: number
}

const NO_PARTS = [new Uint8Array(0), new Uint8Array(0)] as const

export const makeRedis = (
  options: RedisHistoryOptions
): Effect.Effect<HistoryShape, HistoryUnavailable, Scope.Scope | GatewayMetrics> =>
  Effect.gen(function* () {
    const metrics = yield* GatewayMetrics
    const clock = yield* Effect.clock
    const ttlMillis = Duration.toMillis(options.ttl)
    const metaTtlMillis = Math.max(Duration.toMillis(options.metaTtl), ttlMillis)
    const unavailable = (error: unknown) =>
      new HistoryUnavailable({
        reason: "history_unavailable",
        detail: error instanceof Error ? error.message : String(error)
      })
    const within = <A>(run: () => Promise<A>) =>
      Effect.tryPromise({ try: run, catch: unavailable }).pipe(
        Effect.timeoutFail({ duration: options.timeout, onTimeout: () => unavailable("timed out") })
      )

    // Commands fail at once while disconnected: a caller learns `history_unavailable` rather than waiting.
    const redis = yield* RedisClient.make(options.endpoint, {
      connectionName: `filament-history-${randomBytes(8).toString("hex")}`,
      lazyConnect: true,
      offlineQueue: false,
      maxRetriesPerRequest: 0,
      connectTimeoutMillis: Duration.toMillis(options.timeout),
      reconnectDelay: (attempt) => RedisClient.backoffMillis(attempt, Duration.toMillis(options.reconnectMax))
    })
    yield* within(() => RedisClient.connect(redis))
    const publishCommand =
      RedisClient.redisMajorVersion(yield* within(() => redis.info("server"))) >= 7 ? "SPUBLISH" : "PUBLISH"
    // EVALSHA, and EVAL when the server does not know the script (a restarted Redis).
    redis.defineCommand("historyAppend", { numberOfKeys: 3, lua: APPEND })
    redis.defineCommand("historyRead", { numberOfKeys: 2, lua: READ })
    const commands = redis as unknown as HistoryCommands

    /** What this node appended within the age window, for the gauges (see the module comment). */
    const appended = new Fifo<{ readonly scope: HistoryScope; readonly bytes: number; readonly at: number }>()
    const account = (now: number) => {
      for (
        let entry = appended.peek();
        entry !== undefined && entry.at <= now - ttlMillis;
        entry = appended.peek()
      ) {
        appended.shift()
        metrics.historyChanged(entry.scope, -1, -entry.bytes)
      }
    }

    /** Streams whose append failed here, not yet invalidated in Redis. */
    const gapped = new Set<StreamName>()
    /** Streams whose append failed when `gapped` was full, since the last invalidation. */
    let overflowed = 0
    const invalidating = yield* Effect.makeSemaphore(1)
    const gapUnavailable = (stream: StreamName) =>
      unavailable(`an append to ${stream} failed; its history is not invalidated yet`)
    const rememberGap = (stream: StreamName) =>
      Effect.sync(() => {
        if (gapped.has(stream)) return
        if (gapped.size < options.gapStreams) gapped.add(stream)
        else overflowed++
      })
    /** Deletes the meta of every remembered stream (a new epoch at its next use), then forgets it. */
    const invalidateGaps = Effect.suspend(() =>
      gapped.size === 0 && overflowed === 0
        ? Effect.void
        : invalidating.withPermits(1)(
            Effect.gen(function* () {
              const dropped = overflowed
              yield* Effect.forEach(
                [...gapped],
                (stream) =>
                  within(() => redis.del(keysOf(stream).meta)).pipe(
                    Effect.tap(() => Effect.sync(() => gapped.delete(stream))),
                    Effect.ignore
                  ),
                { concurrency: "unbounded", discard: true }
              )
              if (dropped > 0 && gapped.size === 0) {
                overflowed -= dropped
                yield* Effect.logWarning("gateway.history.gaps_overflowed").pipe(
                  Effect.annotateLogs({ not_invalidated: dropped, bound: options.gapStreams })
                )
              }
            })
          )
    )
    /** Whether this node must answer `history_unavailable` for the stream (see the module comment). */
    const gapOpen = (stream: StreamName, reading: boolean) =>
      gapped.has(stream) || (reading && overflowed > 0)

    const append = ({ event, publish, stream }: Append) =>
      Effect.suspend(() => {
        // A script's writes are not undone when a later command fails: a channel in another slot
        // (refused by a Redis Cluster) would leave the event appended but unpublished.
        if (publish !== undefined && hashTagOf(publish.channel) !== slotTag(stream))
          return Effect.dieMessage(`bus channel ${publish.channel} is not in the slot of ${slotTag(stream)}`)
        const now = clock.unsafeCurrentTimeMillis()
        const keys = keysOf(stream)
        const run = within(() => {
          const [prefix, suffix] = publish === undefined ? NO_PARTS : publish.parts()
          return commands.historyAppend(
            keys.meta,
            keys.entries,
            keys.stamp,
            randomBytes(8).toString("hex"),
            now,
            ttlMillis,
            options.maxEvents,
            metaTtlMillis,
            event.t,
            event.d,
            publish === undefined ? "" : publishCommand,
            publish?.channel ?? "",
            prefix,
            suffix
          )
        })
        return invalidateGaps.pipe(
          Effect.zipRight(
            Effect.suspend(() => (gapOpen(stream, false) ? Effect.fail(gapUnavailable(stream)) : run))
          ),
          Effect.tapError(() => rememberGap(stream)),
          Effect.map(([epoch, offset]): Position => {
            account(now)
            const scope = scopeOf(stream)
            const bytes = entryBytes(event)
            appended.push({ scope, bytes, at: now })
            metrics.historyChanged(scope, 1, bytes)
            return { epoch, offset }
          })
        )
      })

    const read = (stream: StreamName, from: Position | undefined, max: number) =>
      Effect.suspend(() => {
        const now = clock.unsafeCurrentTimeMillis()
        account(now)
        const keys = keysOf(stream)
        const run = within(() =>
          commands.historyRead(
            keys.meta,
            keys.entries,
            randomBytes(8).toString("hex"),
            now,
            ttlMillis,
            metaTtlMillis,
            from === undefined ? "0" : "1",
            from?.epoch ?? "",
            from?.offset ?? 0,
            max
          )
        )
        return Effect.zipRight(
          invalidateGaps,
          Effect.suspend(() => (gapOpen(stream, true) ? Effect.fail(gapUnavailable(stream)) : run))
        )
      })

    const history: HistoryShape = {
      append,
      appendAll: (appends) =>
        Effect.forEach(appends, (each) => Effect.either(append(each)), { concurrency: "unbounded" }),
      readAfter: (stream, from, max) =>
        Effect.map(read(stream, from, max), ([epoch, head, verdict, entries]): Replay => {
          const position = { epoch, offset: head }
          if (verdict !== "") return { _tag: "NotRecovered", reason: verdict as Verdict, position }
          return { _tag: "Entries", entries: entries!.map(toEntry).reverse(), position }
        }),
      position: (stream) => Effect.map(read(stream, undefined, 0), ([epoch, offset]) => ({ epoch, offset }))
    }
    return history
  })

/** Whatever the configuration says: in Redis when `GATEWAY_REDIS_URL` is set, else in memory. */
export const layer: Layer.Layer<History, HistoryUnavailable, GatewayConfig | GatewayMetrics> = Layer.scoped(
  History,
  Effect.flatMap(
    GatewayConfig,
    (config): Effect.Effect<HistoryShape, HistoryUnavailable, Scope.Scope | GatewayMetrics> =>
      Option.match(config.redis, {
        onNone: () => makeMemory(limitsOf(config)),
        onSome: (endpoint) =>
          makeRedis({
            ...limitsOf(config),
            endpoint,
            timeout: config.busTimeout,
            reconnectMax: config.busReconnectMax,
            gapStreams: config.historyGapStreams
          })
      })
  )
)
