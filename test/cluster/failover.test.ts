/**
 * Presence, voice and the bus across a real Redis Cluster failover (three masters with a replica
 * each): the replica of the guild's shard is promoted, either after its master died with writes the
 * replica never received (asynchronous replication), or gracefully (`CLUSTER FAILOVER`). The nodes'
 * heartbeat (TestClock) is driven only once every Redis node agrees on the new master.
 */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, TestClock } from "effect"
import { VoiceParticipantJoin } from "../../src/protocol/events/voice.js"
import { BASE_UNIX, newId, typed, type Harness, type TestClient } from "../server/harness.js"
import { eventuallyEffect } from "../deadline.js"
import { expectMarkerNext, presenceOf, startClusterNode, subscribe, summedMetric } from "./chat.js"
import { hasRedisServer, startRedisClusterWithReplicas, type RedisClusterWithReplicas } from "./redis.js"

const NODE_TTL_MILLIS = 3_000
const HEARTBEAT_MILLIS = NODE_TTL_MILLIS / 3

/** Only the heartbeat moves with the clock: no pings, no voice sweeps, no expiry. */
const config = {
  pingInterval: Duration.days(1),
  pongTimeout: Duration.days(1),
  voiceSweep: Duration.days(1),
  nodeTtl: Duration.millis(NODE_TTL_MILLIS),
  voiceParticipantLifetime: Duration.days(1),
  maxVoiceParticipantsPerChannel: 5
}

const participantOf = (userId: string, guildId: string, channelId: string) => ({
  user_id: userId,
  identity: `u.${userId}.${guildId}.${channelId}`,
  joined_at_unix: BASE_UNIX,
  updated_at_unix: BASE_UNIX,
  is_muted: false,
  is_deafened: false,
  is_speaking: false,
  is_video_enabled: false,
  is_screen_share_enabled: false
})

const join = (node: Harness, guild: string, channel: string, user: string) =>
  node.gateway.publish(
    VoiceParticipantJoin,
    typed(VoiceParticipantJoin, {
      guild_id: guild,
      channel_id: channel,
      participant: participantOf(user, guild, channel)
    })
  )

/** A guild whose state keys and bus topic live on the same shard: the one failed over. */
const guildOnOneShard = (redis: RedisClusterWithReplicas) =>
  Effect.gen(function* () {
    for (;;) {
      const guild = newId()
      const state = yield* redis.shardOf(`filament:{g:${guild}}:presence`)
      if (state === (yield* redis.shardOf(`filament:{g:${guild}}`))) return { guild, shard: state }
    }
  })

const reasserted = (nodes: ReadonlyArray<Harness>, store: "presence" | "voice") =>
  summedMetric(nodes, "filament_cluster_state_reasserted_total", { store })

const syncedUsers = (frames: ReadonlyArray<{ readonly t: string; readonly d: Record<string, unknown> }>) =>
  [...(frames.find((frame) => frame.t === "presence_sync")!.d["user_ids"] as Array<string>)].sort()

const participantsOf = (frames: ReadonlyArray<{ readonly d: Record<string, unknown> }>) =>
  frames[frames.length - 1]!.d["participants"] as Array<{ readonly user_id: string }>

/**
 * Both nodes' subscribers hold the guild's topic on its new master: only then can a cross-node
 * publish be expected (the bus is at most once; a message published mid-failover may be lost).
 */
const topicFollowed = (redis: RedisClusterWithReplicas, guild: string) =>
  eventuallyEffect(
    "both nodes subscribed to the guild's topic on its new master",
    Effect.map(
      redis.atMaster(`filament:{g:${guild}}`, "PUBSUB", "SHARDNUMSUB", `filament:{g:${guild}}`),
      (reply) => Number((reply as [string, number])[1]) === 2
    ),
    10_000,
    20
  )

const allReady = (nodes: ReadonlyArray<Harness>) =>
  Effect.forEach(
    nodes,
    (node) =>
      eventuallyEffect(
        "readyz 200 after the failover",
        Effect.map(node.http("/readyz"), (response) => response.status === 200),
        10_000
      ),
    { discard: true }
  )

const cameOnline = (clients: ReadonlyArray<TestClient>, user: string) =>
  Effect.forEach(
    clients,
    (client) =>
      Effect.map(client.next(`${user} online`), (frame) =>
        expect(presenceOf([frame], user)).toEqual(["online"])
      ),
    { discard: true }
  )

