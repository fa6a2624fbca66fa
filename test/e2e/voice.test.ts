/**
 * The voice participant projection over real sockets (docs/PROTOCOL.md, Voice snapshots): snapshots on
 * every authorized subscribe, the projection following published voice events, expiry (lazily on
 * subscribe and join, and by the one periodic sweep, driven by TestClock), the caps (409, counted,
 * nothing delivered) and the cleanup when a participant's last connection goes.
 */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, TestClock } from "effect"
import { awaitSleeps, newId, publishHttp, type Harness } from "../server/harness.js"
import {
  BASE_UNIX,
  expectNextIsMarker,
  metricDelta,
  publishOk,
  startChatGateway,
  subscribeInOrder
} from "./chat.js"

const participantOf = (userId: string, guildId: string, channelId: string, joinedAt = BASE_UNIX) => ({
  user_id: userId,
  identity: `u.${userId}.${guildId}.${channelId}`,
  joined_at_unix: joinedAt,
  updated_at_unix: joinedAt,
  is_muted: false,
  is_deafened: false,
  is_speaking: false,
  is_video_enabled: true,
  is_screen_share_enabled: false
})

const join = (harness: Harness, guildId: string, channelId: string, userId: string, joinedAt = BASE_UNIX) =>
  publishOk(harness, "voice_participant_join", {
    guild_id: guildId,
    channel_id: channelId,
    participant: participantOf(userId, guildId, channelId, joinedAt)
  })

const streamEvent = (
  t: "voice_stream_publish" | "voice_stream_unpublish",
  guildId: string,
  channelId: string,
  userId: string,
  stream: string
) => ({
  t,
  d: {
    guild_id: guildId,
    channel_id: channelId,
    user_id: userId,
    identity: `u.${userId}.${guildId}.${channelId}`,
    stream,
    [t === "voice_stream_publish" ? "published_at_unix" : "unpublished_at_unix"]: BASE_UNIX + 1
  }
})

/** No pings or token expiry while the test moves the clock by minutes. */
const quietHeartbeat = { pingInterval: Duration.days(1), pongTimeout: Duration.days(1) }

