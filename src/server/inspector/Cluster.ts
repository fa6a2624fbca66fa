/**
 * The cluster view: with `GATEWAY_REDIS_URL` set, every node writes its overview totals to Redis
 * every `WRITE_EVERY` (one `SET` with an expiry and one `SADD`: cheap whether or not anyone looks),
 * and the node serving an overview reads its peers' (`SMEMBERS` + `MGET`). All keys share one hash
 * slot, so this works on a Redis Cluster too. A node that stops writing drops out after
 * `STALE_AFTER`; without Redis there are no peers.
 */
import { Duration, Effect, Option, Schedule } from "effect"
import { GatewayConfig } from "../Config.js"
import * as RedisClient from "../RedisClient.js"
import type { Overview, Totals } from "./Overview.js"

const NODES_KEY = "{filament:inspector}:nodes"
const nodeKey = (node: string) => `{filament:inspector}:node:${node}`
const WRITE_EVERY = Duration.seconds(5)
const STALE_AFTER = Duration.seconds(15)

export interface PeerTotals {
  readonly node: string
  /** The peer's `Clock` time when it wrote these totals (ms). */
  readonly at: number
  readonly totals: Totals
}

export interface Cluster {
  /** The other nodes' latest totals (empty without Redis, or when Redis does not answer in time). */
  readonly peers: Effect.Effect<ReadonlyArray<PeerTotals>>
}

export const make = (overview: Overview) =>
  Effect.gen(function* () {
    const config = yield* GatewayConfig
    if (Option.isNone(config.redis)) return { peers: Effect.succeed([]) } satisfies Cluster
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

    const write = Effect.flatMap(
      Effect.all({ totals: overview.totals, at: Effect.clockWith((clock) => clock.currentTimeMillis) }),
      ({ at, totals }) =>
        call(
          "write",
          () =>
            Promise.all([
              redis.set(
                nodeKey(overview.node),
                JSON.stringify({ node: overview.node, at, totals }),
                "PX",
                Duration.toMillis(STALE_AFTER)
              ),
              redis.sadd(NODES_KEY, overview.node)
            ]),
          undefined
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

    const peers = call(
      "read",
      async (): Promise<ReadonlyArray<PeerTotals>> => {
        const nodes = (await redis.smembers(NODES_KEY)).filter((node) => node !== overview.node)
        if (nodes.length === 0) return []
        const values = await redis.mget(...nodes.map(nodeKey))
        // Expired: the node stopped (or lost Redis) without leaving; forget it.
        const gone = nodes.filter((_, i) => values[i] === null)
        if (gone.length > 0) await redis.srem(NODES_KEY, ...gone)
        return values.flatMap((value) => (value === null ? [] : [JSON.parse(value) as PeerTotals]))
      },
      []
    )
    return { peers } satisfies Cluster
  })
