/**
 * Presence across a cluster: the `Presence` contract (count the nodes' holdings; `join` true on
 * 0 -> 1, `leave` true on 1 -> 0) kept in Redis with one atomic script per transition, so a user
 * on two nodes comes online once and goes offline once, whichever node sees what first.
 *
 * A crashed node cannot take its users offline, so every node writes a liveness heartbeat (its own
 * `Clock`, every third of `GATEWAY_NODE_TTL_SECS`) and reaps nodes whose heartbeat is older than the
 * TTL: one script removes the dead node's holdings and returns the users that went offline, which
 * the reaping node announces (`presence_update` offline) — exactly once, since the script deletes
 * what it reaps. A SIGKILLed node's users are therefore offline within TTL + one heartbeat period.
 *
 * Keys: `filament:presence:<guild>` (hash user -> holding nodes), `filament:node:<node>:presence`
 * (hash "guild|user" -> holdings on that node), `filament:nodes` (sorted set node -> last heartbeat).
 * The scripts touch keys of several guilds, so they need one Redis (or Sentinel), not a Redis Cluster.
 */
import { randomBytes } from "node:crypto"
import { Duration, Effect, Layer, Option, Redacted, Schedule } from "effect"
import type { Scope } from "effect"
import { Redis } from "ioredis"
import { PresenceUpdate } from "../protocol/events/presence.js"
import type { GuildId, UserId } from "../protocol/Ids.js"
import { GatewayConfig } from "./Config.js"
import { SubscriptionFollowUps, type Publisher } from "./FollowUps.js"
import { Presence, type PresenceShape } from "./Presence.js"
import * as PresenceMemory from "./Presence.js"

const NODES = "filament:nodes"
const guildKey = (guildId: string) => `filament:presence:${guildId}`
const nodeKey = (node: string) => `filament:node:${node}:presence`

/** KEYS: node hash, guild hash. ARGV: "guild|user", user. 1 when the user came online in the guild. */
const JOIN = `
if redis.call('HINCRBY', KEYS[1], ARGV[1], 1) ~= 1 then return 0 end
if redis.call('HINCRBY', KEYS[2], ARGV[2], 1) == 1 then return 1 end
return 0`

/** KEYS: node hash, guild hash. ARGV: "guild|user", user. 1 when the user went offline in the guild. */
const LEAVE = `
local held = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if held > 0 then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
if held < 0 then return 0 end
local nodes = redis.call('HINCRBY', KEYS[2], ARGV[2], -1)
if nodes > 0 then return 0 end
redis.call('HDEL', KEYS[2], ARGV[2])
return 1`

/**
 * KEYS: nodes zset. ARGV: heartbeat deadline (ms) or "self", node key prefix, guild key prefix, this
 * node. Removes every other node whose heartbeat is at or before the deadline (or, with "self", this
 * node) with its holdings; returns the "guild|user" entries that went offline.
 */
const REAP = `
local dead = {}
if ARGV[1] == 'self' then
  dead = { ARGV[4] }
else
  for _, node in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])) do
    if node ~= ARGV[4] then table.insert(dead, node) end
  end
end
local offline = {}
for _, node in ipairs(dead) do
  local held = ARGV[2] .. node .. ':presence'
  for _, entry in ipairs(redis.call('HKEYS', held)) do
    local bar = string.find(entry, '|', 1, true)
    local guild = ARGV[3] .. string.sub(entry, 1, bar - 1)
    local user = string.sub(entry, bar + 1)
    if redis.call('HINCRBY', guild, user, -1) <= 0 then
      redis.call('HDEL', guild, user)
      table.insert(offline, entry)
    end
  end
  redis.call('DEL', held)
  redis.call('ZREM', KEYS[1], node)
end
return offline`

/** Entries per HSCAN round of a snapshot: bounds one round trip, not the snapshot. */
const SCAN_COUNT = 512

export interface ClusterPresenceShape extends PresenceShape {
  /** Removes dead nodes' holdings; the users that went offline, for the caller to announce. */
  readonly reap: Effect.Effect<ReadonlyArray<readonly [GuildId, UserId]>>
  readonly heartbeatEvery: Duration.Duration
}