describe.skipIf(!hasRedisServer)("a Redis Cluster failover", () => {
  it.scoped(
    "the guild's master dies with writes its replica never got; the replica takes over: within one heartbeat each node re-asserts, presence and voice are right again, the bus carries the guild",
    () =>
      Effect.gen(function* () {
        const redis = yield* startRedisClusterWithReplicas
        const { guild, shard } = yield* guildOnOneShard(redis)
        const a = yield* startClusterNode(redis, config)
        const b = yield* startClusterNode(redis, config)
        const channel = newId()
        const access = { [guild]: "*" as const }
        const [watcherUser, u1, u2, u3, speaker, listener] = [
          newId(),
          newId(),
          newId(),
          newId(),
          newId(),
          newId()
        ]
        const watcher = yield* b.connectReady(watcherUser, access)
        yield* subscribe(watcher, guild, channel)
        const one = yield* a.connectReady(u1, access)
        yield* subscribe(one, guild, channel)
        yield* cameOnline([watcher], u1)
        yield* subscribe(yield* b.connectReady(u2, access), guild, channel)
        yield* cameOnline([watcher, one], u2)
        yield* join(a, guild, channel, speaker)
        for (const client of [watcher, one])
          expect((yield* client.next("speaker joins")).t).toBe("voice_participant_join")

        // From here the replica misses every write: a user comes online, a listener joins.
        yield* redis.cutReplication(shard)
        // A canary in the guild's slot, written after the cut: its loss shows the failover lost the rest.
        const canary = `filament:{g:${guild}}:canary`
        yield* redis.atMaster(canary, "SET", canary, "after the cut")
        const three = yield* a.connectReady(u3, access)
        yield* subscribe(three, guild, channel)
        yield* cameOnline([watcher, one], u3)
        yield* join(b, guild, channel, listener)
        for (const client of [watcher, one, three]) {
          expect((yield* client.next("listener joins")).t).toBe("voice_participant_join")
        }
        const before = {
          presence: yield* reasserted([a, b], "presence"),
          voice: yield* reasserted([a, b], "voice")
        }

        yield* redis.failover(shard, "takeover")
        expect(yield* redis.atMaster(canary, "EXISTS", canary)).toBe(0)
        yield* allReady([a, b])
        // Every Redis node agrees on the new master: each gateway node's next heartbeat notices.
        yield* TestClock.adjust(Duration.millis(HEARTBEAT_MILLIS))
        for (const store of ["presence", "voice"] as const) {
          yield* eventuallyEffect(
            `both nodes re-asserted ${store}`,
            Effect.map(reasserted([a, b], store), (n) => n === before[store] + 2)
          )
        }

        // The bus carries the guild both ways after the failover.
        yield* topicFollowed(redis, guild)
        yield* expectMarkerNext(a, guild, channel, [watcher, one, three])
        yield* expectMarkerNext(b, guild, channel, [watcher, one, three])
        // A new subscriber's snapshots: every online user, both participants.
        const u4 = newId()
        const four = yield* b.connectReady(u4, access)
        const frames = yield* subscribe(four, guild, channel)
        expect(syncedUsers(frames)).toEqual([watcherUser, u1, u2, u3, u4].sort())
        expect(
          participantsOf(frames)
            .map((participant) => participant.user_id)
            .sort()
        ).toEqual([speaker, listener].sort())
        yield* cameOnline([watcher, one, three], u4)
        // A second connection of a user written after the cut is not announced again.
        const threeAgain = yield* b.connectReady(u3, access)
        expect(presenceOf(yield* subscribe(threeAgain, guild, channel), u3)).toEqual([])
        yield* expectMarkerNext(a, guild, channel, [watcher, four])
        // A disconnect is announced offline, once.
        one.socket.close()
        for (const client of [watcher, four]) {
          expect(presenceOf([yield* client.next("u1 offline")], u1)).toEqual(["offline"])
        }
        yield* expectMarkerNext(b, guild, channel, [watcher, four])
      })
  )

  it.scoped(
    "a graceful failover (CLUSTER FAILOVER): the old master turns replica, yet each node's subscriber follows the guild's topic to the new master",
    () =>
      Effect.gen(function* () {
        const redis = yield* startRedisClusterWithReplicas
        const { guild, shard } = yield* guildOnOneShard(redis)
        const a = yield* startClusterNode(redis, config)
        const b = yield* startClusterNode(redis, config)
        const channel = newId()
        const access = { [guild]: "*" as const }
        const [u1, u2] = [newId(), newId()]
        const onA = yield* a.connectReady(u1, access)
        yield* subscribe(onA, guild, channel)
        const onB = yield* b.connectReady(u2, access)
        yield* subscribe(onB, guild, channel)
        yield* cameOnline([onA], u2)
        yield* expectMarkerNext(a, guild, channel, [onA, onB])

        yield* redis.failover(shard, "graceful")
        yield* allReady([a, b])
        yield* TestClock.adjust(Duration.millis(HEARTBEAT_MILLIS))
        yield* topicFollowed(redis, guild)
        yield* expectMarkerNext(a, guild, channel, [onA, onB])
        yield* expectMarkerNext(b, guild, channel, [onA, onB])
        onA.socket.close()
        expect(presenceOf([yield* onB.next("u1 offline")], u1)).toEqual(["offline"])
      }),
    60_000
  )
})
