/**
 * Presence across a cluster: the `Presence` contract (count the nodes' holdings; `join` true on
 * 0 -> 1, `leave` true on 1 -> 0) kept in Redis with one atomic script per transition, so a user
 * on two nodes comes online once and goes offline once, whichever node sees what first.
 *
 * A crashed node cannot take its users offline, so every node writes a liveness heartbeat (its own
 * `Clock`, every third of `GATEWAY_NODE_TTL_SECS`) and reaps nodes whose heartbeat is older than the
 * TTL: for each guild the dead node held someone in, one script removes its holdings there and
 * returns the users that went offline, which the reaping node announces (`presence_update` offline)
 * — exactly once, since the script deletes what it reaps. A SIGKILLed node's users are therefore
 * offline within TTL + one heartbeat period.
 *
 * Redis restarted empty (or a master failed over) loses all of that: every heartbeat, and every
 * connection to a server established again, also checks for it — the heartbeat adding this node
 * anew to `filament:nodes`, or a server with a new run id or role, or a master not seen before (a
 * promoted replica; `RedisClient.replacementDetector`)
 * — and then the node writes its registration, guild index and holdings again from its own copy
 * (one idempotent script per guild and user), so presence converges within one heartbeat period
 * after Redis serves again.
 *
 * The keys, the scripts and the reaping of one dead node are in `PresenceScripts.ts`.
 */
import { randomBytes } from "node:crypto"
import { Context, Duration, Effect, Layer, Queue, Schedule } from "effect"
import type { Scope } from "effect"
import { PresenceUpdate } from "../../protocol/events/presence.js"
import type { GuildId, UserId } from "../../protocol/Ids.js"
import { GatewayConfig, type RedisEndpoint } from "../Config.js"
import { GatewayHooks, type Publisher } from "../core/Seams.js"
import { GatewayMetrics } from "../Metrics.js"
import { Presence, type PresenceShape } from "../chat/Presence.js"
import {
  guildKey,
  guildsOfNodeKey,
  holdingsKey,
  JOIN,
  LEAVE,
  NODES,
  reapNode,
  REASSERT
} from "./PresenceScripts.js"
import * as RedisClient from "./RedisClient.js"

/** Entries per HSCAN round of a snapshot: bounds one round trip, not the snapshot. */
const SCAN_COUNT = 512

export interface ClusterPresenceShape extends PresenceShape {
  /** Removes dead nodes' holdings; the users that went offline, for the caller to announce. */
  readonly reap: Effect.Effect<ReadonlyArray<readonly [GuildId, UserId]>>
  readonly heartbeatEvery: Duration.Duration
}

export interface ClusterPresenceOptions {
  readonly endpoint: RedisEndpoint
  /** A node whose heartbeat is older than this is dead. */
  readonly nodeTtl: Duration.Duration
  /** Bound on one Redis call; an announcement that misses it is skipped (the state still converges). */
  readonly timeout: Duration.Duration
}

