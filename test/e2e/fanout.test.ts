/**
 * Fanout over real sockets (reference §9.1, §9.3): channel / guild / user targeting, guild delivery
 * once per connection, oversized outbound dropped and counted, slow consumers evicted alone while
 * a healthy neighbour receives every event in order, bounded memory for a peer that stops reading,
 * and the bus (other nodes) served before the local send loop.
 *
 * "Nothing else arrived" is proven without waiting: a marker event sent afterwards must be the next
 * frame (delivery order per connection is guaranteed).
 */
import { describe, expect, it } from "@effect/vitest"
import type { Socket } from "node:net"
import { Effect, Either, Layer, MutableQueue } from "effect"
import { MessageCreate } from "../../src/protocol/events/message.js"
import { ProfileUpdate } from "../../src/protocol/events/profile.js"
import { ChannelCreate, WorkspaceRoleReorder } from "../../src/protocol/events/workspace.js"
import type { ChannelId, GuildId, UserId } from "../../src/protocol/Ids.js"
import * as Bus from "../../src/server/core/Bus.js"
import {
  BASE_UNIX,
  message,
  newId,
  startGateway,
  yieldToIo,
  typed,
  type Harness,
  type TestClient
} from "../server/harness.js"

const channelCreate = (guild: string, name: string) =>
  typed(ChannelCreate, { guild_id: guild, channel: { channel_id: newId(), name, kind: "text" } })

const roleReorder = (guild: string, seq: number) =>
  typed(WorkspaceRoleReorder, {
    guild_id: guild,
    role_ids: Array.from({ length: 64 }, () => newId()),
    updated_at_unix: BASE_UNIX + seq
  })

const profile = (user: string, seq: number, about = "x") =>
  typed(ProfileUpdate, {
    user_id: user,
    updated_fields: { about_markdown: about },
    updated_at_unix: BASE_UNIX + seq
  })

describe("targeting", () => {
  it.scoped("channel events reach only that channel key's subscribers", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway()
      const [guild, target, other] = [newId(), newId(), newId()]
      const a = yield* harness.connectReady(newId(), { [guild]: "*" })
      const b = yield* harness.connectReady(newId(), { [guild]: "*" })
      yield* a.subscribe(guild, target)
      yield* b.subscribe(guild, other)
      expect(yield* harness.gateway.publish(MessageCreate, message(guild, target, "to target"))).toBe(1)
      yield* harness.gateway.publish(MessageCreate, message(guild, other, "marker"))
      expect((yield* a.nextOfType("message_create")).d["content"]).toBe("to target")
      expect((yield* b.nextOfType("message_create")).d["content"]).toBe("marker")
    })
  )

  it.scoped(
    "a guild event reaches each connection once, however many channels it holds; other guilds nothing",
    () =>
      Effect.gen(function* () {
        const harness = yield* startGateway()
        const [main, otherGuild] = [newId(), newId()]
        const both = yield* harness.connectReady(newId(), { [main]: "*" })
        yield* both.subscribe(main, newId())
        yield* both.subscribe(main, newId())
        const elsewhere = yield* harness.connectReady(newId(), { [otherGuild]: "*" })
        yield* elsewhere.subscribe(otherGuild, newId())
        const before = yield* harness.metric("filament_gateway_events_emitted_total", {
          scope: "guild",
          event_type: "channel_create"
        })
        expect(yield* harness.gateway.publish(ChannelCreate, channelCreate(main, "first"))).toBe(1)
        yield* harness.gateway.publish(ChannelCreate, channelCreate(main, "second"))
        yield* harness.gateway.publish(ChannelCreate, channelCreate(otherGuild, "marker"))
        expect(((yield* both.next()).d["channel"] as { name: string }).name).toBe("first")
        expect(((yield* both.next()).d["channel"] as { name: string }).name).toBe("second")
        expect(((yield* elsewhere.next()).d["channel"] as { name: string }).name).toBe("marker")
        expect(
          yield* harness.metric("filament_gateway_events_emitted_total", {
            scope: "guild",
            event_type: "channel_create"
          })
        ).toBe(before + 3)
      })
  )

  it.scoped("a guild event does not reach a connection after it unsubscribed the guild's last channel", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway()
      const [guild, a, b] = [newId(), newId(), newId()]
      const client = yield* harness.connectReady(newId(), { [guild]: "*" })
      yield* client.subscribe(guild, a)
      client.send({ v: 1, t: "unsubscribe", d: { guild_id: guild, channel_id: a } })
      yield* client.nextOfType("unsubscribed")
      yield* harness.gateway.publish(ChannelCreate, channelCreate(guild, "unseen"))
      yield* client.subscribe(guild, b)
      yield* harness.gateway.publish(ChannelCreate, channelCreate(guild, "seen"))
      expect(((yield* client.nextOfType("channel_create")).d["channel"] as { name: string }).name).toBe(
        "seen"
      )
    })
  )

  it.scoped(
    "user events reach every connection of the listed users, no one else, without subscriptions",
    () =>
      Effect.gen(function* () {
        const harness = yield* startGateway()
        const [alice, bob] = [newId(), newId()]
        const a1 = yield* harness.connectReady(alice)
        const a2 = yield* harness.connectReady(alice)
        const b = yield* harness.connectReady(bob)
        const sent = yield* harness.gateway.publishToUsers(ProfileUpdate, profile(alice, 1), [
          alice as UserId,
          alice as UserId
        ])
        expect(sent).toBe(2)
        yield* harness.gateway.publishToUsers(ProfileUpdate, profile(bob, 2), [bob as UserId])
        for (const client of [a1, a2])
          expect((yield* client.nextOfType("profile_update")).d["user_id"]).toBe(alice)
        expect((yield* b.nextOfType("profile_update")).d["user_id"]).toBe(bob)
      })
  )
})