describe("voice snapshots", () => {
  it.scoped("scenario 13 through the publish API", () =>
    Effect.gen(function* () {
      const harness = yield* startChatGateway()
      const [guild, voice, elsewhere, elsewhereChannel] = [newId(), newId(), newId(), newId()]
      const [owner, member, outsider] = [newId(), newId(), newId()]
      const repairs = yield* metricDelta(harness, "filament_voice_sync_repairs_total", {
        reason: "subscribe"
      })
      const ownerClient = yield* harness.connectReady(owner, { [guild]: "*" })
      const memberClient = yield* harness.connectReady(member, { [guild]: "*" })
      const outsiderClient = yield* harness.connectReady(outsider, { [elsewhere]: "*" })
      expect(
        (yield* subscribeInOrder(ownerClient, guild, voice, { online: true })).voiceSync.d["participants"]
      ).toEqual([])
      expect(
        (yield* subscribeInOrder(memberClient, guild, voice, { online: true })).voiceSync.d["participants"]
      ).toEqual([])
      yield* ownerClient.nextOfType("presence_update")
      // The outsider's subscribe is ignored: its next frames are those of an allowed subscribe.
      outsiderClient.send({ v: 1, t: "subscribe", d: { guild_id: guild, channel_id: voice } })
      yield* subscribeInOrder(outsiderClient, elsewhere, elsewhereChannel, { online: true })

      const participant = participantOf(owner, guild, voice)
      expect((yield* join(harness, guild, voice, owner)).recipients).toBe(2)
      for (const client of [ownerClient, memberClient]) {
        expect((yield* client.nextOfType("voice_participant_join")).d).toEqual({
          guild_id: guild,
          channel_id: voice,
          participant
        })
      }
      for (const stream of ["microphone", "camera"]) {
        const event = streamEvent("voice_stream_publish", guild, voice, owner, stream)
        yield* publishOk(harness, event.t, event.d)
        for (const client of [ownerClient, memberClient]) {
          expect((yield* client.nextOfType("voice_stream_publish")).d).toEqual(event.d)
        }
      }
      const update = {
        guild_id: guild,
        channel_id: voice,
        user_id: owner,
        identity: participant.identity,
        updated_fields: { is_muted: true, is_deafened: true },
        updated_at_unix: BASE_UNIX + 5
      }
      yield* publishOk(harness, "voice_participant_update", update)
      for (const client of [ownerClient, memberClient]) {
        expect((yield* client.nextOfType("voice_participant_update")).d).toEqual(update)
      }

      // A late subscriber's snapshot shows the participant as the events left it.
      const lateClient = yield* harness.connectReady(member, { [guild]: "*" })
      const late = yield* subscribeInOrder(lateClient, guild, voice, { online: false })
      expect(late.voiceSync.d["participants"]).toEqual([
        { ...participant, is_muted: true, is_deafened: true, updated_at_unix: BASE_UNIX + 5 }
      ])

      // The owner leaves: unpublish both streams, then leave; both member sockets see all of it.
      const leaving = [
        streamEvent("voice_stream_unpublish", guild, voice, owner, "microphone"),
        streamEvent("voice_stream_unpublish", guild, voice, owner, "camera"),
        {
          t: "voice_participant_leave",
          d: {
            guild_id: guild,
            channel_id: voice,
            user_id: owner,
            identity: participant.identity,
            left_at_unix: BASE_UNIX + 9
          }
        }
      ]
      for (const event of leaving) yield* publishOk(harness, event.t, event.d)
      for (const client of [memberClient, lateClient]) {
        for (const event of leaving) expect(yield* client.nextOfType(event.t)).toEqual({ v: 1, ...event })
      }
      const after = yield* harness.connectReady(newId(), { [guild]: "*" })
      expect(
        (yield* subscribeInOrder(after, guild, voice, { online: true })).voiceSync.d["participants"]
      ).toEqual([])

      // The outsider never saw a voice event of the guild; five authorized subscribes, five snapshots.
      expect(
        outsiderClient.frames.filter((frame) => frame.t.startsWith("voice_") && frame.d["guild_id"] === guild)
      ).toEqual([])
      expect(yield* repairs).toBe(5)
    })
  )

  it.scoped(
    "the sweep expires a participant TTL after its last join / update: unpublish per stream, then leave",
    () =>
      Effect.gen(function* () {
        const harness = yield* startChatGateway({
          ...quietHeartbeat,
          voiceParticipantLifetime: Duration.seconds(60),
          voiceSweep: Duration.seconds(10)
        })
        const [guild, voice, user] = [newId(), newId(), newId()]
        const watcher = yield* harness.connectReady(newId(), { [guild]: "*" })
        yield* subscribeInOrder(watcher, guild, voice, { online: true })
        yield* join(harness, guild, voice, user)
        yield* watcher.nextOfType("voice_participant_join")
        const camera = streamEvent("voice_stream_publish", guild, voice, user, "camera")
        yield* publishOk(harness, camera.t, camera.d)
        yield* watcher.nextOfType("voice_stream_publish")

        // 50 s in, an update refreshes the lifetime to 110 s.
        yield* awaitSleeps(2)
        yield* TestClock.adjust(Duration.seconds(50))
        yield* publishOk(harness, "voice_participant_update", {
          guild_id: guild,
          channel_id: voice,
          user_id: user,
          identity: `u.${user}.${guild}.${voice}`,
          updated_fields: { is_speaking: true },
          updated_at_unix: BASE_UNIX + 50
        })
        yield* watcher.nextOfType("voice_participant_update")
        yield* TestClock.adjust(Duration.seconds(50))
        // 100 s: the sweeps at 60..100 s found nothing expired.
        yield* expectNextIsMarker(harness, guild, [watcher])

        yield* TestClock.adjust(Duration.seconds(10))
        const unpublish = yield* watcher.nextOfType("voice_stream_unpublish")
        const leave = yield* watcher.nextOfType("voice_participant_leave")
        expect(unpublish.d).toMatchObject({
          guild_id: guild,
          channel_id: voice,
          user_id: user,
          stream: "camera"
        })
        expect(leave.d).toEqual({
          guild_id: guild,
          channel_id: voice,
          user_id: user,
          identity: `u.${user}.${guild}.${voice}`,
          left_at_unix: unpublish.d["unpublished_at_unix"]
        })
        yield* expectNextIsMarker(harness, guild, [watcher])
        const fresh = yield* harness.connectReady(newId(), { [guild]: "*" })
        expect(
          (yield* subscribeInOrder(fresh, guild, voice, { online: true })).voiceSync.d["participants"]
        ).toEqual([])
      })
  )

  it.scoped("expiry is also pruned lazily: on subscribe before the snapshot, on join before the join", () =>
    Effect.gen(function* () {
      // A sweep that never comes within the test: only the lazy pruning can act.
      const harness = yield* startChatGateway({
        ...quietHeartbeat,
        voiceParticipantLifetime: Duration.seconds(60),
        voiceSweep: Duration.days(1)
      })
      const [guild, voice, first, second] = [newId(), newId(), newId(), newId()]
      yield* join(harness, guild, voice, first)
      const mic = streamEvent("voice_stream_publish", guild, voice, first, "microphone")
      yield* publishOk(harness, mic.t, mic.d)
      yield* TestClock.adjust(Duration.seconds(61))
      const client = yield* harness.connectReady(newId(), { [guild]: "*" })
      const { expired, voiceSync } = yield* subscribeInOrder(client, guild, voice, {
        online: true,
        expired: ["voice_stream_unpublish", "voice_participant_leave"]
      })
      expect(expired.map((frame) => frame.d["user_id"])).toEqual([first, first])
      expect(voiceSync.d["participants"]).toEqual([])

      yield* join(harness, guild, voice, second)
      yield* client.nextOfType("voice_participant_join")
      yield* TestClock.adjust(Duration.seconds(61))
      yield* join(harness, guild, voice, first)
      expect((yield* client.nextOfType("voice_participant_leave")).d["user_id"]).toBe(second)
      expect(
        ((yield* client.nextOfType("voice_participant_join")).d["participant"] as { user_id: string }).user_id
      ).toBe(first)
    })
  )

  it.scoped("over the caps a join is refused with 409, counted, and delivered to nobody", () =>
    Effect.gen(function* () {
      const harness = yield* startChatGateway({ maxVoiceChannels: 1, maxVoiceParticipantsPerChannel: 2 })
      const [guild, voice, otherVoice] = [newId(), newId(), newId()]
      const [a, b, c] = [newId(), newId(), newId()]
      const watcher = yield* harness.connectReady(newId(), { [guild]: "*" })
      yield* subscribeInOrder(watcher, guild, voice, { online: true })
      yield* subscribeInOrder(watcher, guild, otherVoice, { online: false })
      const participantsRefused = yield* metricDelta(harness, "filament_voice_publish_refused_total", {
        reason: "voice_participant_limit"
      })
      const channelsRefused = yield* metricDelta(harness, "filament_voice_publish_refused_total", {
        reason: "voice_channel_limit"
      })
      yield* join(harness, guild, voice, a)
      yield* join(harness, guild, voice, b)
      yield* watcher.nextOfType("voice_participant_join")
      yield* watcher.nextOfType("voice_participant_join")

      const overParticipants = yield* publishHttp(harness, {
        t: "voice_participant_join",
        d: { guild_id: guild, channel_id: voice, participant: participantOf(c, guild, voice) }
      })
      expect(overParticipants.status).toBe(409)
      expect(JSON.parse(overParticipants.body)).toMatchObject({ error: "voice_participant_limit", limit: 2 })
      const overChannels = yield* publishHttp(harness, {
        t: "voice_participant_join",
        d: { guild_id: guild, channel_id: otherVoice, participant: participantOf(c, guild, otherVoice) }
      })
      expect(overChannels.status).toBe(409)
      expect(JSON.parse(overChannels.body)).toMatchObject({ error: "voice_channel_limit", limit: 1 })
      expect(yield* participantsRefused).toBe(1)
      expect(yield* channelsRefused).toBe(1)
      yield* expectNextIsMarker(harness, guild, [watcher])

      // A participant already there may join again (a new token); the snapshot still has two.
      yield* join(harness, guild, voice, a, BASE_UNIX + 30)
      yield* watcher.nextOfType("voice_participant_join")
      const late = yield* harness.connectReady(newId(), { [guild]: "*" })
      const { voiceSync } = yield* subscribeInOrder(late, guild, voice, { online: true })
      // Sorted by joined_at_unix: b (BASE) before a (BASE + 30).
      expect((voiceSync.d["participants"] as Array<{ user_id: string }>).map((p) => p.user_id)).toEqual([
        b,
        a
      ])
    })
  )

  it.scoped(
    "when a participant's last connection closes they leave every voice channel, then go offline",
    () =>
      Effect.gen(function* () {
        const harness = yield* startChatGateway()
        const [guild, voice, user] = [newId(), newId(), newId()]
        const watcher = yield* harness.connectReady(newId(), { [guild]: "*" })
        yield* subscribeInOrder(watcher, guild, voice, { online: true })
        const participant = yield* harness.connectReady(user, { [guild]: "*" })
        yield* subscribeInOrder(participant, guild, voice, { online: true })
        yield* watcher.nextOfType("presence_update")
        yield* join(harness, guild, voice, user)
        const screen = streamEvent("voice_stream_publish", guild, voice, user, "screen_share")
        yield* publishOk(harness, screen.t, screen.d)
        yield* watcher.nextOfType("voice_participant_join")
        yield* watcher.nextOfType("voice_stream_publish")

        participant.socket.close()
        expect((yield* watcher.nextOfType("voice_stream_unpublish")).d["stream"]).toBe("screen_share")
        expect((yield* watcher.nextOfType("voice_participant_leave")).d["user_id"]).toBe(user)
        expect((yield* watcher.nextOfType("presence_update")).d).toEqual({
          guild_id: guild,
          user_id: user,
          status: "offline"
        })
      })
  )
})
