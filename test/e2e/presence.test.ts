/**
 * Presence over real sockets (docs/PROTOCOL.md, `subscribe` and Presence): the exact subscribe order
 * on first and repeated subscribes, online once and offline once for multi-connection users, offline on
 * disconnect and on unsubscribe of the guild's last channel, the presence_sync bound, and the storm
 * bound (fast and slow storms end with the true online set in bounded frames and writes); and, with
 * in-process connections on the real gateway (every socket write seen), that the subscribe snapshot
 * is encoded once per guild version and the presence write budget's rules.
 */
import { describe, expect, it } from "@effect/vitest"
import { Cause, Duration, Effect, Either, Exit, TestClock } from "effect"
import { PresenceSync, PresenceUpdate } from "../../src/protocol/events/presence.js"
import { ChannelCreate } from "../../src/protocol/events/workspace.js"
import type { PayloadOf } from "../../src/protocol/EventDefinition.js"
import type { GuildId, UserId } from "../../src/protocol/Ids.js"
import type { GatewayConfigShape } from "../../src/server/Config.js"
import * as Outbound from "../../src/server/core/Outbound.js"
import { newId, publishHttp, type Harness, type TestClient } from "../server/harness.js"
import { eventually, eventuallyEffect } from "../deadline.js"
import {
  expectNextIsMarker,
  inProcessConnection,
  metricDelta,
  publishOk,
  startChatGateway,
  subscribeInOrder
} from "./chat.js"

/** The frames of one socket write (complete, unmasked server frames back to back), decoded. */
type WireFrame = { readonly t: string; readonly d: Record<string, unknown> }
const framesOfWrite = (wire: Buffer): Array<WireFrame> => {
  const frames: Array<WireFrame> = []
  for (let at = 0; at < wire.length;) {
    const short = wire[at + 1]! & 0x7f
    const [header, length] =
      short === 126
        ? [4, wire.readUInt16BE(at + 2)]
        : short === 127
          ? [10, Number(wire.readBigUInt64BE(at + 2))]
          : [2, short]
    frames.push(
      JSON.parse(wire.toString("utf8", at + header, at + header + length)) as (typeof frames)[number]
    )
    at += header + length
  }
  return frames
}

const userIdsOf = (wire: Buffer) => framesOfWrite(wire)[0]!.d["user_ids"] as Array<string>

