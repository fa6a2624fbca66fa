/**
 * In-memory VoiceParticipants under TestClock: events applied in order, the caps, lifetime refresh,
 * expiry per channel or everywhere, removal per user (and guild), snapshot order.
 */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Either, TestClock } from "effect"
import type { ChannelId, GuildId, UserId } from "../../src/protocol/Ids.js"
import type { VoiceParticipant } from "../../src/protocol/Shapes.js"
import * as Voice from "../../src/server/chat/Voice.js"

const G1 = "G1" as GuildId
const G2 = "G2" as GuildId
const C1 = "C1" as ChannelId
const C2 = "C2" as ChannelId

const participant = (user: string, channel: ChannelId, joined: number): VoiceParticipant => ({
  user_id: user as UserId,
  identity: `u.${user}.${channel}`,
  joined_at_unix: joined,
  updated_at_unix: joined,
  is_muted: false,
  is_deafened: false,
  is_speaking: false,
  is_video_enabled: false,
  is_screen_share_enabled: false
})

const join = (guild: GuildId, channel: ChannelId, user: string, joined = 100): Voice.VoiceChange => ({
  _tag: "join",
  payload: { guild_id: guild, channel_id: channel, participant: participant(user, channel, joined) }
})

const update = (
  guild: GuildId,
  channel: ChannelId,
  user: string,
  fields: { readonly is_muted?: boolean; readonly is_speaking?: boolean },
  at: number
): Voice.VoiceChange => ({
  _tag: "update",
  payload: {
    guild_id: guild,
    channel_id: channel,
    user_id: user as UserId,
    identity: `u.${user}.${channel}`,
    updated_fields: fields,
    updated_at_unix: at
  }
})

const stream = (
  tag: "publish" | "unpublish",
  guild: GuildId,
  channel: ChannelId,
  user: string,
  kind: "microphone" | "camera" | "screen_share"
) =>
  ({
    _tag: tag,
    payload: {
      guild_id: guild,
      channel_id: channel,
      user_id: user as UserId,
      identity: `u.${user}.${channel}`,
      stream: kind,
      ...(tag === "publish" ? { published_at_unix: 1 } : { unpublished_at_unix: 1 })
    }
  }) as Voice.VoiceChange

const make = () =>
  Voice.makeMemory({
    maxChannels: 2,
    maxParticipantsPerChannel: 2,
    participantLifetime: Duration.seconds(60)
  })

describe("VoiceParticipants (memory)", () => {
  it.effect("applies joins, updates, streams and leaves; snapshot by joined_at then identity", () =>
    Effect.gen(function* () {
      const voice = make()
      yield* voice.apply(join(G1, C1, "B", 100))
      yield* voice.apply(join(G1, C1, "A", 100))
      yield* voice.apply(update(G1, C1, "A", { is_muted: true }, 150))
      // An update for someone who is not a participant changes nothing.
      yield* voice.apply(update(G1, C1, "Z", { is_muted: true }, 150))
      const snapshot = yield* voice.snapshot(G1, C1)
      expect(snapshot.map((p) => p.identity)).toEqual(["u.A.C1", "u.B.C1"])
      expect(snapshot[0]).toMatchObject({ is_muted: true, updated_at_unix: 150 })
      yield* voice.apply(stream("publish", G1, C1, "B", "camera"))
      yield* voice.apply(stream("publish", G1, C1, "B", "microphone"))
      yield* voice.apply(stream("publish", G1, C1, "B", "screen_share"))
      yield* voice.apply(stream("unpublish", G1, C1, "B", "screen_share"))
      expect(yield* voice.removeUser("B" as UserId)).toEqual([
        { guildId: G1, channelId: C1, userId: "B", identity: "u.B.C1", streams: ["microphone", "camera"] }
      ])
      yield* voice.apply({
        _tag: "leave",
        payload: { guild_id: G1, channel_id: C1, user_id: "A" as UserId, identity: "u.A.C1", left_at_unix: 1 }
      })
      expect(yield* voice.snapshot(G1, C1)).toEqual([])
    })
  )

  it.effect("caps: a new participant or a new channel over the cap is refused; a re-join is not", () =>
    Effect.gen(function* () {
      const voice = make()
      yield* voice.apply(join(G1, C1, "A"))
      yield* voice.apply(join(G1, C1, "B"))
      const third = yield* Effect.either(voice.apply(join(G1, C1, "C")))
      expect(Either.getLeft(third).pipe((e) => e._tag === "Some" && e.value.reason)).toBe(
        "voice_participant_limit"
      )
      yield* voice.apply(join(G1, C1, "A", 200))
      yield* voice.apply(join(G2, C2, "C"))
      const channel = yield* Effect.either(voice.apply(join(G2, C1, "D")))
      expect(Either.getLeft(channel).pipe((e) => e._tag === "Some" && e.value.reason)).toBe(
        "voice_channel_limit"
      )
      // The last participant of a channel leaving frees the channel slot.
      yield* voice.removeUser("C" as UserId, G2)
      yield* voice.apply(join(G2, C1, "D"))
    })
  )

  it.effect(
    "expiry: a participant expires a lifetime after its last join / update, per channel or everywhere",
    () =>
      Effect.gen(function* () {
        const voice = make()
        yield* voice.apply(join(G1, C1, "A"))
        yield* voice.apply(join(G1, C2, "B"))
        yield* TestClock.adjust(Duration.seconds(30))
        yield* voice.apply(update(G1, C1, "A", { is_speaking: true }, 130))
        yield* TestClock.adjust(Duration.seconds(29))
        expect(yield* voice.expire()).toEqual([])
        yield* TestClock.adjust(Duration.seconds(1))
        // At 60 s only B (joined at 0) is due; the per-channel expiry of C1 does not touch it.
        expect(yield* voice.expire({ guildId: G1, channelId: C1 })).toEqual([])
        expect((yield* voice.expire()).map((removal) => removal.userId)).toEqual(["B"])
        yield* TestClock.adjust(Duration.seconds(30))
        expect(
          (yield* voice.expire({ guildId: G1, channelId: C1 })).map((removal) => removal.userId)
        ).toEqual(["A"])
      })
  )

  it.effect("removeUser limited to a guild leaves the user's other guilds alone", () =>
    Effect.gen(function* () {
      const voice = make()
      yield* voice.apply(join(G1, C1, "A"))
      yield* voice.apply(join(G2, C2, "A"))
      expect((yield* voice.removeUser("A" as UserId, G1)).map((r) => r.guildId)).toEqual([G1])
      expect((yield* voice.snapshot(G2, C2)).length).toBe(1)
    })
  )
})