export const makeRedis = (
  options: ClusterPresenceOptions
): Effect.Effect<ClusterPresenceShape, never, Scope.Scope | GatewayMetrics> =>
  Effect.gen(function* () {
    const clock = yield* Effect.clock
    const metrics = yield* GatewayMetrics
    const node = randomBytes(16).toString("hex")
    // Queued while disconnected (in order), so the counts converge after an outage even when an
    // announcement timed out meanwhile.
    const redis = yield* RedisClient.make(options.endpoint, {
      connectionName: `filament-presence-${node}`,
      lazyConnect: false,
      offlineQueue: true,
      maxRetriesPerRequest: null
    })
    // Graceful stop (before the client closes): leave nothing behind for a reaper.
    yield* Effect.addFinalizer(() =>
      Effect.promise(() => reapNode(redis, node).catch(() => undefined)).pipe(
        Effect.timeout(options.timeout),
        Effect.ignore
      )
    )

    const call = <A>(label: string, run: () => Promise<A>, fallback: A) =>
      Effect.tryPromise(run).pipe(
        Effect.timeout(options.timeout),
        Effect.catchAll((error) =>
          Effect.as(Effect.logWarning(`gateway.cluster_presence.${label}_failed`, error), fallback)
        )
      )

    // A node judges others dead only after it has itself been connected for a whole TTL: after an
    // outage every live node first gets the chance to refresh its heartbeat.
    let connectedSince: number | undefined
    redis.on("ready", () => {
      connectedSince = clock.unsafeCurrentTimeMillis()
    })
    redis.on("close", () => {
      connectedSince = undefined
    })
    const ttlMillis = Duration.toMillis(options.nodeTtl)

    /**
     * This node's holdings (joins minus leaves) per guild and user: what it writes again when Redis
     * lost them. Changed in the same synchronous step that sends the script, so the copy and the
     * commands on the guild's connection are in one order: a re-assertion sent after them restores
     * exactly the count they leave.
     */
    const held = new Map<GuildId, Map<UserId, number>>()
    const hold = (guildId: GuildId, userId: UserId, delta: 1 | -1) => {
      let users = held.get(guildId)
      if (users === undefined) held.set(guildId, (users = new Map()))
      const count = (users.get(userId) ?? 0) + delta
      // As the LEAVE script: a holding at or below zero is gone.
      if (count > 0) users.set(userId, count)
      else users.delete(userId)
      if (users.size === 0) held.delete(guildId)
    }

    /** Registers the node, its guilds and its holdings again. */
    const reassert = () => {
      const writes: Array<Promise<unknown>> = [redis.zadd(NODES, clock.unsafeCurrentTimeMillis(), node)]
      if (held.size > 0) writes.push(redis.sadd(guildsOfNodeKey(node), ...held.keys()))
      for (const [guildId, users] of held) {
        for (const [userId, count] of users) {
          writes.push(redis.eval(REASSERT, 2, holdingsKey(guildId, node), guildKey(guildId), userId, count))
        }
      }
      return Promise.all(writes)
    }

    const replaced = RedisClient.replacementDetector(redis)
    let registered = false
    const serialized = (yield* Effect.makeSemaphore(1)).withPermits(1)
    /**
     * Re-asserts this node's holdings when a server was replaced or `registryLost` says Redis lost
     * them; one check at a time.
     */
    const checkLost = (label: string, registryLost: () => Promise<boolean>) =>
      serialized(call(label, async () => replaced(reassert, await registryLost()), false)).pipe(
        Effect.flatMap((reasserted) =>
          reasserted
            ? Effect.zipRight(
                Effect.sync(() => metrics.clusterStateReasserted("presence")),
                Effect.logWarning(`gateway.cluster_presence.reasserted guilds=${held.size}`)
              )
            : Effect.void
        )
      )
    const heartbeat = Effect.suspend(() =>
      checkLost("heartbeat", async () => {
        const added = await redis.zadd(NODES, clock.unsafeCurrentTimeMillis(), node)
        // Added anew after the first heartbeat: the registry was lost (or a reaper took this node).
        const lost = registered && added === 1
        registered = true
        return lost
      })
    )
    // A server connected again (restarted, failed over): checked at once rather than at the next beat.
    const reconnected = yield* Queue.sliding<void>(1)
    RedisClient.onServerConnected(redis, () => Queue.unsafeOffer(reconnected, undefined))
    yield* Effect.forkScoped(
      Effect.forever(
        Effect.zipRight(
          Queue.take(reconnected),
          checkLost("reconnect", () => Promise.resolve(false))
        )
      )
    )
    yield* heartbeat

    const presence: ClusterPresenceShape = {
      join: (guildId, userId) =>
        call(
          "join",
          async () => {
            hold(guildId, userId, 1)
            // Indexed first: a node that dies right after the join is still reaped in this guild.
            const [, came] = await Promise.all([
              redis.sadd(guildsOfNodeKey(node), guildId),
              redis.eval(JOIN, 2, holdingsKey(guildId, node), guildKey(guildId), userId)
            ])
            return came
          },
          0
        ).pipe(Effect.map((came) => came === 1)),
      leave: (guildId, userId) =>
        call(
          "leave",
          () => {
            hold(guildId, userId, -1)
            return redis.eval(LEAVE, 2, holdingsKey(guildId, node), guildKey(guildId), userId)
          },
          0
        ).pipe(Effect.map((went) => went === 1)),
      snapshot: (guildId, first, limit) =>
        call(
          "snapshot",
          async () => {
            const key = guildKey(guildId)
            const [total, firstOnline] = await Promise.all([
              redis.hlen(key),
              first === undefined ? 0 : redis.hexists(key, first)
            ])
            const userIds: Array<UserId> =
              first !== undefined && firstOnline === 1 && limit > 0 ? [first] : []
            let cursor = "0"
            do {
              if (userIds.length >= limit) break
              const [next, entries] = await redis.hscan(key, cursor, "COUNT", SCAN_COUNT)
              cursor = next
              for (let i = 0; i < entries.length && userIds.length < limit; i += 2) {
                if (entries[i] !== first) userIds.push(entries[i] as UserId)
              }
            } while (cursor !== "0")
            return { userIds, total }
          },
          { userIds: [], total: 0 }
        ),
      reap: Effect.suspend(() => {
        const now = clock.unsafeCurrentTimeMillis()
        if (connectedSince === undefined || now - connectedSince < ttlMillis) return Effect.succeed([])
        return call(
          "reap",
          async () => {
            const dead = await redis.zrangebyscore(NODES, "-inf", now - ttlMillis)
            const offline = await Promise.all(
              dead.filter((other) => other !== node).map((other) => reapNode(redis, other))
            )
            return offline.flat()
          },
          []
        )
      }),
      heartbeatEvery: Duration.millis(Math.max(1, Math.floor(ttlMillis / 3)))
    }
    yield* Effect.forkScoped(Effect.repeat(heartbeat, Schedule.spaced(presence.heartbeatEvery)))
    return presence
  })

