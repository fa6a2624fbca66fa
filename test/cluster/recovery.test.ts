/**
 * Missed-event recovery across nodes over a real `redis-server`: the history and the bus in one
 * Redis, the append and the bus publish one script. A node SIGKILLed (its own process) and its
 * clients recovering exactly on another node (the other node's live events positioned on the way);
 * two nodes publishing to one channel at once, every opted-in subscriber on both seeing offsets
 * 1..n in order; Redis flushed ⇒ `epoch_changed`.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import WebSocket from "ws"
import * as Auth from "../../src/server/Auth.js"
import {
  channelEvent,
  guildEvent,
  newId,
  publishHttp,
  SECRET,
  TestClient,
  userEvent,
  type Frame,
  type Harness
} from "../server/harness.js"
import { BUS_SECRET, startClusterNode, startNodeProcess, subscribe } from "./chat.js"
import { freePort, hasRedisServer, redisEnv, startRedis } from "./redis.js"

interface Pos {
  readonly epoch: string
  readonly offset: number
}
const posOf = (frame: Frame) => (frame as unknown as { pos: Pos & { stream: string } }).pos
const bare = (pos: Pos): Pos => ({ epoch: pos.epoch, offset: pos.offset })

const RECORDED = new Set(["message_delete", "channel_create", "profile_update"])

const publishAll = (node: Harness, bodies: ReadonlyArray<unknown>) =>
  Effect.forEach(bodies, (body) =>
    Effect.map(publishHttp(node, body), (response) => expect(response.status).toBe(202))
  )

/** The recorded events up to the next `recovery` event (chat's presence and voice frames left out). */
const untilRecovery = (client: TestClient) =>
  Effect.gen(function* () {
    const replayed: Array<Frame> = []
    for (;;) {
      const frame = yield* client.next("frame up to recovery")
      if (frame.t === "recovery")
        return { replayed, streams: frame.d["streams"] as Array<Record<string, unknown>> }
      if (RECORDED.has(frame.t)) replayed.push(frame)
    }
  })

/** An opted-in client of `port` (a harness's or a process's), its user-stream verdict consumed. */
const connectOptedIn = (port: number, user: string, guild: string, userSince?: Pos) =>
  Effect.gen(function* () {
    const token = yield* Auth.signToken({
      secret: SECRET,
      userId: user,
      expiresAt: Math.floor(Date.now() / 1000) + 3600,
      guilds: { [guild]: "*" }
    })
    const since = userSince === undefined ? "" : `&user_since=${userSince.epoch}:${userSince.offset}`
    const client = new TestClient(
      new WebSocket(`ws://127.0.0.1:${port}/gateway/ws?access_token=${token}&recovery=1${since}`)
    )
    yield* Effect.addFinalizer(() => Effect.sync(() => client.socket.terminate()))
    yield* client.nextOfType("ready")
    return { client, user: yield* untilRecovery(client) }
  })

const subscribeSince = (
  client: TestClient,
  guild: string,
  channel: string,
  since?: { readonly channel: Pos; readonly guild: Pos }
) =>
  Effect.gen(function* () {
    client.send({
      v: 1,
      t: "subscribe",
      d: {
        guild_id: guild,
        channel_id: channel,
        ...(since === undefined ? {} : { since: { channel: bare(since.channel), guild: bare(since.guild) } })
      }
    })
    return yield* untilRecovery(client)
  })

/** The next `count` recorded events the client receives. */
const recordedFrames = (client: TestClient, count: number) =>
  Effect.gen(function* () {
    const frames: Array<Frame> = []
    while (frames.length < count) {
      const frame = yield* client.next("recorded event")
      if (RECORDED.has(frame.t)) frames.push(frame)
    }
    return frames
  })