/** What the storm test's frames must stay under (the unbounded storm: 20 300 and 10 000). */
const STORM_JOIN_BOUND = 20_300
const STORM_LEAVE_BOUND = 10_000

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

  it.scoped("beyond the budget, changes wait for a tick; online then offline before it sends nothing", () =>
    Effect.gen(function* () {
      // A bucket of one write: the watcher's own online goes at once, then it is empty.
      const tick = Duration.seconds(1)
      const harness = yield* startChatGateway({ presenceWritesPerSec: 1, presenceTick: tick })
      const [guild, channel] = [newId(), newId()]
      const [brief, late] = [newId(), newId()]
      const watcher = yield* harness.connectReady(newId(), { [guild]: "*" })
      yield* subscribeInOrder(watcher, guild, channel, { online: true })
      const briefClient = yield* harness.connectReady(brief, { [guild]: "*" })
      yield* subscribeInOrder(briefClient, guild, channel, { online: false })
      briefClient.send({ v: 1, t: "unsubscribe", d: { guild_id: guild, channel_id: channel } })
      yield* briefClient.nextOfType("unsubscribed")
      const lateClient = yield* harness.connectReady(late, { [guild]: "*" })
      const { presenceSync } = yield* subscribeInOrder(lateClient, guild, channel, { online: false })
      expect(new Set(presenceSync.d["user_ids"] as Array<string>).has(brief)).toBe(false)
      yield* expectNextIsMarker(harness, guild, [watcher, lateClient])

      // The full bucket pays the guild (2 writes, overdrawn): one update (fewer bytes than the
      // snapshot of two); the brief user's pair is gone.
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

  /** Advances the TestClock by `ticks` presence ticks, one at a time (each tick's flush runs on its own). */
  const advanceTicks = (tick: Duration.Duration, ticks: number) =>
    Effect.forEach(Array.from({ length: ticks }), () => TestClock.adjust(tick), { discard: true })

  it.scoped(
    "a storm: 200 users subscribe at once, then 100 leave; every subscriber ends with the online set, in bounded frames",
    () =>
      Effect.gen(function* () {
        // A bucket of 1 000 writes, 50 a tick: the first ~44 joins go at once, the rest are flushed.
        const tick = Duration.millis(50)
        const harness = yield* startChatGateway({ presenceWritesPerSec: 1000, presenceTick: tick })
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
        // A full bucket pays any flush of this guild (<= 200 writes): 20 ticks refill it.
        yield* advanceTicks(tick, 20)
        const everyone = new Set(users)
        yield* eventually("every subscriber sees the 200 online", () =>
          clients.every((client) => sameSet(onlineSet(client, guild), everyone))
        )
        // Unbounded, this storm sends 200 snapshots + 200 * 201 / 2 = 20 100 updates.
        const joined = presenceFrames(clients)
        expect(joined).toBeLessThan(STORM_JOIN_BOUND)

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
        yield* advanceTicks(tick, 20)
        const remaining = new Set(users.slice(100))
        yield* eventually("every remaining subscriber sees exactly the 100 still online", () =>
          staying.every((client) => sameSet(onlineSet(client, guild), remaining))
        )
        // Unbounded: 100 offline updates to each of the 100 staying (10 000).
        const left = presenceFrames(staying) - sentBefore
        expect(left).toBeLessThan(STORM_LEAVE_BOUND)
      }),
    60_000
  )

  it.scoped(
    "a slow storm: users come online one a tick; every client ends with the true online set, in far fewer presence writes than one per update",
    () =>
      Effect.gen(function* () {
        // Below the old per-tick burst, every arrival went out at once to everyone: one write each.
        const tick = Duration.millis(50)
        const writesPerSec = 100
        const harness = yield* startChatGateway({ presenceWritesPerSec: writesPerSec, presenceTick: tick })
        const [guild, channel] = [newId(), newId()]
        const users = Array.from({ length: 60 }, () => newId())
        const clients: Array<TestClient> = []
        // The server's socket writes that carry presence (the real transport, counted on the way).
        let presenceWrites = 0
        for (const user of users) {
          const client = yield* harness.connectReady(user, { [guild]: "*" })
          clients.push(client)
          const [server] = yield* harness.serverConnections(user)
          const transport = server!.transport
          const write = transport.write.bind(transport)
          transport.write = (wire) => {
            if (wire.includes('"t":"presence_')) presenceWrites++
            return write(wire)
          }
          client.send({ v: 1, t: "subscribe", d: { guild_id: guild, channel_id: channel } })
          yield* eventually(`${user} subscribed`, () => client.frames.some((f) => f.t === "subscribed"))
          yield* TestClock.adjust(tick)
        }
        const settle = 20
        yield* advanceTicks(tick, settle)
        const everyone = new Set(users)
        yield* eventually("every client computes the 60 online", () =>
          clients.every((client) => sameSet(onlineSet(client, guild), everyone))
        )
        // One write per arrival to every subscriber then online (60 * 61 / 2), plus the 60 snapshots.
        const quadratic = (users.length * (users.length + 1)) / 2 + users.length
        // Now: the 60 snapshots, the full bucket, the refills of the ticks that passed, one overdraw.
        const seconds = ((users.length + settle) * Duration.toMillis(tick)) / 1000
        const budgeted = users.length + writesPerSec * (1 + seconds) + users.length
        expect(presenceWrites).toBeLessThanOrEqual(budgeted)
        expect(budgeted).toBeLessThan(quadratic / 3)
      }),
    60_000
  )
})

describe("presence write budget (in-process connections on the real gateway, TestClock ticks)", () => {
  const second = Duration.seconds(1)
  /** A tick of one second: the budget refills `writesPerSec` per tick, and a full bucket is one tick's worth. */
  const budgetGateway = (writesPerSec: number, overrides: Partial<GatewayConfigShape> = {}) =>
    startChatGateway({ presenceWritesPerSec: writesPerSec, presenceTick: second, ...overrides })

  let nextConnectionId = 2_000_000
  /** A user subscribed to `channel` of `guild` whose socket never pushes back: every frame is written at once. */
  const member = (harness: Harness, guild: string, channel: string) =>
    Effect.gen(function* () {
      const userId = newId()
      const connection = yield* inProcessConnection(harness, nextConnectionId++, userId, guild, 1 << 30)
      yield* connection.subscribe(channel)
      return { ...connection, userId, mark: connection.peer.written.length }
    })
  type Member = Effect.Effect.Success<ReturnType<typeof member>>

  /** The presence writes `who` received since its mark, each decoded into its frames. */
  const presenceWrites = (who: Member) =>
    who.peer.written
      .slice(who.mark)
      .map(framesOfWrite)
      .filter((frames) => frames.some((frame) => frame.t.startsWith("presence_")))

  /**
   * A channel event published after a tick: once every member has it, whatever the tick flushed was
   * written before it (one connection's writes keep their order).
   */
  const markerReached = (harness: Harness, guild: string, members: ReadonlyArray<Member>) =>
    Effect.gen(function* () {
      const name = `marker-${newId().slice(-6).toLowerCase()}`
      yield* publishOk(harness, "channel_create", {
        guild_id: guild,
        channel: { channel_id: newId(), name, kind: "text" }
      })
      yield* eventually(`marker ${name}`, () =>
        members.every((who) => who.peer.written.some((wire) => wire.includes(name)))
      )
    })

  const emitted = (harness: Harness, eventType: string) =>
    metricDelta(harness, "filament_gateway_events_emitted_total", { scope: "guild", event_type: eventType })

  it.scoped("a quiet guild announces at once: one write per subscriber, no tick needed", () =>
    Effect.gen(function* () {
      const harness = yield* startChatGateway()
      const [guild, channel] = [newId(), newId()]
      const first = yield* member(harness, guild, channel)
      const next = yield* member(harness, guild, channel)
      expect(presenceWrites(first)).toEqual([
        [{ v: 1, t: "presence_update", d: { guild_id: guild, user_id: next.userId, status: "online" } }]
      ])
    })
  )

  it.scoped(
    "a storm is held and flushed at a tick as one write per subscriber: the snapshot when it is fewer bytes, counted per recipient",
    () =>
      Effect.gen(function* () {
        // Budget 2 writes a tick: the first change (1 subscriber) goes at once, the rest wait.
        const harness = yield* budgetGateway(2)
        const [guild, channel] = [newId(), newId()]
        const syncs = yield* emitted(harness, "presence_sync")
        const updates = yield* emitted(harness, "presence_update")
        const members: Array<Member> = []
        for (let i = 0; i < 5; i++) members.push(yield* member(harness, guild, channel))
        for (const who of members) who.mark = who.peer.written.length
        const ids = members.map((who) => who.userId)
        // Held: the later four reached nobody.
        expect(yield* updates).toBe(1)

        // The bucket is full at the tick: the guild (5 writes, more than the bucket) goes, overdrawing it.
        yield* TestClock.adjust(second)
        yield* markerReached(harness, guild, members)
        for (const who of members) {
          // 4 updates would be ~4 x 110 B; the 5 ids' snapshot is fewer bytes.
          expect(presenceWrites(who)).toEqual([
            [{ v: 1, t: "presence_sync", d: { guild_id: guild, user_ids: ids } }]
          ])
        }
        expect(yield* syncs).toBe(5)
        expect(yield* updates).toBe(1)

        // Overdrawn by 3: the next change waits until the bucket is full again (3 ticks), then one write.
        for (const who of members) who.mark = who.peer.written.length
        const late = yield* member(harness, guild, channel)
        const everyone = [...members, late]
        for (const tick of [1, 2]) {
          yield* TestClock.adjust(second)
          yield* markerReached(harness, guild, everyone)
          expect(everyone.map(presenceWrites), `tick ${tick}`).toEqual(everyone.map(() => []))
        }
        yield* TestClock.adjust(second)
        yield* markerReached(harness, guild, everyone)
        for (const who of members) {
          expect(presenceWrites(who)).toEqual([
            [{ v: 1, t: "presence_update", d: { guild_id: guild, user_id: late.userId, status: "online" } }]
          ])
        }
      })
  )

  it.scoped(
    "held updates go out in order, concatenated into one write, when fewer bytes than the snapshot; a change and its opposite cancel",
    () =>
      Effect.gen(function* () {
        const harness = yield* budgetGateway(10)
        const [guild, channel, other] = [newId(), newId(), newId()]
        // Four at once (1 + 2 + 3 + 4 writes), four held and flushed at the tick (8 writes).
        const members: Array<Member> = []
        for (let i = 0; i < 8; i++) members.push(yield* member(harness, guild, channel))
        yield* TestClock.adjust(second)
        yield* markerReached(harness, guild, members)
        expect(members.every((who) => presenceWrites(who).length > 0)).toBe(true)

        // Budget 2 left: all held. The fifth user leaves, a ninth comes, a tenth comes and goes.
        for (const who of members) who.mark = who.peer.written.length
        const ninth = yield* member(harness, guild, channel)
        const leaving = members[4]!
        yield* leaving.unsubscribe(channel)
        const brief = yield* member(harness, guild, other)
        yield* brief.unsubscribe(other)
        const staying = [...members.filter((who) => who !== leaving), ninth]
        for (const who of staying) who.mark = Math.min(who.mark, who.peer.written.length)
        ninth.mark = ninth.peer.written.length
        const updates = yield* emitted(harness, "presence_update")
        const syncs = yield* emitted(harness, "presence_sync")

        yield* TestClock.adjust(second)
        yield* markerReached(harness, guild, staying)
        const online = { guild_id: guild, user_id: ninth.userId, status: "online" }
        const offline = { guild_id: guild, user_id: leaving.userId, status: "offline" }
        const snapshot = Outbound.encode(
          PresenceSync,
          { guild_id: guild as GuildId, user_ids: staying.map((who) => who.userId as UserId) },
          harness.config.maxEventBytes
        ).pipe(Either.getOrThrow)
        for (const who of staying.slice(0, -1)) {
          const writes = who.peer.written
            .slice(who.mark)
            .filter((wire) => framesOfWrite(wire).some((frame) => frame.t === "presence_update"))
          // One write holding both updates, in the order they happened; the brief user not at all.
          expect(writes).toHaveLength(1)
          expect(framesOfWrite(writes[0]!)).toEqual([
            { v: 1, t: "presence_update", d: online },
            { v: 1, t: "presence_update", d: offline }
          ])
          expect(writes[0]!.length).toBeLessThan(snapshot.wire.length)
        }
        // The ninth's own write has both too; every event counted once per recipient.
        expect(presenceWrites(ninth).map((frames) => frames.map((frame) => frame.d))).toEqual([
          [online, offline]
        ])
        expect(yield* updates).toBe(2 * staying.length)
        expect(yield* syncs).toBe(0)
      })
  )

  it.scoped(
    "a held change undone by its opposite holds nothing back: the next quiet guild announces at once",
    () =>
      Effect.gen(function* () {
        // Bucket of 5: 1 + 2 writes at once, the third join (3 > 2) held, then undone.
        const harness = yield* budgetGateway(5)
        const [busy, quiet, channel] = [newId(), newId(), newId()]
        const inBusy: Array<Member> = []
        for (let i = 0; i < 3; i++) inBusy.push(yield* member(harness, busy, channel))
        for (const who of inBusy) who.mark = who.peer.written.length
        yield* inBusy[2]!.unsubscribe(channel)
        // Nothing waits: a change in another guild that the bucket (2) pays goes out at once.
        const alone = yield* member(harness, quiet, channel)
        alone.mark = 0
        expect(presenceWrites(alone).at(-1)).toEqual([
          { v: 1, t: "presence_update", d: { guild_id: quiet, user_id: alone.userId, status: "online" } }
        ])
        yield* TestClock.adjust(second)
        yield* markerReached(harness, busy, inBusy.slice(0, 2))
        expect(inBusy.slice(0, 2).map(presenceWrites)).toEqual([[], []])
      })
  )

  it.scoped("a truncated snapshot never replaces the updates", () =>
    Effect.gen(function* () {
      const harness = yield* budgetGateway(2, { presenceSyncMaxUsers: 3 })
      const [guild, channel] = [newId(), newId()]
      const members: Array<Member> = []
      for (let i = 0; i < 5; i++) members.push(yield* member(harness, guild, channel))
      const watcher = members[0]!
      watcher.mark = watcher.peer.written.length
      yield* TestClock.adjust(second)
      yield* markerReached(harness, guild, [watcher])
      // Five online, three ids per snapshot: the four held updates, one write.
      expect(presenceWrites(watcher)).toEqual([
        members.slice(1).map((who) => ({
          v: 1,
          t: "presence_update",
          d: { guild_id: guild, user_id: who.userId, status: "online" }
        }))
      ])
    })
  )

  it.scoped(
    "the budget is the node's: held guilds flush oldest first, a guild larger than the bucket is not starved and small ones do not overtake it",
    () =>
      Effect.gen(function* () {
        // Bucket of 3 writes. Guild A: 1 + 2 writes at once, then three more held (A: 5 subscribers).
        const harness = yield* budgetGateway(3)
        const [large, small, channel] = [newId(), newId(), newId()]
        const inLarge: Array<Member> = []
        for (let i = 0; i < 5; i++) inLarge.push(yield* member(harness, large, channel))
        // Guild B is quiet, but A waits: B's changes wait behind it.
        const inSmall = [yield* member(harness, small, channel), yield* member(harness, small, channel)]
        for (const who of [...inLarge, ...inSmall]) who.mark = who.peer.written.length
        const quietFirst = presenceWrites(inSmall[0]!)
        expect(quietFirst).toEqual([])

        // Tick 1: the bucket is full, A (5 > 3) goes and overdraws it to -2; B waits.
        yield* TestClock.adjust(second)
        yield* markerReached(harness, large, inLarge)
        yield* markerReached(harness, small, inSmall)
        for (const who of inLarge) expect(presenceWrites(who)).toHaveLength(1)
        expect(inSmall.map(presenceWrites)).toEqual([[], []])
        // Tick 2: 1 in the bucket, B needs 2.
        yield* TestClock.adjust(second)
        yield* markerReached(harness, small, inSmall)
        expect(inSmall.map(presenceWrites)).toEqual([[], []])
        // Tick 3: B's turn, one write each: both users of B online (fewer bytes as a snapshot).
        yield* TestClock.adjust(second)
        yield* markerReached(harness, small, inSmall)
        const ids = inSmall.map((who) => who.userId)
        for (const who of inSmall) {
          expect(presenceWrites(who)).toEqual([
            [{ v: 1, t: "presence_sync", d: { guild_id: small, user_ids: ids } }]
          ])
        }
        for (const who of inLarge) expect(presenceWrites(who)).toHaveLength(1)
      })
  )

  it.scoped(
    "a batch must be one route's state events: two routes, or a recorded event, is a defect and reaches nobody",
    () =>
      Effect.gen(function* () {
        const harness = yield* budgetGateway(10_000)
        const [guild, other, channel] = [newId(), newId(), newId()]
        const who = yield* member(harness, guild, channel)
        who.mark = who.peer.written.length
        const built = (guildId: string) => {
          const payload = {
            guild_id: guildId as GuildId,
            user_id: newId() as UserId,
            status: "online" as const
          }
          return { payload, frame: Either.getOrThrow(Outbound.encode(PresenceUpdate, payload, 65_536)) }
        }
        const twoRoutes = yield* Effect.exit(
          harness.gateway.publishBuilt(PresenceUpdate, [built(guild), built(other)])
        )
        expect(Exit.isFailure(twoRoutes) && Cause.isDie(twoRoutes.cause)).toBe(true)
        const payload = { guild_id: guild, channel: { channel_id: newId(), name: "recorded", kind: "text" } }
        const recorded = yield* Effect.exit(
          harness.gateway.publishBuilt(ChannelCreate, [
            {
              payload: payload as unknown as PayloadOf<typeof ChannelCreate>,
              frame: Either.getOrThrow(
                Outbound.encode(ChannelCreate, payload as unknown as PayloadOf<typeof ChannelCreate>, 65_536)
              )
            }
          ])
        )
        expect(Exit.isFailure(recorded) && Cause.isDie(recorded.cause)).toBe(true)
        yield* markerReached(harness, guild, [who])
        expect(presenceWrites(who)).toEqual([])
      })
  )
})
