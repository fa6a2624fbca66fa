/** Voice events: channel-scoped; the sync goes only to the subscribing connection. */
import { Schema } from "effect"
import { defineEvent } from "../EventDefinition.js"
import { ChannelId, GuildId, UserId } from "../Ids.js"
import {
  atLeastOneOf,
  MAX_VOICE_PARTICIPANTS,
  UnixSeconds,
  VoiceIdentity,
  VoiceParticipant,
  VoiceParticipants,
  VoiceStreamKind
} from "../Shapes.js"

export const VoiceParticipantSync = defineEvent({
  type: "voice_participant_sync",
  version: 1,
  scope: "channel",
  description:
    "Snapshot of a voice channel's participants, sent on every authorized subscribe. At most " +
    `${MAX_VOICE_PARTICIPANTS}; duplicates by \`identity\` are removed keeping the first.`,
  delivery: "Only the connection that subscribed, right after its `subscribed` ack (also for text channels).",
  payload: Schema.Struct({
    guild_id: GuildId,
    channel_id: ChannelId,
    participants: VoiceParticipants,
    synced_at_unix: UnixSeconds
  })
})

export const VoiceParticipantJoin = defineEvent({
  type: "voice_participant_join",
  version: 1,
  scope: "channel",
  description: "A participant joined the voice channel.",
  payload: Schema.Struct({ guild_id: GuildId, channel_id: ChannelId, participant: VoiceParticipant })
})

export const VoiceParticipantLeave = defineEvent({
  type: "voice_participant_leave",
  version: 1,
  scope: "channel",
  description: "A participant left the voice channel (after one unpublish per published stream).",
  payload: Schema.Struct({
    guild_id: GuildId,
    channel_id: ChannelId,
    user_id: UserId,
    identity: VoiceIdentity,
    left_at_unix: UnixSeconds
  })
})

export const VoiceParticipantUpdate = defineEvent({
  type: "voice_participant_update",
  version: 1,
  scope: "channel",
  description: "A participant's state changed; only the changed flags are present.",
  payload: Schema.Struct({
    guild_id: GuildId,
    channel_id: ChannelId,
    user_id: UserId,
    identity: VoiceIdentity,
    updated_fields: Schema.Struct({
      is_muted: Schema.optionalWith(Schema.Boolean, { exact: true }),
      is_deafened: Schema.optionalWith(Schema.Boolean, { exact: true }),
      is_speaking: Schema.optionalWith(Schema.Boolean, { exact: true }),
      is_video_enabled: Schema.optionalWith(Schema.Boolean, { exact: true }),
      is_screen_share_enabled: Schema.optionalWith(Schema.Boolean, { exact: true })
    }).pipe(
      atLeastOneOf("is_muted", "is_deafened", "is_speaking", "is_video_enabled", "is_screen_share_enabled")
    ),
    updated_at_unix: UnixSeconds
  })
})

const streamFields = {
  guild_id: GuildId,
  channel_id: ChannelId,
  user_id: UserId,
  identity: VoiceIdentity,
  stream: VoiceStreamKind
}

export const VoiceStreamPublish = defineEvent({
  type: "voice_stream_publish",
  version: 1,
  scope: "channel",
  description: "A participant started publishing a stream.",
  payload: Schema.Struct({ ...streamFields, published_at_unix: UnixSeconds })
})

export const VoiceStreamUnpublish = defineEvent({
  type: "voice_stream_unpublish",
  version: 1,
  scope: "channel",
  description: "A participant stopped publishing a stream.",
  payload: Schema.Struct({ ...streamFields, unpublished_at_unix: UnixSeconds })
})
