/**
 * The voice participant projection across a cluster: the `VoiceParticipants` contract kept in Redis,
 * one atomic script per operation on a guild, so a join published on one node is in the snapshot
 * another node sends on subscribe, the caps hold for the cluster (the channel cap by an atomic
 * reservation in the tracked-channel set before the join), and an expiry or a user's removal is
 * handed back (and so announced) by exactly one node — whichever ran the script that removed it.
 *
 * Redis restarted empty (or a master failed over) loses the projection while the participants are
 * still in their calls. Each node therefore keeps a copy of the entries it wrote last (kept in step
 * with Redis once per check period: an entry another node changed or removed is refreshed or
 * forgotten) and, when a Redis server was replaced, writes back those Redis no longer has.
 *
 * The keys and the scripts are in `VoiceScripts.ts`, the node's copy and its write-back in
 * `VoiceCopy.ts`.
 */
import { Duration, Effect, Layer } from "effect"
import type { Scope } from "effect"
import type { ChannelId, GuildId, UserId } from "../../protocol/Ids.js"
import type { VoiceParticipant } from "../../protocol/Shapes.js"
import { GatewayConfig, type RedisEndpoint } from "../Config.js"
import type { GatewayMetrics } from "../Metrics.js"
import { PublishRefused } from "../Errors.js"
import * as RedisClient from "./RedisClient.js"
import { keepWrittenCopy } from "./VoiceCopy.js"
import {
  channelHashKey,
  CHANNELS,
  EXPIRE,
  guildPrefix,
  JOIN,
  LEAVE,
  removals,
  REMOVE_USER,
  RESERVE,
  type ScriptRemovals,
  type StoredEntry,
  STREAM,
  UPDATE,
  userChannelsKey,
  userGuildsKey
} from "./VoiceScripts.js"
import { channelKey } from "../registry/Indexes.js"
import * as Voice from "../chat/Voice.js"
import {
  VoiceParticipants,
  type VoiceLimits,
  type VoiceParticipantsShape,
  type VoiceRemoval
} from "../chat/Voice.js"

export interface ClusterVoiceOptions extends VoiceLimits {
  readonly endpoint: RedisEndpoint
  /** Bound on one Redis call (a refused join is then refused with the channel-limit reason). */
  readonly timeout: Duration.Duration
  /** How often the node checks whether Redis lost the projection (and refreshes its copy). */
  readonly checkEvery: Duration.Duration
}