describe.skipIf(!hasRedisServer)("missed-event recovery across nodes (redis-server)", () => {
  it.scoped(
    "node A SIGKILLed: its clients reconnect to node B with their positions and recover exactly (channel, guild, user)",
    () =>
      Effect.gen(function* () {
        const redis = yield* startRedis
        const b = yield* startClusterNode(redis)
        const port = yield* freePort
        const a = yield* startNodeProcess({
          GATEWAY_PORT: String(port),
          GATEWAY_JWT_SECRET: Redacted.value(SECRET),
          GATEWAY_PUBLISH_KEY: "recovery-publish-key-0123456789-0123456789",
          ...redisEnv(redis),
          GATEWAY_BUS_SECRET: BUS_SECRET
        })
        const [user, guild, channel] = [newId(), newId(), newId()]
        const onA = yield* connectOptedIn(port, user, guild)
        const fresh = yield* subscribeSince(onA.client, guild, channel)
        expect(fresh.streams.map((entry) => entry["offset"])).toEqual([0, 0])

        // Published on B, received live on A over the bus: positioned there from the bus message.
        yield* publishAll(b, [channelEvent(guild, channel, 1), guildEvent(guild, "g1"), userEvent(user, 1)])
        const live = yield* recordedFrames(onA.client, 3)
        expect(live.map((frame) => [posOf(frame).stream, posOf(frame).offset])).toEqual([
          [`channel:${guild}:${channel}`, 1],
          [`guild:${guild}`, 1],
          [`user:${user}`, 1]
        ])
        const [lastChannel, lastGuild, lastUser] = live.map(posOf)

        yield* a.kill
        const missedUser = [userEvent(user, 2), userEvent(user, 3)]
        const missed = [
          channelEvent(guild, channel, 2),
          guildEvent(guild, "g2"),
          channelEvent(guild, channel, 3),
          channelEvent(guild, channel, 4)
        ]
        yield* publishAll(b, [...missed, ...missedUser])

        const onB = yield* connectOptedIn(b.port, user, guild, lastUser)
        expect(onB.user.replayed.map((frame) => [posOf(frame).offset, frame.d])).toEqual(
          missedUser.map((body, i) => [2 + i, body.d])
        )
        expect(onB.user.streams).toEqual([
          { stream: `user:${user}`, epoch: lastUser!.epoch, offset: 3, recovered: true, replayed: 2 }
        ])
        const recovered = yield* subscribeSince(onB.client, guild, channel, {
          channel: lastChannel!,
          guild: lastGuild!
        })
        expect(recovered.replayed.map((frame) => [frame.t, posOf(frame).offset])).toEqual([
          ["message_delete", 2],
          ["channel_create", 2],
          ["message_delete", 3],
          ["message_delete", 4]
        ])
        expect(recovered.replayed.map((frame) => frame.d)).toEqual(missed.map((body) => body.d))
        expect(recovered.streams).toEqual([
          {
            stream: `channel:${guild}:${channel}`,
            epoch: lastChannel!.epoch,
            offset: 4,
            recovered: true,
            replayed: 3
          },
          { stream: `guild:${guild}`, epoch: lastGuild!.epoch, offset: 2, recovered: true, replayed: 1 }
        ])
      }),
    60_000
  )

  it.scoped(
    "two nodes publishing to one channel at once: every opted-in subscriber on both sees offsets 1..n in order",
    () =>
      Effect.gen(function* () {
        const redis = yield* startRedis
        const a = yield* startClusterNode(redis)
        const b = yield* startClusterNode(redis)
        const [guild, channel] = [newId(), newId()]
        const subscribers: Array<TestClient> = []
        for (const node of [a, b, a, b]) {
          const { client } = yield* connectOptedIn(node.port, newId(), guild)
          yield* subscribeSince(client, guild, channel)
          subscribers.push(client)
        }
        const legacy = yield* a.connectReady(newId(), { [guild]: "*" })
        yield* subscribe(legacy, guild, channel)
        const PER_NODE = 25
        yield* Effect.all(
          [a, b].map((node, k) =>
            publishAll(
              node,
              Array.from({ length: PER_NODE }, (_, i) => channelEvent(guild, channel, k * 1000 + i))
            )
          ),
          { concurrency: "unbounded" }
        )
        const seen = yield* Effect.forEach(subscribers, (client) => recordedFrames(client, 2 * PER_NODE))
        const expected = Array.from({ length: 2 * PER_NODE }, (_, i) => i + 1)
        for (const frames of seen) expect(frames.map((frame) => posOf(frame).offset)).toEqual(expected)
        // One order for everyone: the order Redis ran the appends in.
        const order = seen[0]!.map((frame) => frame.d["message_id"])
        for (const frames of seen) expect(frames.map((frame) => frame.d["message_id"])).toEqual(order)
        // A legacy neighbour still gets every event once, without pos.
        const legacyFrames = yield* recordedFrames(legacy, 2 * PER_NODE)
        expect(new Set(legacyFrames.map((frame) => frame.d["message_id"]))).toEqual(new Set(order))
        expect(legacyFrames.every((frame) => !("pos" in frame))).toBe(true)
      })
  )

  it.scoped("Redis flushed between disconnect and reconnect: epoch_changed, nothing replayed", () =>
    Effect.gen(function* () {
      const redis = yield* startRedis
      const a = yield* startClusterNode(redis)
      const b = yield* startClusterNode(redis)
      const [user, guild, channel] = [newId(), newId(), newId()]
      const first = yield* connectOptedIn(a.port, user, guild)
      yield* subscribeSince(first.client, guild, channel)
      yield* publishAll(b, [channelEvent(guild, channel, 1), guildEvent(guild, "g1")])
      const [lastChannel, lastGuild] = (yield* recordedFrames(first.client, 2)).map(posOf)
      first.client.socket.terminate()
      yield* first.client.waitClosed()

      const admin = yield* redis.client()
      yield* Effect.promise(() => admin.flushall())
      yield* publishAll(b, [channelEvent(guild, channel, 2)])

      const second = yield* connectOptedIn(b.port, user, guild)
      const answer = yield* subscribeSince(second.client, guild, channel, {
        channel: lastChannel!,
        guild: lastGuild!
      })
      expect(answer.replayed).toEqual([])
      expect(answer.streams.map((entry) => [entry["offset"], entry["recovered"], entry["reason"]])).toEqual([
        [1, false, "epoch_changed"],
        [0, false, "epoch_changed"]
      ])
      expect(answer.streams[0]!["epoch"]).not.toBe(lastChannel!.epoch)
    })
  )
})