/**
 * The Redis presence as a service of its own: the dead-node reaper (`layerReaper`) needs what only
 * the cluster presence has, and says so in its layer type.
 */
export class ClusterPresence extends Context.Tag("filament/ClusterPresence")<
  ClusterPresence,
  ClusterPresenceShape
>() {}

/** Redis presence at `endpoint` (`GATEWAY_REDIS_URL`): the `Presence` of the hooks, and the reaper's. */
export const layerRedis = (
  endpoint: RedisEndpoint
): Layer.Layer<Presence | ClusterPresence, never, GatewayConfig | GatewayMetrics> =>
  Layer.scopedContext(
    Effect.flatMap(GatewayConfig, (config) =>
      Effect.map(makeRedis({ endpoint, nodeTtl: config.nodeTtl, timeout: config.busTimeout }), (presence) =>
        Context.make(ClusterPresence, presence).pipe(Context.add(Presence, presence))
      )
    )
  )

/**
 * The hooks plus the reaper: every heartbeat period, the users of dead nodes go offline (announced
 * by whichever node reaped them).
 */
export const layerReaper: Layer.Layer<GatewayHooks, never, GatewayHooks | ClusterPresence> = Layer.effect(
  GatewayHooks,
  Effect.gen(function* () {
    const inner = yield* GatewayHooks
    const presence = yield* ClusterPresence
    const reapAndAnnounce = (publisher: Publisher) =>
      Effect.flatMap(presence.reap, (offline) =>
        Effect.forEach(
          offline,
          ([guildId, userId]) =>
            publisher
              .publish(PresenceUpdate, { guild_id: guildId, user_id: userId, status: "offline" })
              .pipe(Effect.ignore),
          { discard: true }
        )
      )
    return {
      ...inner,
      start: (publisher) =>
        Effect.all(
          [
            Effect.repeat(reapAndAnnounce(publisher), Schedule.spaced(presence.heartbeatEvery)),
            inner.start(publisher)
          ],
          { concurrency: "unbounded", discard: true }
        )
    }
  })
)
