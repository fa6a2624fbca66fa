/**
 * The steps of a `ClusterVoice` change over the scripts of `VoiceScripts.ts`: a join reserves its
 * channel under the cluster-wide cap, runs the guild's script and indexes the channel and the user
 * again; a removing script untracks the channels it emptied. The indexes outside the guild's slot are
 * kept by separate commands, so each step is ordered to keep them a superset of what is held.
 */
import { Effect } from "effect"
import type { ChannelId, GuildId, UserId } from "../../protocol/Ids.js"
import type { VoiceLimits } from "../chat/Voice.js"
import { PublishRefused } from "../Errors.js"
import type * as RedisClient from "../RedisClient.js"
import { channelKey } from "../registry/Indexes.js"
import type { WrittenCopy } from "./VoiceCopy.js"
import {
  channelHashKey,
  CHANNELS,
  guildPrefix,
  JOIN,
  removals,
  RESERVE,
  type ScriptRemovals,
  type StoredEntry,
  userGuildsKey
} from "./VoiceScripts.js"

export type JoinOutcome = "ok" | "voice_participant_limit" | "voice_channel_limit"

export const makeSteps = (
  redis: RedisClient.RedisClient,
  options: Pick<VoiceLimits, "maxChannels" | "maxParticipantsPerChannel">,
  remember: WrittenCopy["remember"]
) => {
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
  const removeIn = async (guildId: GuildId, script: string, key: string, ...args: Array<string | number>) => {
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

  return { untrack, removeIn, join }
}

/** A join's outcome as the publish's verdict: refused with the cap it met (fail closed). */
export const refusal = (
  outcome: unknown,
  options: Pick<VoiceLimits, "maxChannels" | "maxParticipantsPerChannel">
): Effect.Effect<void, PublishRefused> =>
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
