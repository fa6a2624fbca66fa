/**
 * The voice participant projection across nodes with a real `redis-server` and with a real
 * three-master Redis Cluster: a join, a stream and an update published on different nodes make one
 * snapshot; the caps are the cluster's; an expiry is announced once, by the node whose lazy prune
 * removed it (TestClock).
 */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, TestClock } from "effect"
import {
  VoiceParticipantJoin,
  VoiceParticipantLeave,
  VoiceParticipantUpdate,
  VoiceStreamPublish
} from "../../src/protocol/events/voice.js"
import { BASE_UNIX, newId, publishHttp, typed, type TestClient } from "../server/harness.js"
import { eventuallyEffect } from "../deadline.js"
import { expectMarkerNext, startClusterNode, subscribe, summedMetric } from "./chat.js"
import { BACKENDS, hasRedisServer } from "./redis.js"

const participantOf = (userId: string, guildId: string, channelId: string) => ({
  user_id: userId,
  identity: `u.${userId}.${guildId}.${channelId}`,
  joined_at_unix: BASE_UNIX,
  updated_at_unix: BASE_UNIX,
  is_muted: false,
  is_deafened: false,
  is_speaking: false,
  is_video_enabled: true,
  is_screen_share_enabled: false
})

/** Only voice moves the clock here: no pings, no token expiry, no sweeps, no node reaping. */
const quiet = {
  pingInterval: Duration.days(1),
  pongTimeout: Duration.days(1),
  voiceSweep: Duration.days(1),
  nodeTtl: Duration.days(1),
  voiceParticipantLifetime: Duration.seconds(60),
  maxVoiceParticipantsPerChannel: 1
}

const cameOnline = (clients: ReadonlyArray<TestClient>, user: string) =>
  Effect.forEach(
    clients,
    (client) =>
      Effect.map(client.next("presence online"), (frame) =>
        expect(frame).toMatchObject({ t: "presence_update", d: { user_id: user, status: "online" } })
      ),
    { discard: true }
  )