export const makeRedis = (
  options: ClusterVoiceOptions
): Effect.Effect<VoiceParticipantsShape, never, Scope.Scope | GatewayMetrics> =>
  Effect.gen(function* () {
    const clock = yield* Effect.clock
    const redis = yield* RedisClient.make(options.endpoint, {
      connectionName: "filament-voice",
      lazyConnect: false,
      offlineQueue: true,
      maxRetriesPerRequest: null
    })
    const lifetime = Duration.toMillis(options.participantLifetime)

    const call = <A>(label: string, run: () => Promise<A>) =>
      Effect.tryPromise(run).pipe(
        Effect.timeout(options.timeout),
        Effect.tapError((error) => Effect.logWarning(`gateway.cluster_voice.${label}_failed`, error))
      )
    const list = (label: string, run: () => Promise<ReadonlyArray<VoiceRemoval>>) =>
      call(label, run).pipe(Effect.orElseSucceed((): ReadonlyArray<VoiceRemoval> => []))
    const quiet = (label: string, run: () => Promise<unknown>) => Effect.ignore(call(label, run))

    const { forget, remember } = yield* keepWrittenCopy(redis, options.checkEvery, call)

    /**
     * Removes `member` from an index outside the guild's slot unless it still holds something: a
     * concurrent join re-adds it after its script, so either that join or this re-check keeps it.
     */
    const untrack = async (index: string, member: string, heldKey: string) => {
      await redis.srem(index, member)
      if ((await redis.exists(heldKey)) === 1) await redis.sadd(index, member)
    }
    const untrackChannels = (guildId: GuildId, channels: ReadonlyArray<string>) =>
      Promise.all(
        channels.map((channelId) =>
          untrack(CHANNELS, `${guildId}:${channelId}`, channelHashKey(guildId, channelId))
        )
      )

    /** Runs one of the guild's removing scripts, untracks what it emptied, returns its removals. */
    const removeIn = async (
      guildId: GuildId,
      script: string,
      key: string,
      ...args: Array<string | number>
    ) => {
      const [removed, emptied] = (await redis.eval(
        script,
        1,
        key,
        guildPrefix(guildId),
        ...args
      )) as ScriptRemovals
      await untrackChannels(guildId, emptied)
      return removals(guildId, removed)
    }

    const join = async (guildId: GuildId, channelId: ChannelId, userId: UserId, entry: StoredEntry) => {
      const entryJson = JSON.stringify(entry)
      const tracked = await redis.eval(
        RESERVE,
        1,
        CHANNELS,
        channelKey(guildId, channelId),
        options.maxChannels
      )
      if (tracked !== 1) return "voice_channel_limit"
      const outcome = await redis.eval(
        JOIN,
        1,
        channelHashKey(guildId, channelId),
        guildPrefix(guildId),
        channelId,
        userId,
        entryJson,
        options.maxParticipantsPerChannel
      )
      // Indexed again after the script: an untrack racing with this join cannot leave it out.
      if (outcome === "ok") {
        remember(guildId, channelId, userId, entryJson)
        await Promise.all([
          redis.sadd(CHANNELS, channelKey(guildId, channelId)),
          redis.sadd(userGuildsKey(userId), guildId)
        ])
      }
      return outcome
    }

    return {
      apply: (change) => {
        const { channel_id: channelId, guild_id: guildId } = change.payload
        const key = channelHashKey(guildId, channelId)
        switch (change._tag) {
          case "join": {
            const now = clock.unsafeCurrentTimeMillis()
            const entry: StoredEntry = {
              participant: change.payload.participant,
              streams: {},
              expiresAt: now + lifetime,
              writtenAt: now
            }
            return call("join", () =>
              join(guildId, channelId, change.payload.participant.user_id, entry)
            ).pipe(
              // Fail closed: a join the cluster cannot record is not delivered.
              Effect.orElseSucceed(() => "voice_channel_limit"),
              Effect.flatMap((outcome) =>
                outcome === "ok"
                  ? Effect.void
                  : outcome === "voice_participant_limit"
                    ? new PublishRefused({
                        reason: "voice_participant_limit",
                        limit: options.maxParticipantsPerChannel,
                        detail: `the voice channel has ${options.maxParticipantsPerChannel} participants already`
                      })
                    : new PublishRefused({
                        reason: "voice_channel_limit",
                        limit: options.maxChannels,
                        detail: `${options.maxChannels} voice channels are tracked already (or the store is unavailable)`
                      })
              )
            )
          }
          case "leave":
            return quiet("leave", () =>
              removeIn(guildId, LEAVE, key, channelId, change.payload.user_id).then(forget)
            )
          case "update":
            return quiet("update", () =>
              redis
                .eval(
                  UPDATE,
                  1,
                  key,
                  change.payload.user_id,
                  JSON.stringify(change.payload.updated_fields),
                  change.payload.updated_at_unix,
                  clock.unsafeCurrentTimeMillis(),
                  clock.unsafeCurrentTimeMillis() + lifetime
                )
                .then((entry) => remember(guildId, channelId, change.payload.user_id, entry))
            )
          case "publish":
          case "unpublish":
            return quiet("stream", () =>
              redis
                .eval(
                  STREAM,
                  1,
                  key,
                  change.payload.user_id,
                  change.payload.stream,
                  change._tag === "publish" ? "1" : "0",
                  clock.unsafeCurrentTimeMillis()
                )
                .then((entry) => remember(guildId, channelId, change.payload.user_id, entry))
            )
        }
      },
      expire: (channel) =>
        list("expire", async () => {
          const now = clock.unsafeCurrentTimeMillis()
          const channels =
            channel === undefined
              ? (await redis.smembers(CHANNELS)).map((tracked) => tracked.split(":") as [GuildId, ChannelId])
              : [[channel.guildId, channel.channelId] as const]
          const removed = await Promise.all(
            channels.map(([guildId, channelId]) =>
              removeIn(guildId, EXPIRE, channelHashKey(guildId, channelId), channelId, now)
            )
          )
          return forget(removed.flat())
        }),
      removeUser: (userId, guildId) =>
        list("remove_user", async () => {
          const guilds =
            guildId === undefined
              ? ((await redis.smembers(userGuildsKey(userId))) as Array<GuildId>)
              : [guildId]
          const removed = await Promise.all(
            guilds.map(async (guild) => {
              const userChannels = userChannelsKey(guild, userId)
              const inGuild = await removeIn(guild, REMOVE_USER, userChannels, userId)
              await untrack(userGuildsKey(userId), guild, userChannels)
              return inGuild
            })
          )
          return forget(removed.flat())
        }),
      snapshot: (guildId, channelId) =>
        call("snapshot", () => redis.hvals(channelHashKey(guildId, channelId))).pipe(
          Effect.map((values) =>
            values
              .map((value) => (JSON.parse(value) as StoredEntry).participant)
              .sort(Voice.byJoinThenIdentity)
          ),
          Effect.orElseSucceed((): ReadonlyArray<VoiceParticipant> => [])
        )
    }
  })

/** The Redis voice projection at `endpoint` (`GATEWAY_REDIS_URL`). */
export const layerRedis = (
  endpoint: RedisEndpoint
): Layer.Layer<VoiceParticipants, never, GatewayConfig | GatewayMetrics> =>
  Layer.scoped(
    VoiceParticipants,
    Effect.flatMap(GatewayConfig, (config) =>
      makeRedis({
        ...Voice.limitsOf(config),
        endpoint,
        timeout: config.busTimeout,
        // The presence heartbeat's period: both converge within it after Redis lost them.
        checkEvery: Duration.millis(Math.max(1, Math.floor(Duration.toMillis(config.nodeTtl) / 3)))
      })
    )
  )