export interface ClusterPresenceOptions {
  readonly url: Redacted.Redacted<string>
  /** A node whose heartbeat is older than this is dead. */
  readonly nodeTtl: Duration.Duration
  /** Bound on one Redis call; an announcement that misses it is skipped (the state still converges). */
  readonly timeout: Duration.Duration
}

export const makeRedis = (
  options: ClusterPresenceOptions
): Effect.Effect<ClusterPresenceShape, never, Scope.Scope> =>
  Effect.gen(function* () {
    const clock = yield* Effect.clock
    const node = randomBytes(16).toString("hex")
    // Queued while disconnected (in order), so the counts converge after an outage even when an
    // announcement timed out meanwhile.
    const redis = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const client = new Redis(Redacted.value(options.url), { maxRetriesPerRequest: null })
        client.on("error", () => undefined) // retried by the client; calls time out and are logged
        return client
      }),
      (client) =>
        Effect.promise(async () => {
          // Graceful stop: leave nothing behind for a reaper.
          await client
            .eval(REAP, 1, NODES, "self", "filament:node:", "filament:presence:", node)
            .catch(() => undefined)
          client.disconnect(false)
        }).pipe(Effect.timeout(options.timeout), Effect.ignore)
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

    const heartbeat = Effect.suspend(() =>
      call("heartbeat", () => redis.zadd(NODES, clock.unsafeCurrentTimeMillis(), node), 0)
    )
    yield* heartbeat

    const presence: ClusterPresenceShape = {
      join: (guildId, userId) =>
        call(
          "join",
          () => redis.eval(JOIN, 2, nodeKey(node), guildKey(guildId), `${guildId}|${userId}`, userId),
          0
        ).pipe(Effect.map((came) => came === 1)),
      leave: (guildId, userId) =>
        call(
          "leave",
          () => redis.eval(LEAVE, 2, nodeKey(node), guildKey(guildId), `${guildId}|${userId}`, userId),
          0
        ).pipe(Effect.map((went) => went === 1)),
      snapshot: (guildId, first, limit) =>
        call(
          "snapshot",
          async () => {
            const key = guildKey(guildId)
            const [total, firstOnline] = await Promise.all([redis.hlen(key), redis.hexists(key, first)])
            const userIds: Array<UserId> = firstOnline === 1 && limit > 0 ? [first] : []
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
          () =>
            redis.eval(
              REAP,
              1,
              NODES,
              String(now - ttlMillis),
              "filament:node:",
              "filament:presence:",
              node
            ) as Promise<Array<string>>,
          []
        ).pipe(
          Effect.map((entries) =>
            entries.map((entry) => {
              const bar = entry.indexOf("|")
              return [entry.slice(0, bar) as GuildId, entry.slice(bar + 1) as UserId] as const
            })
          )
        )
      }),
      heartbeatEvery: Duration.millis(Math.max(1, Math.floor(ttlMillis / 3)))
    }
    yield* Effect.forkScoped(Effect.repeat(heartbeat, Schedule.spaced(presence.heartbeatEvery)))
    return presence
  })

/** Redis presence when `GATEWAY_REDIS_URL` is set, else the in-memory one. */
export const layer: Layer.Layer<Presence, never, GatewayConfig> = Layer.scoped(
  Presence,
  Effect.flatMap(GatewayConfig, (config) =>
    Option.match(config.redis, {
      onNone: () => Effect.sync(PresenceMemory.makeMemory),
      onSome: ({ url }) =>
        Effect.map(
          makeRedis({ url, nodeTtl: config.nodeTtl, timeout: config.busTimeout }),
          (presence): PresenceShape => presence
        )
    })
  )
)

const isCluster = (presence: PresenceShape): presence is ClusterPresenceShape => "reap" in presence

/**
 * The follow-ups plus, with the Redis presence, the reaper: every heartbeat period, the users of
 * dead nodes go offline (announced by whichever node reaped them).
 */
export const layerFollowUps: Layer.Layer<SubscriptionFollowUps, never, SubscriptionFollowUps | Presence> =
  Layer.effect(
    SubscriptionFollowUps,
    Effect.gen(function* () {
      const inner = yield* SubscriptionFollowUps
      const presence = yield* Presence
      if (!isCluster(presence)) return inner
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
