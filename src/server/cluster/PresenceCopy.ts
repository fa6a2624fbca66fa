/**
 * A `ClusterPresence` node's copy of its holdings, for Redis restarted empty or a master failed
 * over: every heartbeat (and every connection to a server established again) checks whether Redis
 * lost this node — the heartbeat adding it anew to `filament:nodes`, or a replaced server
 * (`RedisClient.replacementDetector`) — and then writes its registration, guild index and holdings
 * again from the copy (one idempotent script per guild and user), counted.
 */
import { Effect, Queue } from "effect"
import type { Scope } from "effect"
import type { GuildId, UserId } from "../../protocol/Ids.js"
import { GatewayMetrics } from "../Metrics.js"
import * as RedisClient from "../RedisClient.js"
import { guildKey, guildsOfNodeKey, holdingsKey, NODES, REASSERT } from "./PresenceScripts.js"

export interface Holdings {
  /** Counts a join (1) or a leave (-1) in the copy, in the step that sends its script. */
  readonly hold: (guildId: GuildId, userId: UserId, delta: 1 | -1) => void
  /** Refreshes the node's heartbeat; writes the copy back when Redis lost it. */
  readonly heartbeat: Effect.Effect<void>
}

export const keepHoldings = (
  redis: RedisClient.RedisClient,
  node: string,
  /** The node's bounded, logged Redis call, answering `fallback` on failure. */
  call: <A>(label: string, run: () => Promise<A>, fallback: A) => Effect.Effect<A>
): Effect.Effect<Holdings, never, Scope.Scope | GatewayMetrics> =>
  Effect.gen(function* () {
    const clock = yield* Effect.clock
    const metrics = yield* GatewayMetrics

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

    return { hold, heartbeat }
  })