describe("outbound size cap", () => {
  it.scoped(
    "an oversized broadcast reaches nobody, evicts nobody, is counted; a normal one is delivered",
    () =>
      Effect.gen(function* () {
        const harness = yield* startGateway({ maxEventBytes: 400 })
        const [user, guild, channel] = [newId(), newId(), newId()]
        const client = yield* harness.connectReady(user, { [guild]: [channel] })
        yield* client.subscribe(guild, channel)
        const labels = { scope: "channel", event_type: "message_create", reason: "oversized_outbound" }
        const before = yield* harness.metric("filament_gateway_events_dropped_total", labels)
        // Through ingress: the inbound frame fits the cap, the built event (content twice) does not.
        client.send({
          v: 1,
          t: "message_create",
          d: { guild_id: guild, channel_id: channel, content: "y".repeat(200) }
        })
        client.send({
          v: 1,
          t: "message_create",
          d: { guild_id: guild, channel_id: channel, content: "small payload" }
        })
        expect((yield* client.nextOfType("message_create")).d["content"]).toBe("small payload")
        expect(yield* harness.metric("filament_gateway_events_dropped_total", labels)).toBe(before + 1)
        // In-process the error is typed.
        const result = yield* Effect.either(
          harness.gateway.publish(MessageCreate, message(guild, channel, "z".repeat(300)))
        )
        expect(Either.isLeft(result) && result.left._tag).toBe("OversizedOutbound")
        expect(yield* harness.metric("filament_gateway_events_dropped_total", labels)).toBe(before + 2)
        expect(client.closed).toBeUndefined()
      })
  )
})

interface SlowConsumerScenario {
  readonly scope: "channel" | "guild" | "user"
  readonly eventType: string
  /** Grants for both clients, what each client does once connected, and the publisher of event `seq`. */
  readonly make: (
    harness: Harness,
    users: ReadonlyArray<UserId>
  ) => {
    readonly guilds?: Readonly<Record<string, "*">>
    readonly prepare: (client: TestClient) => Effect.Effect<unknown>
    readonly publish: (seq: number) => Effect.Effect<unknown, unknown>
  }
  readonly seqOf: (frame: { readonly d: Record<string, unknown> }) => number
}

