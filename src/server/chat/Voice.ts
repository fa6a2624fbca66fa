/**
 * VoiceParticipants: per `{guild, channel}`, the participant snapshot implied by the voice events
 * published through the gateway (reference §5.8), for `voice_participant_sync` on subscribe.
 *
 * Bounded like the original: at most `GATEWAY_MAX_VOICE_CHANNELS` tracked channels and
 * `GATEWAY_MAX_VOICE_PARTICIPANTS_PER_CHANNEL` participants per channel; a join over either cap is
 * refused (`PublishRefused`) before anything is delivered. A participant expires
 * `GATEWAY_VOICE_PARTICIPANT_TTL_SECS` after its last join / update; expired participants are handed
 * back as removals, for which the caller publishes the original's removal events. Every operation is
 * one synchronous step, so concurrent publishes never see a half-applied change. A shared store
 * replaces `layerMemory` behind the same interface.
 */
import { Clock, Context, Duration, Effect, Layer } from "effect"
import type { EventDefinition, PayloadOf } from "../../protocol/EventDefinition.js"
import {
  VoiceParticipantJoin,
  VoiceParticipantLeave,
  VoiceParticipantUpdate,
  VoiceStreamPublish,
  VoiceStreamUnpublish
} from "../../protocol/events/voice.js"
import type { ChannelId, GuildId, UserId } from "../../protocol/Ids.js"
import type { VoiceParticipant, VoiceStreamKind } from "../../protocol/Shapes.js"
import { GatewayConfig, type GatewayConfigShape } from "../Config.js"
import { PublishRefused } from "../Errors.js"
import { channelKey, type ChannelKey } from "../registry/Indexes.js"

/** A published voice event, typed. */
export type VoiceChange =
  | { readonly _tag: "join"; readonly payload: PayloadOf<typeof VoiceParticipantJoin> }
  | { readonly _tag: "leave"; readonly payload: PayloadOf<typeof VoiceParticipantLeave> }
  | { readonly _tag: "update"; readonly payload: PayloadOf<typeof VoiceParticipantUpdate> }
  | { readonly _tag: "publish"; readonly payload: PayloadOf<typeof VoiceStreamPublish> }
  | { readonly _tag: "unpublish"; readonly payload: PayloadOf<typeof VoiceStreamUnpublish> }

const TAGS: ReadonlyMap<string, VoiceChange["_tag"]> = new Map([
  [VoiceParticipantJoin.type, "join"],
  [VoiceParticipantLeave.type, "leave"],
  [VoiceParticipantUpdate.type, "update"],
  [VoiceStreamPublish.type, "publish"],
  [VoiceStreamUnpublish.type, "unpublish"]
])

/** The voice change a published event makes, if it is one of the projection's events. */
export const voiceChange = (event: EventDefinition, payload: unknown): VoiceChange | undefined => {
  const tag = TAGS.get(event.type)
  // The payload was decoded or typed by this very event's schema.
  return tag === undefined ? undefined : ({ _tag: tag, payload } as VoiceChange)
}

/** A participant the projection dropped: announce one unpublish per stream, then the leave. */
export interface VoiceRemoval {
  readonly guildId: GuildId
  readonly channelId: ChannelId
  readonly userId: UserId
  readonly identity: string
  readonly streams: ReadonlyArray<VoiceStreamKind>
}

export interface VoiceLimits {
  readonly maxChannels: number
  readonly maxParticipantsPerChannel: number
  readonly participantLifetime: Duration.Duration
}

export interface VoiceParticipantsShape {
  /**
   * Applies a published voice event to the projection, before it is delivered. Refuses a join of a
   * new participant (or into a new channel) over the caps; then the event must not be delivered.
   */
  readonly apply: (change: VoiceChange) => Effect.Effect<void, PublishRefused>
  /** Drops the expired participants of one channel, or of every channel when none is given. */
  readonly expire: (channel?: {
    readonly guildId: GuildId
    readonly channelId: ChannelId
  }) => Effect.Effect<ReadonlyArray<VoiceRemoval>>
  /** Drops a user from every voice channel (of one guild, when given): last connection gone, kick, ban. */
  readonly removeUser: (userId: UserId, guildId?: GuildId) => Effect.Effect<ReadonlyArray<VoiceRemoval>>
  /** The channel's participants, by `joined_at_unix` then `identity` (empty for an unknown channel). */
  readonly snapshot: (
    guildId: GuildId,
    channelId: ChannelId
  ) => Effect.Effect<ReadonlyArray<VoiceParticipant>>
}

export class VoiceParticipants extends Context.Tag("filament/VoiceParticipants")<
  VoiceParticipants,
  VoiceParticipantsShape
>() {}

interface Entry {
  participant: VoiceParticipant
  readonly streams: Set<VoiceStreamKind>
  /** Clock millis at which the participant expires unless refreshed by a join or update. */
  expiresAt: number
}

interface Channel {
  readonly guildId: GuildId
  readonly channelId: ChannelId
  readonly participants: Map<UserId, Entry>
}

/**
 * The order in which a removal's streams are announced (one unpublish each), shared with every store
 * behind `VoiceParticipants` so a removal reads the same whichever store made it.
 */
const STREAM_ORDER: ReadonlyArray<VoiceStreamKind> = ["microphone", "camera", "screen_share"]

/** The streams `isPublished` holds, in announcement order. */
export const orderedStreams = (isPublished: (stream: VoiceStreamKind) => boolean): Array<VoiceStreamKind> =>
  STREAM_ORDER.filter(isPublished)

/** Snapshot order: by `joined_at_unix`, then `identity`. */
export const byJoinThenIdentity = (a: VoiceParticipant, b: VoiceParticipant): number =>
  a.joined_at_unix - b.joined_at_unix || (a.identity < b.identity ? -1 : a.identity > b.identity ? 1 : 0)

