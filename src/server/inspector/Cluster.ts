/**
 * The cluster view: with `GATEWAY_REDIS_URL` set, every node writes one record to Redis every
 * `WRITE_EVERY` (one `SET` with an expiry, one `SADD` and one `PTTL`, pipelined: cheap whether or not
 * anyone looks): its overview totals, its cumulative deliveries per event type (read from the metric
 * registry, bounded by the manifest's event types) and, while its overview sampler runs, its publishes
 * per event type counted since the sampler started. The node serving an overview reads its peers'
 * (`SMEMBERS` + `MGET`) and, while somebody watches it, keeps a bounded history of cluster-wide rates:
 * every `WRITE_EVERY` it sums each node's rate over that node's last two records (its own included).
 * A node watched here marks the cluster watched (a key with an expiry) so that its peers run their
 * samplers and count publishes too. All keys share one hash slot, so this works on a Redis Cluster.
 * A node that stops writing drops out after `STALE_AFTER`; without Redis there are no peers.
 */
import { Duration, Effect, Option, Schedule } from "effect"
import { GatewayConfig } from "../Config.js"
import * as RedisClient from "../RedisClient.js"
import type { Overview, Totals } from "./Overview.js"

const NODES_KEY = "{filament:inspector}:nodes"
const WATCHED_KEY = "{filament:inspector}:watched"
const nodeKey = (node: string) => `{filament:inspector}:node:${node}`
const WRITE_EVERY = Duration.seconds(5)
const STALE_AFTER = Duration.seconds(15)
/** The cluster-wide rates' sampling period (s): one point per write period. */
export const PERIOD_SECONDS = Duration.toSeconds(WRITE_EVERY)
/** Cluster-wide rate points kept: five minutes of one point per `WRITE_EVERY`. */
const CLUSTER_HISTORY = 60

/** What one node writes every `WRITE_EVERY`. */
export interface NodeRecord {
  readonly node: string
  /** The node's `Clock` time when it wrote this record (ms). */
  readonly at: number
  readonly totals: Totals
  /** Deliveries per event type since the node's process started. */
  readonly delivered: Readonly<Record<string, number>>
  /** Publishes per event type since `since` (the node's sampler start); absent while it is idle. */
  readonly published?: { readonly since: number; readonly counts: Readonly<Record<string, number>> }
}

export type PeerTotals = Pick<NodeRecord, "node" | "at" | "totals">

/** Cluster-wide rates (per second) over the `WRITE_EVERY` before `at` (this node's `Clock`, ms). */
export interface ClusterSample {
  readonly at: number
  /** Nodes whose rates this point sums. */
  readonly nodes: number
  readonly deliveries: Readonly<Record<string, number>>
  readonly publishes: Readonly<Record<string, number>>
}

export interface NodeRates {
  readonly deliveries: Readonly<Record<string, number>>
  /** Absent when the node did not count publishes over the whole interval. */
  readonly publishes?: Readonly<Record<string, number>>
}

/**
 * Per-second rates between two records of one node, or `undefined` when there is no honest rate: no
 * time passed, or a counter went back (the node's process restarted, or it restarted counting).
 */
export const ratesBetween = (previous: NodeRecord, current: NodeRecord): NodeRates | undefined => {
  const seconds = (current.at - previous.at) / 1000
  if (!(seconds > 0)) return undefined
  const perSecond = (before: Readonly<Record<string, number>>, after: Readonly<Record<string, number>>) => {
    const rates: Record<string, number> = {}
    for (const [type, count] of Object.entries(before)) if ((after[type] ?? 0) < count) return undefined
    for (const [type, count] of Object.entries(after)) {
      const delta = count - (before[type] ?? 0)
      if (delta > 0) rates[type] = delta / seconds
    }
    return rates
  }
  const deliveries = perSecond(previous.delivered, current.delivered)
  if (deliveries === undefined) return undefined
  const counted =
    previous.published !== undefined &&
    current.published !== undefined &&
    previous.published.since === current.published.since
      ? perSecond(previous.published.counts, current.published.counts)
      : undefined
  return counted === undefined ? { deliveries } : { deliveries, publishes: counted }
}

export interface Cluster {
  /** Whether Redis joins this node to others (otherwise there is no cluster view). */
  readonly enabled: boolean
  /**
   * The other nodes' latest totals (empty without Redis, or when Redis does not answer in time);
   * while somebody watches, also the point of the cluster-wide rates' history.
   */
  readonly peers: Effect.Effect<ReadonlyArray<PeerTotals>>
  /** The cluster-wide rates, oldest first (empty without Redis). */
  readonly samples: () => ReadonlyArray<ClusterSample>
}

interface Seen {
  readonly record: NodeRecord
  /** This node's `Clock` time when it first read `record` (ms). */
  readonly seenAt: number
  readonly rates: NodeRates | undefined
}

const addInto = (into: Record<string, number>, rates: Readonly<Record<string, number>>) => {
  for (const [type, rate] of Object.entries(rates)) into[type] = (into[type] ?? 0) + rate
}