const OUTBOX = 8
const MAX_ROUNDS = 50_000

/**
 * Publishes until the paused client is evicted, sampling its outbox and socket buffer after every
 * delivery; the healthy neighbour must get every event, in order.
 */
const slowConsumer = ({ eventType, make, scope, seqOf }: SlowConsumerScenario) =>
  Effect.gen(function* () {
    const harness = yield* startGateway({ outboundQueue: OUTBOX })
    const users: ReadonlyArray<UserId> = [newId() as UserId, newId() as UserId]
    const scenario = make(harness, users)
    const slow = yield* harness.connectReady(users[0]!, scenario.guilds)
    const healthy = yield* harness.connectReady(users[1]!, scenario.guilds)
    yield* scenario.prepare(slow)
    yield* scenario.prepare(healthy)
    const [connection] = yield* harness.serverConnections(users[0]!)
    if (connection === undefined) return expect.fail("no server-side connection")
    const dropped = { scope, event_type: eventType, reason: "full_queue" }
    const droppedBefore = yield* harness.metric("filament_gateway_events_dropped_total", dropped)
    const evictedBefore = yield* harness.metric("filament_ws_disconnects_total", { reason: "slow_consumer" })

    slow.socket.pause()
    let maxOutbox = 0
    let maxBuffered = 0
    let published = 0
    while (connection.isOpen && published < MAX_ROUNDS) {
      yield* scenario.publish(published++)
      maxOutbox = Math.max(maxOutbox, MutableQueue.length(connection.outbox))
      maxBuffered = Math.max(maxBuffered, connection.bufferedAmount)
      yield* yieldToIo
    }
    expect(connection.disconnectReason).toBe("slow_consumer")
    // Bounded memory: never more queued than the outbox capacity, never more buffered than the
    // high-water mark plus the one frame that crossed it.
    expect(maxOutbox).toBeLessThanOrEqual(OUTBOX)
    const highWater = Math.max(
      harness.config.socketHighWaterBytes,
      connection.transport.writableHighWaterMark
    )
    expect(maxBuffered).toBeLessThanOrEqual(highWater + harness.config.maxEventBytes)
    expect(MutableQueue.length(connection.outbox)).toBe(0)
    expect(yield* harness.metric("filament_gateway_events_dropped_total", dropped)).toBe(droppedBefore + 1)
    expect(yield* harness.metric("filament_ws_disconnects_total", { reason: "slow_consumer" })).toBe(
      evictedBefore + 1
    )
    // The evicted connection left every index.
    expect(yield* harness.serverConnections(users[0]!)).toHaveLength(0)

    // The healthy neighbour got every event, in order.
    const seqs: Array<number> = []
    while (seqs.length < published) {
      const frame = yield* healthy.next()
      if (frame.t === eventType) seqs.push(seqOf(frame))
    }
    expect(seqs).toEqual(Array.from({ length: published }, (_, i) => i))
    expect(healthy.closed).toBeUndefined()

    // Reading again, the slow client gets what was written before the eviction, then 1008.
    slow.socket.resume()
    expect(yield* slow.waitClosed()).toEqual({ code: 1008, reason: "slow_consumer" })
  })