describe.skipIf(!hasRedisServer).each(BACKENDS)("cluster voice snapshots on $backend", ({ start }) => {
  it.scoped("one projection for the cluster: snapshot, caps and a single expiry announcement", () =>
    Effect.gen(function* () {
      const redis = yield* start
      const a = yield* startClusterNode(redis, quiet)
      const b = yield* startClusterNode(redis, quiet)
      const [guild, voice] = [newId(), newId()]
      const [speaker, latecomer] = [newId(), newId()]
      const access = { [guild]: "*" as const }
      const watcher = yield* b.connectReady(newId(), access)
      yield* subscribe(watcher, guild, voice)
      yield* expectMarkerNext(a, guild, voice, [watcher]) // presence of the watcher is settled

      // Join and camera on node A, an update on node B.
      yield* a.gateway.publish(
        VoiceParticipantJoin,
        typed(VoiceParticipantJoin, {
          guild_id: guild,
          channel_id: voice,
          participant: participantOf(speaker, guild, voice)
        })
      )
      yield* a.gateway.publish(
        VoiceStreamPublish,
        typed(VoiceStreamPublish, {
          guild_id: guild,
          channel_id: voice,
          user_id: speaker,
          identity: `u.${speaker}.${guild}.${voice}`,
          stream: "camera",
          published_at_unix: BASE_UNIX + 1
        })
      )
      // Frames of different nodes have no order between them: A's reach the watcher first, then B's.
      for (const t of ["voice_participant_join", "voice_stream_publish"]) {
        expect((yield* watcher.next(t)).t).toBe(t)
      }
      yield* b.gateway.publish(
        VoiceParticipantUpdate,
        typed(VoiceParticipantUpdate, {
          guild_id: guild,
          channel_id: voice,
          user_id: speaker,
          identity: `u.${speaker}.${guild}.${voice}`,
          updated_fields: { is_speaking: true },
          updated_at_unix: BASE_UNIX + 2
        })
      )
      expect((yield* watcher.next("voice_participant_update")).t).toBe("voice_participant_update")

      // A subscriber on node B gets the cluster's snapshot.
      const secondUser = newId()
      const second = yield* b.connectReady(secondUser, access)
      const frames = yield* subscribe(second, guild, voice)
      yield* cameOnline([watcher], secondUser)
      expect(frames[frames.length - 1]!.d["participants"]).toEqual([
        { ...participantOf(speaker, guild, voice), is_speaking: true, updated_at_unix: BASE_UNIX + 2 }
      ])
      yield* expectMarkerNext(a, guild, voice, [watcher, second])

      // The channel is full for the cluster: a join on node B is refused, nothing delivered.
      const refused = yield* publishHttp(b, {
        t: "voice_participant_join",
        d: { guild_id: guild, channel_id: voice, participant: participantOf(latecomer, guild, voice) }
      })
      expect(refused.status).toBe(409)
      expect(JSON.parse(refused.body)).toMatchObject({ error: "voice_participant_limit" })
      yield* expectMarkerNext(b, guild, voice, [watcher, second])

      // Past the lifetime, the next subscribe on node A prunes it: unpublish, leave, once.
      yield* TestClock.adjust(Duration.seconds(61))
      const thirdUser = newId()
      const third = yield* a.connectReady(thirdUser, access)
      const pruned = yield* subscribe(third, guild, voice)
      expect(pruned[pruned.length - 1]!.d["participants"]).toEqual([])
      // The subscriber's own presence goes out first (before its ack), then the prune (after it).
      yield* cameOnline([watcher, second], thirdUser)
      for (const client of [watcher, second]) {
        expect((yield* client.next("unpublish")).d).toMatchObject({ user_id: speaker, stream: "camera" })
        expect((yield* client.next("leave")).d).toMatchObject({ user_id: speaker })
      }
      // A subscribe on node B finds nothing left to prune: no second announcement.
      const fourthUser = newId()
      const fourth = yield* b.connectReady(fourthUser, access)
      yield* subscribe(fourth, guild, voice)
      yield* cameOnline([watcher, second], fourthUser)
      yield* expectMarkerNext(a, guild, voice, [watcher, second])
      yield* expectMarkerNext(b, guild, voice, [watcher, second])
    })
  )
  it.scoped(
    "Redis (or the guild's master) restarted empty: within one check period each node writes back the entries it wrote last, the later copy winning; snapshots and leaves are right again",
    () =>
      Effect.gen(function* () {
        const redis = yield* start
        const config = { ...quiet, nodeTtl: Duration.seconds(3), maxVoiceParticipantsPerChannel: 5 }
        const a = yield* startClusterNode(redis, config)
        const b = yield* startClusterNode(redis, config)
        const [guild, voice] = [newId(), newId()]
        const [speaker, listener] = [newId(), newId()]
        const access = { [guild]: "*" as const }
        const watcher = yield* b.connectReady(newId(), access)
        yield* subscribe(watcher, guild, voice)
        yield* expectMarkerNext(a, guild, voice, [watcher])
        const identity = (user: string) => `u.${user}.${guild}.${voice}`

        // The speaker joins and turns the camera on through node A; node B updates it later and
        // lets the listener join.
        yield* a.gateway.publish(
          VoiceParticipantJoin,
          typed(VoiceParticipantJoin, {
            guild_id: guild,
            channel_id: voice,
            participant: participantOf(speaker, guild, voice)
          })
        )
        yield* a.gateway.publish(
          VoiceStreamPublish,
          typed(VoiceStreamPublish, {
            guild_id: guild,
            channel_id: voice,
            user_id: speaker,
            identity: identity(speaker),
            stream: "camera",
            published_at_unix: BASE_UNIX + 1
          })
        )
        for (const t of ["voice_participant_join", "voice_stream_publish"]) {
          expect((yield* watcher.next(t)).t).toBe(t)
        }
        yield* TestClock.adjust(Duration.millis(1))
        yield* b.gateway.publish(
          VoiceParticipantUpdate,
          typed(VoiceParticipantUpdate, {
            guild_id: guild,
            channel_id: voice,
            user_id: speaker,
            identity: identity(speaker),
            updated_fields: { is_speaking: true },
            updated_at_unix: BASE_UNIX + 2
          })
        )
        yield* b.gateway.publish(
          VoiceParticipantJoin,
          typed(VoiceParticipantJoin, {
            guild_id: guild,
            channel_id: voice,
            participant: participantOf(listener, guild, voice)
          })
        )
        for (const t of ["voice_participant_update", "voice_participant_join"]) {
          expect((yield* watcher.next(t)).t).toBe(t)
        }
        const projection = [
          { ...participantOf(speaker, guild, voice), is_speaking: true, updated_at_unix: BASE_UNIX + 2 },
          participantOf(listener, guild, voice)
        ].sort((x, y) => (x.identity < y.identity ? -1 : 1))
        const reasserted0 = yield* summedMetric([a, b], "filament_cluster_state_reasserted_total", {
          store: "voice"
        })

        yield* redis.restartEmpty(`filament:{g:${guild}}:voice:ch:${voice}`)
        for (const node of [a, b]) {
          yield* eventuallyEffect(
            "readyz 200 after the restart",
            Effect.map(node.http("/readyz"), (response) => response.status === 200)
          )
        }
        yield* TestClock.adjust(Duration.seconds(1))
        yield* eventuallyEffect(
          "both nodes wrote their entries back",
          Effect.map(
            summedMetric([a, b], "filament_cluster_state_reasserted_total", { store: "voice" }),
            (n) => n === reasserted0 + 2
          )
        )

        // A new subscriber's snapshot is the projection before the restart (node B's later copy of
        // the speaker over node A's own).
        const firstUser = newId()
        const first = yield* a.connectReady(firstUser, access)
        const frames = yield* subscribe(first, guild, voice)
        yield* cameOnline([watcher], firstUser)
        expect(frames[frames.length - 1]!.d["participants"]).toEqual(projection)

        // A leave through node A is announced once and leaves the listener alone in the snapshot.
        yield* a.gateway.publish(
          VoiceParticipantLeave,
          typed(VoiceParticipantLeave, {
            guild_id: guild,
            channel_id: voice,
            user_id: speaker,
            identity: identity(speaker),
            left_at_unix: BASE_UNIX + 3
          })
        )
        for (const client of [watcher, first]) {
          expect((yield* client.next("leave")).d).toMatchObject({ user_id: speaker })
        }
        const secondUser = newId()
        const second = yield* b.connectReady(secondUser, access)
        const later = yield* subscribe(second, guild, voice)
        yield* cameOnline([watcher, first], secondUser)
        expect(later[later.length - 1]!.d["participants"]).toEqual([participantOf(listener, guild, voice)])
        yield* expectMarkerNext(a, guild, voice, [watcher, first, second])

        // Node B's copy of the speaker goes at its next refresh (the leave went through node A), so a
        // second restart brings back the listener alone.
        yield* TestClock.adjust(Duration.seconds(1))
        yield* redis.restartEmpty(`filament:{g:${guild}}:voice:ch:${voice}`)
        for (const node of [a, b]) {
          yield* eventuallyEffect(
            "readyz 200 after the second restart",
            Effect.map(node.http("/readyz"), (response) => response.status === 200)
          )
        }
        yield* TestClock.adjust(Duration.seconds(1))
        yield* eventuallyEffect(
          "both nodes checked again",
          Effect.map(
            summedMetric([a, b], "filament_cluster_state_reasserted_total", { store: "voice" }),
            (n) => n === reasserted0 + 4
          )
        )
        const thirdUser = newId()
        const third = yield* a.connectReady(thirdUser, access)
        const last = yield* subscribe(third, guild, voice)
        yield* cameOnline([watcher, first, second], thirdUser)
        expect(last[last.length - 1]!.d["participants"]).toEqual([participantOf(listener, guild, voice)])
      })
  )
})
