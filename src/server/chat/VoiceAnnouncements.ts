/**
 * Voice announcements of the chat hooks: the projection follows each voice event before it is
 * delivered (a join over the caps is refused), and what expires or is removed is announced.
 */
import { Clock, Effect } from "effect"
import {
  VoiceParticipantJoin,
  VoiceParticipantLeave,
  VoiceStreamUnpublish
} from "../../protocol/events/voice.js"
import type { Publisher } from "../core/Seams.js"
import type { GatewayMetricsShape } from "../Metrics.js"
import { announce } from "./PresenceAnnouncements.js"
import type { VoiceChange, VoiceParticipantsShape, VoiceRemoval } from "./Voice.js"

export const unixSeconds = Effect.map(Clock.currentTimeMillis, (millis) =>
  Math.max(1, Math.floor(millis / 1000))
)

export const makeVoiceAnnouncements = (metrics: GatewayMetricsShape, voice: VoiceParticipantsShape) => {
  /** As the original: one unpublish per published stream, then the leave, all with one timestamp. */
  const announceRemovals = (publisher: Publisher, removals: ReadonlyArray<VoiceRemoval>) =>
    Effect.gen(function* () {
      if (removals.length === 0) return
      const at = yield* unixSeconds
      for (const removal of removals) {
        const who = {
          guild_id: removal.guildId,
          channel_id: removal.channelId,
          user_id: removal.userId,
          identity: removal.identity
        }
        for (const stream of removal.streams) {
          yield* announce(
            publisher.publish(VoiceStreamUnpublish, { ...who, stream, unpublished_at_unix: at })
          )
        }
        yield* announce(publisher.publish(VoiceParticipantLeave, { ...who, left_at_unix: at }))
      }
    })

  /** The projection follows a voice event before it is delivered; a join over the caps is refused. */
  const applyVoice = (publisher: Publisher, change: VoiceChange) =>
    Effect.gen(function* () {
      if (change._tag === "join") {
        const { channel_id: channelId, guild_id: guildId } = change.payload
        // The original prunes expired participants before every join: the expiries go out first.
        yield* announceRemovals(publisher, yield* voice.expire({ guildId, channelId }))
      }
      yield* voice.apply(change).pipe(
        Effect.tapError((refused) =>
          Effect.zipRight(
            Effect.sync(() => metrics.voicePublishRefused(refused.reason)),
            Effect.logWarning(`gateway.voice.refused: ${refused.reason}`).pipe(
              Effect.annotateLogs({ event_type: VoiceParticipantJoin.type, detail: refused.detail })
            )
          )
        )
      )
    })

  const sweep = (publisher: Publisher) =>
    Effect.flatMap(voice.expire(), (removals) => announceRemovals(publisher, removals)).pipe(
      Effect.catchAllCause((cause) => Effect.logError("gateway.voice_sweep.failed", cause))
    )

  return { announceRemovals, applyVoice, sweep }
}