describe("slow consumers", () => {
  it.scoped("channel fanout evicts only the full connection (1008 slow_consumer)", () =>
    slowConsumer({
      scope: "channel",
      eventType: "message_create",
      make: (harness) => {
        const [guild, channel] = [newId(), newId()]
        const content = "m".repeat(1500)
        return {
          guilds: { [guild]: "*" },
          prepare: (client) => client.subscribe(guild, channel),
          publish: (seq) => harness.gateway.publish(MessageCreate, message(guild, channel, content, seq))
        }
      },
      seqOf: (frame) => (frame.d["created_at_unix"] as number) - BASE_UNIX
    })
  )

  it.scoped("guild fanout evicts only the full connection", () =>
    slowConsumer({
      scope: "guild",
      eventType: "workspace_role_reorder",
      make: (harness) => {
        const guild = newId()
        return {
          guilds: { [guild]: "*" },
          prepare: (client) => client.subscribe(guild, newId()),
          publish: (seq) => harness.gateway.publish(WorkspaceRoleReorder, roleReorder(guild, seq))
        }
      },
      seqOf: (frame) => (frame.d["updated_at_unix"] as number) - BASE_UNIX
    })
  )

  it.scoped("user fanout evicts only the full connection", () =>
    slowConsumer({
      scope: "user",
      eventType: "profile_update",
      make: (harness, users) => {
        const about = "a".repeat(2000)
        return {
          prepare: () => Effect.void,
          publish: (seq) =>
            harness.gateway.publishToUsers(ProfileUpdate, profile(users[0]!, seq, about), users)
        }
      },
      seqOf: (frame) => (frame.d["updated_at_unix"] as number) - BASE_UNIX
    })
  )
})

describe("a peer that stops reading", () => {
  it.scoped("is evicted with bounded memory while events keep flowing (default outbox)", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway()
      const [user, guild, channel] = [newId(), newId(), newId()]
      const client = yield* harness.connectReady(user, { [guild]: "*" })
      yield* client.subscribe(guild, channel)
      const [connection] = yield* harness.serverConnections(user)
      if (connection === undefined) return expect.fail("no server-side connection")
      client.socket.pause()
      const content = "p".repeat(1800)
      let maxOutbox = 0
      let maxBuffered = 0
      let rounds = 0
      while (connection.isOpen && rounds < MAX_ROUNDS) {
        yield* harness.gateway.publish(MessageCreate, message(guild, channel, content, rounds++))
        maxOutbox = Math.max(maxOutbox, MutableQueue.length(connection.outbox))
        maxBuffered = Math.max(maxBuffered, connection.bufferedAmount)
        yield* yieldToIo
      }
      expect(connection.disconnectReason).toBe("slow_consumer")
      expect(maxOutbox).toBe(harness.config.outboundQueue)
      const highWater = Math.max(
        harness.config.socketHighWaterBytes,
        connection.transport.writableHighWaterMark
      )
      expect(maxBuffered).toBeGreaterThanOrEqual(highWater)
      expect(maxBuffered).toBeLessThanOrEqual(highWater + harness.config.maxEventBytes)
      expect(MutableQueue.length(connection.outbox)).toBe(0)
      expect(yield* harness.serverConnections(user)).toHaveLength(0)
    })
  )
})

describe("with other nodes", () => {
  it.scoped("a broadcast is handed to the bus before the local send loop writes a byte", () =>
    Effect.gen(function* () {
      // The in-memory bus, recording how much the local recipients had been sent when it was called.
      let recipients: ReadonlyArray<Socket> = []
      const sent = () => recipients.reduce((total, socket) => total + socket.bytesWritten, 0)
      const sentAtPublish: Array<number> = []
      const memory = yield* Bus.makeMemory
      const recordingBus = Layer.succeed(Bus.EventBus, {
        ...memory,
        publish: () => void sentAtPublish.push(sent())
      })
      const harness = yield* startGateway({}, recordingBus)
      const [guild, channel] = [newId(), newId()]
      const clients: Array<TestClient> = []
      for (let i = 0; i < 3; i++) {
        const client = yield* harness.connectReady(newId(), { [guild]: "*" })
        yield* client.subscribe(guild, channel)
        clients.push(client)
      }
      const members = yield* harness.registry.channelMembers(guild as GuildId, channel as ChannelId)
      recipients = members.map((connection) => connection.transport as Socket)
      const before = sent()
      expect(yield* harness.gateway.publish(MessageCreate, message(guild, channel, "everywhere"))).toBe(3)
      expect(sentAtPublish).toEqual([before])
      expect(sent()).toBeGreaterThan(before)
      for (const client of clients)
        expect((yield* client.nextOfType("message_create")).d["content"]).toBe("everywhere")
    })
  )
})
