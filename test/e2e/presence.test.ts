/**
 * Presence over real sockets (docs/PROTOCOL.md, `subscribe` and Presence): the exact subscribe order
 * on first and repeated subscribes, online once and offline once for multi-connection users, offline on
 * disconnect and on unsubscribe of the guild's last channel, the presence_sync bound, and the storm
 * bound (a guild's changes beyond the burst held per tick, sent as one guild-wide presence_sync);
 * and, with in-process connections on the real gateway, that the subscribe snapshot is encoded once
 * per guild version.
 */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, TestClock } from "effect"
import type { ChannelId, GuildId, UserId } from "../../src/protocol/Ids.js"
import { Connection } from "../../src/server/core/Connection.js"
import { newId, publishHttp, recordingPeer, type Harness, type TestClient } from "../server/harness.js"
import { eventually, eventuallyEffect } from "../deadline.js"
import { expectNextIsMarker, metricDelta, startChatGateway, subscribeInOrder } from "./chat.js"

/**
 * A connection of `userId` (granted `guildId`) attached to the harness's gateway in-process: its
 * socket is a recording peer, so the test sees the very Buffers the gateway writes.
 */
const inProcessConnection = (harness: Harness, id: number, userId: string, guildId: string) =>
  Effect.gen(function* () {
    const { peer, socket, transport } = recordingPeer()
    const connection = new Connection(
      id,
      {
        userId: userId as UserId,
        expiresAt: Infinity,
        guilds: new Map([[guildId as GuildId, "*" as const]])
      },
      socket,
      transport,
      {
        outboundQueue: 64,
        socketHighWaterBytes: 100,
        ingressEventsPerWindow: 60,
        ingressWindowMillis: 10_000
      },
      0,
      () => undefined
    )
    yield* harness.registry.register(connection)
    connection.registered = true
    /** Subscribes through the gateway's command path; returns the presence_sync Buffer it wrote. */
    const subscribe = (channelId: string) =>
      Effect.gen(function* () {
        const before = peer.written.length
        expect(
          harness.gateway.runCommand(connection, {
            _tag: "subscribe",
            guild_id: guildId as GuildId,
            channel_id: channelId as ChannelId
          })
        ).toBe(true)
        const written = () => peer.written.slice(before)
        yield* eventually(`subscribed ${channelId}`, () => {
          peer.drained()
          return written().some((wire) => wire.includes('"t":"subscribed"'))
        })
        const frames = written()
        const syncs = frames.filter((wire) => wire.includes('"t":"presence_sync"'))
        expect(syncs).toHaveLength(1)
        return syncs[0]!
      })
    return { subscribe }
  })

const userIdsOf = (wire: Buffer) =>
  (JSON.parse(wire.subarray(wire[1]! === 126 ? 4 : 2).toString()) as { d: { user_ids: Array<string> } }).d
    .user_ids