const removalOf = (channel: Channel, entry: Entry): VoiceRemoval => ({
  guildId: channel.guildId,
  channelId: channel.channelId,
  userId: entry.participant.user_id,
  identity: entry.participant.identity,
  streams: orderedStreams((stream) => entry.streams.has(stream))
})

/** The in-memory projection of one node; time is the Effect `Clock` of the caller. */
export const makeMemory = (limits: VoiceLimits): VoiceParticipantsShape => {
  const channels = new Map<ChannelKey, Channel>()
  /** User -> the channels they take part in, so removing a user never scans every channel. */
  const byUser = new Map<UserId, Set<ChannelKey>>()
  const lifetime = Duration.toMillis(limits.participantLifetime)

  const dropFrom = (key: ChannelKey, channel: Channel, userId: UserId, removals: Array<VoiceRemoval>) => {
    const entry = channel.participants.get(userId)
    if (entry === undefined) return
    channel.participants.delete(userId)
    if (channel.participants.size === 0) channels.delete(key)
    const keys = byUser.get(userId)
    keys?.delete(key)
    if (keys?.size === 0) byUser.delete(userId)
    removals.push(removalOf(channel, entry))
  }

  const expireChannel = (key: ChannelKey, channel: Channel, now: number, removals: Array<VoiceRemoval>) => {
    for (const [userId, entry] of channel.participants) {
      if (entry.expiresAt <= now) dropFrom(key, channel, userId, removals)
    }
  }

  const entryOf = (payload: {
    readonly guild_id: GuildId
    readonly channel_id: ChannelId
    readonly user_id: UserId
  }) => channels.get(channelKey(payload.guild_id, payload.channel_id))?.participants.get(payload.user_id)

  const join = (payload: PayloadOf<typeof VoiceParticipantJoin>, now: number) => {
    const key = channelKey(payload.guild_id, payload.channel_id)
    let channel = channels.get(key)
    const userId = payload.participant.user_id
    if (channel === undefined) {
      if (channels.size >= limits.maxChannels) {
        return new PublishRefused({
          reason: "voice_channel_limit",
          limit: limits.maxChannels,
          detail: `${limits.maxChannels} voice channels are tracked already`
        })
      }
      channel = { guildId: payload.guild_id, channelId: payload.channel_id, participants: new Map() }
      channels.set(key, channel)
    } else if (
      !channel.participants.has(userId) &&
      channel.participants.size >= limits.maxParticipantsPerChannel
    ) {
      return new PublishRefused({
        reason: "voice_participant_limit",
        limit: limits.maxParticipantsPerChannel,
        detail: `the voice channel has ${limits.maxParticipantsPerChannel} participants already`
      })
    }
    // A re-join replaces the participant (fresh state, no streams), as a new token does.
    channel.participants.set(userId, {
      participant: payload.participant,
      streams: new Set(),
      expiresAt: now + lifetime
    })
    let keys = byUser.get(userId)
    if (keys === undefined) byUser.set(userId, (keys = new Set()))
    keys.add(key)
    return undefined
  }

  return {
    apply: (change) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => {
        switch (change._tag) {
          case "join": {
            const refused = join(change.payload, now)
            return refused === undefined ? Effect.void : Effect.fail(refused)
          }
          case "leave":
            return Effect.sync(() => {
              const key = channelKey(change.payload.guild_id, change.payload.channel_id)
              const channel = channels.get(key)
              if (channel !== undefined) dropFrom(key, channel, change.payload.user_id, [])
            })
          case "update":
            return Effect.sync(() => {
              const entry = entryOf(change.payload)
              if (entry === undefined) return
              entry.participant = {
                ...entry.participant,
                ...change.payload.updated_fields,
                updated_at_unix: change.payload.updated_at_unix
              }
              entry.expiresAt = now + lifetime
            })
          case "publish":
            return Effect.sync(() => void entryOf(change.payload)?.streams.add(change.payload.stream))
          case "unpublish":
            return Effect.sync(() => void entryOf(change.payload)?.streams.delete(change.payload.stream))
        }
      }),
    expire: (target) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        const removals: Array<VoiceRemoval> = []
        if (target !== undefined) {
          const key = channelKey(target.guildId, target.channelId)
          const channel = channels.get(key)
          if (channel !== undefined) expireChannel(key, channel, now, removals)
        } else {
          for (const [key, channel] of channels) expireChannel(key, channel, now, removals)
        }
        return removals
      }),
    removeUser: (userId, guildId) =>
      Effect.sync(() => {
        const removals: Array<VoiceRemoval> = []
        for (const key of [...(byUser.get(userId) ?? [])]) {
          const channel = channels.get(key)
          if (channel !== undefined && (guildId === undefined || channel.guildId === guildId))
            dropFrom(key, channel, userId, removals)
        }
        return removals
      }),
    snapshot: (guildId, channelId) =>
      Effect.sync(() => {
        const channel = channels.get(channelKey(guildId, channelId))
        if (channel === undefined) return []
        return [...channel.participants.values()].map((entry) => entry.participant).sort(byJoinThenIdentity)
      })
  }
}

/** The voice caps from the configuration. */
export const limitsOf = (config: GatewayConfigShape): VoiceLimits => ({
  maxChannels: config.maxVoiceChannels,
  maxParticipantsPerChannel: config.maxVoiceParticipantsPerChannel,
  participantLifetime: config.voiceParticipantLifetime
})

/** The in-memory projection (one node). */
export const layerMemory: Layer.Layer<VoiceParticipants, never, GatewayConfig> = Layer.effect(
  VoiceParticipants,
  Effect.map(GatewayConfig, (config) => makeMemory(limitsOf(config)))
)