export const make = (overview: Overview) =>
  Effect.gen(function* () {
    const config = yield* GatewayConfig
    const clock = yield* Effect.clock
    if (Option.isNone(config.redis))
      return { enabled: false, peers: Effect.succeed([]), samples: () => [] } satisfies Cluster
    const redis = yield* RedisClient.make(config.redis.value, {
      connectionName: `filament-inspector-${overview.node}`,
      lazyConnect: false,
      // A write or read that cannot be sent now is worthless later: fail at once, try next time.
      offlineQueue: false,
      maxRetriesPerRequest: 1
    })
    const call = <A>(label: string, run: () => Promise<A>, fallback: A) =>
      Effect.tryPromise(run).pipe(
        Effect.timeout(config.busTimeout),
        Effect.catchAll((error) =>
          Effect.as(Effect.logDebug(`gateway.admin.cluster_${label}_failed`, error), fallback)
        )
      )

    const record = Effect.map(overview.totals, (totals): NodeRecord => {
      const counted = overview.published()
      return {
        node: overview.node,
        at: clock.unsafeCurrentTimeMillis(),
        totals,
        delivered: overview.delivered(),
        ...(counted === undefined ? {} : { published: counted })
      }
    })

    const write = Effect.flatMap(record, (mine) =>
      call(
        "write",
        async () => {
          const pipeline = redis
            .multi()
            .set(nodeKey(mine.node), JSON.stringify(mine), "PX", Duration.toMillis(STALE_AFTER))
            .sadd(NODES_KEY, mine.node)
          // Watched here: ask the peers to sample (and count publishes) for as long as a look lasts.
          if (overview.watchedHere()) pipeline.set(WATCHED_KEY, mine.node, "PX", overview.idleMillis)
          else pipeline.exists(WATCHED_KEY)
          const answers = await pipeline.exec()
          return answers?.at(-1)?.[1]
        },
        undefined
      ).pipe(
        Effect.map((watched) => {
          if (watched === 1) overview.viewed("cluster")
        })
      )
    )
    yield* Effect.forkScoped(Effect.repeat(write, Schedule.spaced(WRITE_EVERY)))
    yield* Effect.addFinalizer(() =>
      call(
        "leave",
        () => Promise.all([redis.del(nodeKey(overview.node)), redis.srem(NODES_KEY, overview.node)]),
        undefined
      )
    )

    const read = call(
      "read",
      async (): Promise<ReadonlyArray<NodeRecord>> => {
        const nodes = (await redis.smembers(NODES_KEY)).filter((node) => node !== overview.node)
        if (nodes.length === 0) return []
        const values = await redis.mget(...nodes.map(nodeKey))
        // Expired: the node stopped (or lost Redis) without leaving; forget it.
        const gone = nodes.filter((_, i) => values[i] === null)
        if (gone.length > 0) await redis.srem(NODES_KEY, ...gone)
        return values.flatMap((value) => (value === null ? [] : [JSON.parse(value) as NodeRecord]))
      },
      []
    )

    // The rates' history: kept only while somebody watches (it is built by the overview's reads).
    const seen = new Map<string, Seen>()
    const history: Array<ClusterSample> = []
    const periodMillis = Duration.toMillis(WRITE_EVERY)

    /** Remembers `current` (this node's own or a peer's record) and its rates since the last one. */
    const see = (current: NodeRecord, now: number) => {
      const last = seen.get(current.node)
      if (last !== undefined && last.record.at === current.at) return
      // A record read long after the previous one (nobody watched in between) gives no rate.
      const fresh = last !== undefined && now - last.seenAt <= 3 * periodMillis
      seen.set(current.node, {
        record: current,
        seenAt: now,
        rates: fresh ? ratesBetween(last.record, current) : undefined
      })
    }

    const peers = Effect.gen(function* () {
      const records = yield* read
      const now = clock.unsafeCurrentTimeMillis()
      const lastPoint = history.at(-1)?.at
      if (lastPoint !== undefined && now - lastPoint < periodMillis)
        for (const peer of records) see(peer, now)
      else {
        see(yield* record, now)
        for (const peer of records) see(peer, now)
        // Vanished nodes (left, expired) count no more.
        const present = new Set([overview.node, ...records.map((peer) => peer.node)])
        for (const node of seen.keys()) if (!present.has(node)) seen.delete(node)
        const deliveries: Record<string, number> = {}
        const publishes: Record<string, number> = {}
        let nodes = 0
        for (const { rates, seenAt } of seen.values()) {
          // A node whose last record is older than two writes has stalled: no rate.
          if (rates === undefined || now - seenAt > 2 * periodMillis) continue
          nodes += 1
          addInto(deliveries, rates.deliveries)
          if (rates.publishes !== undefined) addInto(publishes, rates.publishes)
        }
        history.push({ at: now, nodes, deliveries, publishes })
        if (history.length > CLUSTER_HISTORY) history.shift()
      }
      return records.map(({ at, node, totals }) => ({ node, at, totals }))
    })
    return { enabled: true, peers, samples: () => history } satisfies Cluster
  })
