/**
 * A `ClusterVoice` node's copy of the entries it wrote last, for Redis restarted empty or a master
 * failed over: once per check period the copy is refreshed from Redis (an entry another node changed
 * or removed is taken over or forgotten) unless a Redis server was replaced meanwhile; then the copy
 * as it was is written back (and counted). A server connected again is checked at once.
 */
import { Effect, Queue, Schedule } from "effect"
import type { Duration, Scope } from "effect"
import type { ChannelId, GuildId, UserId } from "../../protocol/Ids.js"
import type { VoiceRemoval } from "../chat/Voice.js"
import { GatewayMetrics } from "../Metrics.js"
import { channelKey } from "../registry/Indexes.js"
import * as RedisClient from "./RedisClient.js"
import { CHANNELS, channelHashKey, guildPrefix, REASSERT, userGuildsKey } from "./VoiceScripts.js"

/** One entry this node wrote last, as Redis holds it. */
interface Written {
  readonly guildId: GuildId
  readonly channelId: ChannelId
  readonly userId: UserId
  readonly entry: string
}

export interface WrittenCopy {
  /** Records what a script left in Redis for the user: the entry, or nothing (null). */
  readonly remember: (guildId: GuildId, channelId: ChannelId, userId: UserId, entry: unknown) => void
  /** Drops the removed entries from the copy; returns them. */
  readonly forget: (removed: ReadonlyArray<VoiceRemoval>) => ReadonlyArray<VoiceRemoval>
}

export const keepWrittenCopy = (
  redis: RedisClient.RedisClient,
  checkEvery: Duration.Duration,
  /** The node's bounded, logged Redis call. */
  call: <A>(label: string, run: () => Promise<A>) => Effect.Effect<A, unknown>
): Effect.Effect<WrittenCopy, never, Scope.Scope | GatewayMetrics> =>
  Effect.gen(function* () {
    const metrics = yield* GatewayMetrics
    /** The entries this node wrote last, by channel and user: what it writes back when Redis lost them. */
    const written = new Map<string, Written>()
    const writtenKey = (guildId: GuildId, channelId: ChannelId, userId: UserId) =>
      `${channelKey(guildId, channelId)}:${userId}`
    const remember = (guildId: GuildId, channelId: ChannelId, userId: UserId, entry: unknown) => {
      const key = writtenKey(guildId, channelId, userId)
      if (typeof entry === "string") written.set(key, { guildId, channelId, userId, entry })
      else written.delete(key)
    }
    const forget = (removed: ReadonlyArray<VoiceRemoval>) => {
      for (const removal of removed)
        written.delete(writtenKey(removal.guildId, removal.channelId, removal.userId))
      return removed
    }

    const reassert = (entries: ReadonlyArray<Written>) =>
      Promise.all(
        entries.map(async ({ channelId, entry, guildId, userId }) => {
          await redis.eval(
            REASSERT,
            1,
            channelHashKey(guildId, channelId),
            guildPrefix(guildId),
            channelId,
            userId,
            entry
          )
          await Promise.all([
            redis.sadd(CHANNELS, channelKey(guildId, channelId)),
            redis.sadd(userGuildsKey(userId), guildId)
          ])
        })
      )

    const replaced = RedisClient.replacementDetector(redis)
    const serialized = (yield* Effect.makeSemaphore(1)).withPermits(1)
    /**
     * Refreshes the copy from Redis (entries other nodes changed or removed) unless a server was
     * replaced meanwhile; then the copy as it was is written back instead.
     */
    const check = (refresh: boolean) =>
      call("check", async () => {
        const entries = [...written.values()]
        const current = refresh
          ? await Promise.all(
              entries.map(({ channelId, guildId, userId }) =>
                redis.hget(channelHashKey(guildId, channelId), userId)
              )
            )
          : []
        if (await replaced(() => reassert(entries))) return true
        for (const [i, copy] of current.entries()) {
          const { channelId, guildId, userId } = entries[i]!
          // Unless this node wrote the entry again meanwhile: its own write is the newer.
          if (written.get(writtenKey(guildId, channelId, userId)) === entries[i]) {
            remember(guildId, channelId, userId, copy)
          }
        }
        return false
      }).pipe(
        Effect.flatMap((reasserted) =>
          reasserted
            ? Effect.zipRight(
                Effect.sync(() => metrics.clusterStateReasserted("voice")),
                Effect.logWarning(`gateway.cluster_voice.reasserted entries=${written.size}`)
              )
            : Effect.void
        ),
        Effect.ignore,
        serialized
      )
    yield* check(false)
    yield* Effect.forkScoped(Effect.repeat(check(true), Schedule.spaced(checkEvery)))
    // A server connected again (restarted, failed over): checked at once rather than at the next period.
    const reconnected = yield* Queue.sliding<void>(1)
    RedisClient.onServerConnected(redis, () => Queue.unsafeOffer(reconnected, undefined))
    yield* Effect.forkScoped(Effect.forever(Effect.zipRight(Queue.take(reconnected), check(false))))
    return { remember, forget }
  })