describe("presence", () => {
  it.scoped(
    "the subscribe snapshot is encoded once per guild version: its subscribers get the same bytes",
    () =>
      Effect.gen(function* () {
        const harness = yield* startChatGateway()
        const [guild, one, two, three] = [newId(), newId(), newId(), newId()]
        const [alice, bob] = [newId(), newId()]
        const sent = yield* metricDelta(harness, "filament_gateway_events_emitted_total", {
          scope: "connection",
          event_type: "presence_sync"
        })
        const alice1 = yield* inProcessConnection(harness, 1_000_001, alice, guild)
        const alice2 = yield* inProcessConnection(harness, 1_000_002, alice, guild)
        const bobs = yield* inProcessConnection(harness, 1_000_003, bob, guild)

        // Alice comes online with her first subscribe: version [alice].
        const first = yield* alice1.subscribe(one)
        expect(userIdsOf(first)).toEqual([alice])
        // Her other subscribes and her second connection change nothing: the same frame, not a re-encode.
        expect(yield* alice1.subscribe(two)).toBe(first)
        expect(yield* alice2.subscribe(one)).toBe(first)
        // Bob comes online: a new version, encoded once more, then shared again.
        const second = yield* bobs.subscribe(one)
        expect(second).not.toBe(first)
        expect(userIdsOf(second)).toEqual([alice, bob])
        expect(yield* alice2.subscribe(three)).toBe(second)
        expect(userIdsOf(first)).toEqual([alice])
        // Every snapshot is still counted as sent to its connection.
        expect(yield* sent).toBe(5)
      })
  )

  it.scoped(
    "first subscribe: presence_sync, presence_update online, subscribed, voice_participant_sync",
    () =>
      Effect.gen(function* () {
        const harness = yield* startChatGateway()
        const [guild, channel, other] = [newId(), newId(), newId()]
        const user = newId()
        const repairs = yield* metricDelta(harness, "filament_voice_sync_repairs_total", {
          reason: "subscribe"
        })
        const client = yield* harness.connectReady(user, { [guild]: "*" })
        const first = yield* subscribeInOrder(client, guild, channel, { online: true })
        expect(first.presenceSync.d).toEqual({ guild_id: guild, user_ids: [user] })
        expect(first.presenceUpdate!.d).toEqual({ guild_id: guild, user_id: user, status: "online" })
        // A text channel: the snapshot is sent anyway, empty.
        expect(first.voiceSync.d["participants"]).toEqual([])
        expect(first.voiceSync.d["synced_at_unix"]).toBeGreaterThan(0)
        // Repeated (same channel) and another channel of the online guild: no presence_update.
        yield* subscribeInOrder(client, guild, channel, { online: false })
        const again = yield* subscribeInOrder(client, guild, other, { online: false })
        expect(again.presenceSync.d).toEqual({ guild_id: guild, user_ids: [user] })
        expect(yield* repairs).toBe(3)
        yield* expectNextIsMarker(harness, guild, [client])
      })
  )

  it.scoped(
    "a second connection of the same user does not re-announce; offline once, when the last one leaves",
    () =>
      Effect.gen(function* () {
        const harness = yield* startChatGateway()
        const [guild, channel] = [newId(), newId()]
        const [user, watcherId] = [newId(), newId()]
        const watcher = yield* harness.connectReady(watcherId, { [guild]: "*" })
        yield* subscribeInOrder(watcher, guild, channel, { online: true })
        const first = yield* harness.connectReady(user, { [guild]: "*" })
        const firstSync = yield* subscribeInOrder(first, guild, channel, { online: true })
        expect(new Set(firstSync.presenceSync.d["user_ids"] as Array<string>)).toEqual(
          new Set([user, watcherId])
        )
        // Untruncated, the snapshot lists the guild in the order users came online.
        expect(firstSync.presenceSync.d["user_ids"]).toEqual([watcherId, user])
        expect((yield* watcher.nextOfType("presence_update")).d).toEqual({
          guild_id: guild,
          user_id: user,
          status: "online"
        })
        const second = yield* harness.connectReady(user, { [guild]: "*" })
        yield* subscribeInOrder(second, guild, channel, { online: false })
        // Nobody heard a second online.
        yield* expectNextIsMarker(harness, guild, [watcher, first, second])

        first.socket.close()
        yield* first.waitClosed()
        // Still online through the second connection: no offline (the marker comes next).
        yield* eventuallyEffect(
          "first connection cleaned up",
          Effect.map(harness.serverConnections(user), (c) => c.length === 1)
        )
        yield* expectNextIsMarker(harness, guild, [watcher, second])

        second.socket.close()
        expect((yield* watcher.nextOfType("presence_update")).d).toEqual({
          guild_id: guild,
          user_id: user,
          status: "offline"
        })
        yield* expectNextIsMarker(harness, guild, [watcher])
      })
  )

  it.scoped("unsubscribe of the guild's last channel sends offline; of another channel, nothing", () =>
    Effect.gen(function* () {
      const harness = yield* startChatGateway()
      const [guild, a, b] = [newId(), newId(), newId()]
      const [user, watcherId] = [newId(), newId()]
      const watcher = yield* harness.connectReady(watcherId, { [guild]: "*" })
      yield* subscribeInOrder(watcher, guild, a, { online: true })
      const client = yield* harness.connectReady(user, { [guild]: "*" })
      yield* subscribeInOrder(client, guild, a, { online: true })
      yield* subscribeInOrder(client, guild, b, { online: false })
      yield* watcher.nextOfType("presence_update")

      client.send({ v: 1, t: "unsubscribe", d: { guild_id: guild, channel_id: a } })
      yield* client.nextOfType("unsubscribed")
      yield* expectNextIsMarker(harness, guild, [watcher, client])

      client.send({ v: 1, t: "unsubscribe", d: { guild_id: guild, channel_id: b } })
      // The offline goes to the guild before the ack; the unsubscriber is out of the guild already.
      yield* client.nextOfType("unsubscribed")
      expect((yield* watcher.nextOfType("presence_update")).d).toEqual({
        guild_id: guild,
        user_id: user,
        status: "offline"
      })
      // A later subscribe announces online again.
      yield* subscribeInOrder(client, guild, a, { online: true })
      expect((yield* watcher.nextOfType("presence_update")).d["status"]).toBe("online")
    })
  )

  it.scoped("disconnect sends offline to each guild the user leaves, not to guilds where they stay", () =>
    Effect.gen(function* () {
      const harness = yield* startChatGateway()
      const [g1, g2, channel] = [newId(), newId(), newId()]
      const user = newId()
      const w1 = yield* harness.connectReady(newId(), { [g1]: "*" })
      const w2 = yield* harness.connectReady(newId(), { [g2]: "*" })
      yield* subscribeInOrder(w1, g1, channel, { online: true })
      yield* subscribeInOrder(w2, g2, channel, { online: true })
      const leaving = yield* harness.connectReady(user, { [g1]: "*", [g2]: "*" })
      const staying = yield* harness.connectReady(user, { [g2]: "*" })
      yield* subscribeInOrder(leaving, g1, channel, { online: true })
      yield* subscribeInOrder(leaving, g2, channel, { online: true })
      yield* subscribeInOrder(staying, g2, channel, { online: false })
      yield* w1.nextOfType("presence_update")
      yield* w2.nextOfType("presence_update")

      leaving.socket.terminate()
      expect((yield* w1.nextOfType("presence_update")).d).toEqual({
        guild_id: g1,
        user_id: user,
        status: "offline"
      })
      yield* expectNextIsMarker(harness, g2, [w2, staying])
    })
  )

  it.scoped("presence and the snapshots are the gateway's own: the publish API refuses them (400)", () =>
    Effect.gen(function* () {
      const harness = yield* startChatGateway()
      const [guild, channel, user] = [newId(), newId(), newId()]
      const client = yield* harness.connectReady(user, { [guild]: "*" })
      yield* subscribeInOrder(client, guild, channel, { online: true })
      const emitted = yield* metricDelta(harness, "filament_gateway_events_emitted_total", {
        scope: "guild",
        event_type: "presence_update"
      })
      const forged = [
        { t: "presence_update", d: { guild_id: guild, user_id: user, status: "offline" } },
        { t: "presence_sync", d: { guild_id: guild, user_ids: [] } },
        {
          t: "voice_participant_sync",
          d: { guild_id: guild, channel_id: channel, participants: [], synced_at_unix: 1 }
        }
      ]
      for (const body of forged) {
        const response = yield* publishHttp(harness, body)
        expect(response.status).toBe(400)
        expect(JSON.parse(response.body)).toEqual({
          error: "invalid_event",
          detail: `"${body.t}" is produced by the gateway itself and cannot be published`
        })
      }
      expect(yield* emitted).toBe(0)
      yield* expectNextIsMarker(harness, guild, [client])
    })
  )

  it.scoped("presence_sync is cut at GATEWAY_PRESENCE_SYNC_MAX_USERS, subscriber first, counted", () =>
    Effect.gen(function* () {
      const harness = yield* startChatGateway({ presenceSyncMaxUsers: 2 })
      const [guild, channel] = [newId(), newId()]
      const users = [newId(), newId(), newId()]
      const truncated = yield* metricDelta(harness, "filament_presence_sync_truncated_total")
      const clients = []
      for (const user of users) {
        const client = yield* harness.connectReady(user, { [guild]: "*" })
        clients.push(client)
        const { presenceSync } = yield* subscribeInOrder(client, guild, channel, { online: true })
        const ids = presenceSync.d["user_ids"] as Array<string>
        // Untruncated: everyone, in the order they came online; truncated: the subscriber first.
        expect(ids).toEqual(clients.length <= 2 ? users.slice(0, clients.length) : [user, users[0]])
      }
      expect(yield* truncated).toBe(1)
    })
  )

  it.scoped(
    "beyond the burst, changes wait for the tick's end; online then offline in one tick sends nothing",
    () =>
      Effect.gen(function* () {
        const tick = Duration.millis(50)
        const harness = yield* startChatGateway({ presenceBurst: 1, presenceTick: tick })
        const [guild, channel] = [newId(), newId()]
        const [brief, late] = [newId(), newId()]
        const watcher = yield* harness.connectReady(newId(), { [guild]: "*" })
        // The watcher's own online is the tick's one announcement at once.
        yield* subscribeInOrder(watcher, guild, channel, { online: true })
        const briefClient = yield* harness.connectReady(brief, { [guild]: "*" })
        yield* subscribeInOrder(briefClient, guild, channel, { online: false })
        briefClient.send({ v: 1, t: "unsubscribe", d: { guild_id: guild, channel_id: channel } })
        yield* briefClient.nextOfType("unsubscribed")
        const lateClient = yield* harness.connectReady(late, { [guild]: "*" })
        const { presenceSync } = yield* subscribeInOrder(lateClient, guild, channel, { online: false })
        expect(new Set(presenceSync.d["user_ids"] as Array<string>).has(brief)).toBe(false)
        yield* expectNextIsMarker(harness, guild, [watcher, lateClient])

        // One held change (not above the burst): an update, not a snapshot; the brief user's pair is gone.
        yield* TestClock.adjust(tick)
        for (const client of [watcher, lateClient]) {
          expect((yield* client.nextOfType("presence_update")).d).toEqual({
            guild_id: guild,
            user_id: late,
            status: "online"
          })
        }
        yield* expectNextIsMarker(harness, guild, [watcher, lateClient])
      })
  )

  /** The Filament client's presence state: `presence_sync` replaces the guild's set, an update changes one user. */
  const onlineSet = (client: TestClient, guildId: string) => {
    let online = new Set<string>()
    for (const frame of client.frames) {
      if (frame.d["guild_id"] !== guildId) continue
      if (frame.t === "presence_sync") online = new Set(frame.d["user_ids"] as Array<string>)
      if (frame.t === "presence_update") {
        const userId = frame.d["user_id"] as string
        if (frame.d["status"] === "online") online.add(userId)
        else online.delete(userId)
      }
    }
    return online
  }
  const presenceFrames = (clients: ReadonlyArray<TestClient>) =>
    clients.reduce(
      (sum, client) =>
        sum + client.frames.filter((f) => f.t === "presence_sync" || f.t === "presence_update").length,
      0
    )
  const sameSet = (a: ReadonlySet<string>, b: ReadonlySet<string>) =>
    a.size === b.size && [...a].every((id) => b.has(id))

  it.scoped(
    "a storm: 200 users subscribe at once, then 100 leave; every subscriber ends with the online set, in bounded frames",
    () =>
      Effect.gen(function* () {
        const burst = 8
        const tick = Duration.millis(50)
        const harness = yield* startChatGateway({ presenceBurst: burst, presenceTick: tick })
        const [guild, channel] = [newId(), newId()]
        const users = Array.from({ length: 200 }, () => newId())
        const clients = yield* Effect.forEach(users, (user) => harness.connectReady(user, { [guild]: "*" }), {
          concurrency: 20
        })
        for (const client of clients) {
          client.send({ v: 1, t: "subscribe", d: { guild_id: guild, channel_id: channel } })
        }
        yield* eventually("every subscribe acknowledged", () =>
          clients.every((client) => client.frames.some((f) => f.t === "subscribed"))
        )
        // The first `burst` went out at once; the tick's end sends the rest as one presence_sync.
        yield* TestClock.adjust(tick)
        const everyone = new Set(users)
        yield* eventually("every subscriber sees the 200 online", () =>
          clients.every((client) => sameSet(onlineSet(client, guild), everyone))
        )
        // Per subscriber: its own snapshot, at most `burst` updates, one guild-wide snapshot (one tick).
        // Unbounded, this storm sends 200 snapshots + 200 * 201 / 2 updates.
        expect(presenceFrames(clients)).toBeLessThanOrEqual(users.length * (2 + burst))

        const leaving = clients.slice(0, 100)
        const staying = clients.slice(100)
        const sentBefore = presenceFrames(staying)
        for (const client of leaving) client.socket.close()
        yield* eventuallyEffect(
          "the leavers are cleaned up",
          Effect.map(
            Effect.forEach(users.slice(0, 100), (user) => harness.serverConnections(user)),
            (connections) => connections.every((c) => c.length === 0)
          )
        )
        yield* TestClock.adjust(tick)
        const remaining = new Set(users.slice(100))
        yield* eventually("every remaining subscriber sees exactly the 100 still online", () =>
          staying.every((client) => sameSet(onlineSet(client, guild), remaining))
        )
        expect(presenceFrames(staying) - sentBefore).toBeLessThanOrEqual(staying.length * (1 + burst))
      }),
    60_000
  )
})
