/**
 * The Redis event bus with a real `redis-server` and real sockets: several gateway nodes in this
 * process (each its own layer, HTTP server and bus connections on port 0), joined only by Redis.
 *
 * "Exactly once" is proven by order: Redis delivers one publisher's messages to a subscriber in
 * publish order, so a duplicate or a loss would show before the publisher's end marker.
 */
import { createHmac } from "node:crypto"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Clock, Duration, Effect, Either, Exit, Option, Redacted, TestClock } from "effect"
import { MessageCreate } from "../../src/protocol/events/message.js"
import { ProfileUpdate } from "../../src/protocol/events/profile.js"
import { ChannelCreate } from "../../src/protocol/events/workspace.js"
import type { GuildId, UserId } from "../../src/protocol/Ids.js"
import type { GatewayConfigShape } from "../../src/server/Config.js"
import { encodeMessage, type BusHeader } from "../../src/server/cluster/BusCodec.js"
import { guildTopic, userTopic } from "../../src/server/registry/Interest.js"
import * as Outbound from "../../src/server/core/Outbound.js"
import {
  BASE_UNIX,
  message,
  newId,
  startGateway,
  typed,
  type Frame,
  type Harness,
  type TestClient
} from "../server/harness.js"
import { BUS_SECRET, joinedBy, startClusterNode, subscribe as subscribeChat, summedMetric } from "./chat.js"
import { eventuallyEffect } from "../deadline.js"
import { freePort, hasRedisServer, startRedis, type RedisBackend } from "./redis.js"

const channelCreate = (guild: string, name: string) =>
  typed(ChannelCreate, { guild_id: guild, channel: { channel_id: newId(), name, kind: "text" } })

const profile = (user: string, about: string) =>
  typed(ProfileUpdate, {
    user_id: user,
    updated_fields: { about_markdown: about },
    updated_at_unix: BASE_UNIX
  })

const clusterConfig = (redis: RedisBackend, overrides: Partial<GatewayConfigShape> = {}) => ({
  ...joinedBy(redis),
  busReconnectMax: Duration.millis(200),
  ...overrides
})

const startNode = (redis: RedisBackend, overrides: Partial<GatewayConfigShape> = {}) =>
  startGateway(clusterConfig(redis, overrides))

/** Consumes frames until `done` holds for those seen so far (each wait bounded by the deadline). */
const collectUntil = (client: TestClient, done: (frames: ReadonlyArray<Frame>) => boolean) =>
  Effect.gen(function* () {
    const seen: Array<Frame> = []
    while (!done(seen)) seen.push(yield* client.next())
    return seen
  })

const field = (frames: ReadonlyArray<Frame>, t: string, read: (d: Record<string, unknown>) => unknown) =>
  frames.filter((frame) => frame.t === t).map((frame) => read(frame.d))

const content = (d: Record<string, unknown>) => d["content"]
const channelName = (d: Record<string, unknown>) => (d["channel"] as { name: string }).name
const about = (d: Record<string, unknown>) =>
  (d["updated_fields"] as { about_markdown: string }).about_markdown

const readyStatus = (node: Harness) => Effect.map(node.http("/readyz"), (response) => response.status)

const busDropped = (node: Harness, reason: string) =>
  node.metric("filament_gateway_bus_dropped_total", { reason })

describe.skipIf(!hasRedisServer)("cluster bus over Redis", () => {
  it.scoped("a node refuses to start when Redis cannot be reached within GATEWAY_BUS_TIMEOUT_SECS", () =>
    Effect.gen(function* () {
      const port = yield* freePort // nothing listens there
      const exit = yield* Effect.exit(
        startGateway({
          redis: Option.some({
            cluster: false,
            urls: Redacted.make([`redis://127.0.0.1:${port}`]),
            busSecret: Redacted.make(BUS_SECRET),
            busAcceptSecret: Option.none()
          }),
          busTimeout: Duration.millis(300)
        })
      )
      expect(Exit.isFailure(exit) && Cause.failureOption(exit.cause)).toMatchObject(
        Option.some({ _tag: "BusUnavailable", reason: "bus_unavailable" })
      )
    })
  )

  it.scoped(
    "three nodes: channel, guild and user events from every node reach every subscriber exactly once, in publish order",
    () =>
      Effect.gen(function* () {
        const redis = yield* startRedis
        const a = yield* startNode(redis)
        const b = yield* startNode(redis)
        const c = yield* startNode(redis)
        const [guild, channel, other] = [newId(), newId(), newId()]
        const user = newId() as UserId
        const access = { [guild]: "*" as const }
        const onA = yield* a.connectReady(newId(), access)
        const onB = yield* b.connectReady(user, access)
        const twoChannelsOnB = yield* b.connectReady(newId(), access)
        const onC = yield* c.connectReady(user, access)
        for (const client of [onA, onB, twoChannelsOnB, onC]) yield* client.subscribe(guild, channel)
        yield* twoChannelsOnB.subscribe(guild, other)

        const nodes = [a, b, c]
        const received0 = yield* summedMetric(nodes, "filament_gateway_bus_received_total")
        const lag0 = yield* summedMetric(nodes, "filament_gateway_bus_lag_seconds_count")
        const N = 20
        for (let i = 0; i < N; i++) {
          // Local recipients only: the others are reached over the bus.
          expect(yield* a.gateway.publish(MessageCreate, message(guild, channel, `A${i}`))).toBe(1)
          expect(yield* b.gateway.publish(ChannelCreate, channelCreate(guild, `B${i}`))).toBe(2)
          expect(yield* c.gateway.publishToUsers(ProfileUpdate, profile(user, `C${i}`), [user])).toBe(1)
        }
        yield* a.gateway.publish(MessageCreate, message(guild, channel, "A-end"))
        yield* b.gateway.publish(ChannelCreate, channelCreate(guild, "B-end"))
        yield* c.gateway.publishToUsers(ProfileUpdate, profile(user, "C-end"), [user])
        yield* c.gateway.publish(ChannelCreate, channelCreate(guild, "C-end"))

        const expected = (prefix: string) => [
          ...Array.from({ length: N }, (_, i) => `${prefix}${i}`),
          `${prefix}-end`
        ]
        for (const [client, isUser] of [
          [onA, false],
          [onB, true],
          [twoChannelsOnB, false],
          [onC, true]
        ] as const) {
          const frames = yield* collectUntil(client, (seen) => {
            const names = field(seen, "channel_create", channelName)
            return (
              field(seen, "message_create", content).includes("A-end") &&
              names.includes("B-end") &&
              names.includes("C-end")
            )
          })
          expect(field(frames, "message_create", content)).toEqual(expected("A"))
          // A guild event once per connection, however many of the guild's channels it holds.
          const names = field(frames, "channel_create", channelName) as Array<string>
          expect(names.filter((name) => name.startsWith("B"))).toEqual(expected("B"))
          expect(names.filter((name) => name.startsWith("C"))).toEqual(["C-end"])
          expect(field(frames, "profile_update", about)).toEqual(isUser ? expected("C") : [])
        }
        // Bus traffic follows interest: A's channel events to B and C, B's guild events to A and C,
        // C's user events to B only (the user's other node), C's guild marker to A and B.
        const remote = 2 * (N + 1) + 2 * (N + 1) + (N + 1) + 2
        expect((yield* summedMetric(nodes, "filament_gateway_bus_received_total")) - received0).toBe(remote)
        expect((yield* summedMetric(nodes, "filament_gateway_bus_lag_seconds_count")) - lag0).toBe(remote)
      })
  )

  it.scoped(
    "a node subscribes to a topic while it has local interest and leaves it with the last connection",
    () =>
      Effect.gen(function* () {
        const redis = yield* startRedis
        const probe = yield* redis.client()
        const a = yield* startNode(redis)
        const b = yield* startNode(redis)
        const [guild, channel, other] = [newId(), newId(), newId()] as const
        const user = newId()
        const subscribers = (topic: string) =>
          Effect.map(
            Effect.promise(() => probe.call("PUBSUB", "SHARDNUMSUB", topic) as Promise<[string, number]>),
            ([, count]) => count
          )
        expect(yield* subscribers(guildTopic(guild as GuildId))).toBe(0)
        const first = yield* a.connectReady(user, { [guild]: "*" })
        const second = yield* a.connectReady(newId(), { [guild]: "*" })
        const third = yield* b.connectReady(newId(), { [guild]: "*" })
        yield* first.subscribe(guild, channel)
        yield* second.subscribe(guild, other)
        // The ack waits for the bus: the topic is subscribed by the time it arrives.
        expect(yield* subscribers(guildTopic(guild as GuildId))).toBe(1)
        expect(yield* subscribers(userTopic(user as never))).toBe(1)
        yield* third.subscribe(guild, channel)
        expect(yield* subscribers(guildTopic(guild as GuildId))).toBe(2)

        first.send({ v: 1, t: "unsubscribe", d: { guild_id: guild, channel_id: channel } })
        yield* first.nextOfType("unsubscribed")
        // Another local connection still holds the guild: node A keeps its subscription.
        expect(yield* subscribers(guildTopic(guild as GuildId))).toBe(2)
        second.socket.close()
        yield* eventuallyEffect(
          "node A leaves the guild topic",
          Effect.map(subscribers(guildTopic(guild as GuildId)), (n) => n === 1)
        )
        first.socket.close()
        yield* eventuallyEffect(
          "node A leaves the user topic",
          Effect.map(subscribers(userTopic(user as never)), (n) => n === 0)
        )
        third.socket.close()
        yield* eventuallyEffect(
          "no node holds the guild topic",
          Effect.map(subscribers(guildTopic(guild as GuildId)), (n) => n === 0)
        )
      })
  )

  it.scoped(
    "forged, tampered, oversized, malformed, stale and misrouted bus messages are dropped and counted",
    () =>
      Effect.gen(function* () {
        const redis = yield* startRedis
        const injector = yield* redis.client()
        const a = yield* startNode(redis)
        const b = yield* startNode(redis)
        const [guild, channel, otherGuild] = [newId(), newId(), newId()]
        const onA = yield* a.connectReady(newId(), { [guild]: "*" })
        const onB = yield* b.connectReady(newId(), { [guild]: "*" })
        yield* onA.subscribe(guild, channel)
        yield* onB.subscribe(guild, channel)

        const secret = Buffer.from(BUS_SECRET)
        const now = yield* Clock.currentTimeMillis
        const envelope = (text: string) => {
          const frame = Either.getOrThrow(
            Outbound.encode(MessageCreate, message(guild, channel, text), 1 << 20)
          )
          return frame.wire.subarray(frame.wire.length - frame.bytes)
        }
        const header = (overrides: Partial<BusHeader> = {}): BusHeader => ({
          node: "f".repeat(32),
          seq: 0,
          at: now,
          scope: "channel",
          type: "message_create",
          guild: guild as BusHeader["guild"] & string,
          channel: channel as BusHeader["channel"] & string,
          ...overrides
        })
        const tampered = encodeMessage(secret, header(), envelope("tampered"))
        tampered.writeUInt8(tampered.readUInt8(tampered.length - 3) ^ 1, tampered.length - 3)
        const unknownType = encodeMessage(secret, header({ type: "no_such_event" }), envelope("unknown type"))
        const wrongVersion = encodeMessage(secret, header(), envelope("version"))
        wrongVersion[0] = 2
        // Correctly signed, but the signed header is not JSON.
        const notJson = encodeMessage(secret, header(), envelope("not json"))
        notJson.write("!", 35)
        createHmac("sha256", secret).update(notJson.subarray(33)).digest().copy(notJson, 1)
        const forged: ReadonlyArray<readonly [string, Buffer]> = [
          [
            "bad_signature",
            encodeMessage(Buffer.from("not-the-bus-secret-0123456789-abcdef"), header(), envelope("forged"))
          ],
          ["bad_signature", tampered],
          [
            "oversized",
            encodeMessage(secret, header(), Buffer.concat([envelope("big"), Buffer.alloc(99_000, " ")]))
          ],
          ["malformed", Buffer.from("hello")],
          ["malformed", wrongVersion],
          ["malformed", notJson],
          ["malformed", unknownType],
          ["malformed", encodeMessage(secret, header({ scope: "guild" }), envelope("scope mismatch"))],
          ["stale", encodeMessage(secret, header({ at: now - 60_000 }), envelope("stale"))],
          [
            "misrouted",
            encodeMessage(
              secret,
              header({ guild: otherGuild as BusHeader["guild"] & string }),
              envelope("misrouted")
            )
          ]
        ]
        const reasons = ["bad_signature", "oversized", "malformed", "stale", "misrouted"]
        const before = new Map<string, number>()
        for (const node of [a, b])
          for (const reason of reasons) before.set(`${node.port} ${reason}`, yield* busDropped(node, reason))

        const topic = guildTopic(guild as GuildId)
        for (const [, raw] of forged) yield* Effect.promise(() => injector.spublish(topic, raw))
        // A correctly signed message from a "foreign node": proves the forgeries fail only by their defect.
        yield* Effect.promise(() =>
          injector.spublish(topic, encodeMessage(secret, header(), envelope("genuine")))
        )

        for (const client of [onA, onB]) {
          const frame = yield* client.nextOfType("message_create")
          expect(frame.d["content"]).toBe("genuine")
        }
        // Both nodes hold the topic: every forgery was counted once on each node.
        for (const node of [a, b])
          for (const reason of reasons) {
            const count = forged.filter(([why]) => why === reason).length
            expect((yield* busDropped(node, reason)) - before.get(`${node.port} ${reason}`)!).toBe(count)
          }
      })
  )

  it.scoped(
    "Redis restarted mid-stream: local delivery never stops, the nodes reconnect, restore their interest and count the gap",
    () =>
      Effect.gen(function* () {
        const redis = yield* startRedis
        const a = yield* startNode(redis)
        const b = yield* startNode(redis)
        const [guild, channel] = [newId(), newId()]
        const onA = yield* a.connectReady(newId(), { [guild]: "*" })
        const onB = yield* b.connectReady(newId(), { [guild]: "*" })
        yield* onA.subscribe(guild, channel)
        yield* onB.subscribe(guild, channel)
        const metric = (name: string) => summedMetric([a, b], name)
        const reconnects0 = yield* metric("filament_gateway_bus_reconnects_total")
        const outage0 = yield* metric("filament_gateway_bus_outage_seconds_total")
        const unavailable0 = yield* busDropped(a, "unavailable")

        yield* a.gateway.publish(MessageCreate, message(guild, channel, "before"))
        expect((yield* onB.nextOfType("message_create")).d["content"]).toBe("before")
        expect((yield* onA.nextOfType("message_create")).d["content"]).toBe("before")

        yield* redis.kill
        for (const node of [a, b])
          yield* eventuallyEffect(
            "readyz reports the bus down",
            Effect.map(readyStatus(node), (s) => s === 503)
          )
        expect(JSON.parse((yield* a.http("/readyz")).body)).toEqual({ status: "bus_unavailable" })
        yield* TestClock.adjust("3 seconds")

        // Local delivery goes on; the cross-node copy is counted as not published.
        expect(yield* a.gateway.publish(MessageCreate, message(guild, channel, "during"))).toBe(1)
        expect((yield* onA.nextOfType("message_create")).d["content"]).toBe("during")
        yield* eventuallyEffect(
          "the missed publish is counted",
          Effect.map(busDropped(a, "unavailable"), (n) => n === unavailable0 + 1)
        )

        yield* redis.start
        for (const node of [a, b])
          yield* eventuallyEffect(
            "readyz ready again",
            Effect.map(readyStatus(node), (s) => s === 200)
          )
        expect(yield* metric("filament_gateway_bus_reconnects_total")).toBe(reconnects0 + 2)
        // The gap, by the gateways' clock: 3 s on each node.
        expect(yield* metric("filament_gateway_bus_outage_seconds_total")).toBe(outage0 + 6)

        // Interest restored in both directions; the publish made during the outage never arrives (at-most-once).
        yield* a.gateway.publish(MessageCreate, message(guild, channel, "after from A"))
        expect((yield* onB.nextOfType("message_create")).d["content"]).toBe("after from A")
        yield* b.gateway.publish(MessageCreate, message(guild, channel, "after from B"))
        expect((yield* onA.nextOfType("message_create")).d["content"]).toBe("after from A")
        expect((yield* onA.nextOfType("message_create")).d["content"]).toBe("after from B")
      })
  )

  it.scoped(
    "bus secret rotation: a node signing with the new secret and one still signing with the old reach each other when each accepts the other's; a node without it drops and counts",
    () =>
      Effect.gen(function* () {
        const redis = yield* startRedis
        const NEW = "bus-secret-new-0123456789-0123456789-abc"
        // Step 1 of the rollout: still signing with the old secret, already accepting the new one.
        const stepOne = yield* startNode(redis, joinedBy(redis, { sign: BUS_SECRET, accept: NEW }))
        // Step 2: signing with the new secret, still accepting the old one.
        const stepTwo = yield* startNode(redis, joinedBy(redis, { sign: NEW, accept: BUS_SECRET }))
        // Not rolled out yet: knows only the old secret.
        const behind = yield* startNode(redis, joinedBy(redis))
        const [guild, channel] = [newId(), newId()]
        const access = { [guild]: "*" as const }
        const [onOne, onTwo, onBehind] = [
          yield* stepOne.connectReady(newId(), access),
          yield* stepTwo.connectReady(newId(), access),
          yield* behind.connectReady(newId(), access)
        ]
        for (const client of [onOne, onTwo, onBehind]) yield* client.subscribe(guild, channel)
        const droppedBefore = yield* busDropped(behind, "bad_signature")

        yield* stepOne.gateway.publish(MessageCreate, message(guild, channel, "old-signed"))
        yield* stepTwo.gateway.publish(MessageCreate, message(guild, channel, "new-signed"))
        const both = (frames: ReadonlyArray<Frame>) => field(frames, "message_create", content).length === 2
        for (const client of [onOne, onTwo]) {
          const got = field(yield* collectUntil(client, both), "message_create", content)
          expect([...got].sort()).toEqual(["new-signed", "old-signed"])
        }
        // The node behind gets the old-signed event and drops the new-signed one, counted.
        expect((yield* onBehind.nextOfType("message_create")).d["content"]).toBe("old-signed")
        yield* eventuallyEffect(
          "the new-signed message dropped",
          Effect.map(busDropped(behind, "bad_signature"), (dropped) => dropped === droppedBefore + 1)
        )
        yield* behind.gateway.publish(MessageCreate, message(guild, channel, "marker"))
        expect((yield* onBehind.nextOfType("message_create")).d["content"]).toBe("marker")
      })
  )
  it.scoped(
    "a genuine message captured off Redis and published again is dropped and counted (replayed) inside the staleness window, stale after it; other publishers are unaffected",
    () =>
      Effect.gen(function* () {
        const redis = yield* startRedis
        const capture = yield* redis.client()
        const injector = yield* redis.client()
        const a = yield* startNode(redis)
        const b = yield* startNode(redis)
        const c = yield* startNode(redis)
        const [guild, channel] = [newId(), newId()]
        const onB = yield* b.connectReady(newId(), { [guild]: "*" })
        yield* onB.subscribe(guild, channel)
        const topic = guildTopic(guild as GuildId)
        const captured: Array<Buffer> = []
        capture.on("smessageBuffer", (_channel: Buffer, raw: Buffer) => captured.push(raw))
        yield* Effect.promise(() => capture.ssubscribe(topic))
        const replayed0 = yield* busDropped(b, "replayed")
        const stale0 = yield* busDropped(b, "stale")

        yield* a.gateway.publish(MessageCreate, message(guild, channel, "once"))
        expect((yield* onB.nextOfType("message_create")).d["content"]).toBe("once")
        yield* eventuallyEffect(
          "the message captured",
          Effect.sync(() => captured.length === 1)
        )
        for (let i = 0; i < 3; i++) yield* Effect.promise(() => injector.spublish(topic, captured[0]!))
        yield* eventuallyEffect(
          "three replays counted",
          Effect.map(busDropped(b, "replayed"), (n) => n === replayed0 + 3)
        )
        // A later message of the same publisher and the first of another one (its sequence starts
        // low) still arrive, each once, in order.
        yield* a.gateway.publish(MessageCreate, message(guild, channel, "A again"))
        yield* c.gateway.publish(MessageCreate, message(guild, channel, "from C"))
        expect((yield* onB.nextOfType("message_create")).d["content"]).toBe("A again")
        expect((yield* onB.nextOfType("message_create")).d["content"]).toBe("from C")

        // Past the staleness window the same capture is stale (its mark may be forgotten).
        yield* TestClock.adjust(Duration.sum(b.config.busMaxLag, Duration.seconds(1)))
        yield* Effect.promise(() => injector.spublish(topic, captured[0]!))
        yield* eventuallyEffect(
          "the late replay counted stale",
          Effect.map(busDropped(b, "stale"), (n) => n === stale0 + 1)
        )
        expect(yield* busDropped(b, "replayed")).toBe(replayed0 + 3)
        yield* a.gateway.publish(MessageCreate, message(guild, channel, "marker"))
        expect((yield* onB.nextOfType("message_create")).d["content"]).toBe("marker")
      })
  )

  it.scoped(
    "a refused SSUBSCRIBE (ACL without the channel) releases the ack, makes /readyz 503, is counted and retried with backoff until it succeeds",
    () =>
      Effect.gen(function* () {
        const redis = yield* startRedis
        const admin = yield* redis.client()
        // Allowed every key and command, but only the user topics.
        yield* Effect.promise(() =>
          admin.call(
            "ACL",
            "SETUSER",
            "gateway",
            "on",
            ">gateway-pass",
            "~*",
            "resetchannels",
            "&filament:{u:*",
            "+@all"
          )
        )
        const restricted: RedisBackend = {
          ...redis,
          endpoint: {
            cluster: false,
            urls: Redacted.make([`redis://gateway:gateway-pass@127.0.0.1:${redis.port}`])
          }
        }
        const a = yield* startNode(restricted)
        const b = yield* startNode(redis)
        const [guild, channel] = [newId(), newId()]
        const failures0 = yield* a.metric("filament_gateway_bus_subscribe_failures_total")
        expect(yield* readyStatus(a)).toBe(200)

        const onA = yield* a.connectReady(newId(), { [guild]: "*" })
        // The ack does not wait for a subscription that was refused (the clock stands still).
        yield* onA.subscribe(guild, channel)
        expect(yield* a.metric("filament_gateway_bus_subscribe_failures_total")).toBe(failures0 + 1)
        expect(yield* a.http("/readyz")).toEqual({ status: 503, body: '{"status":"bus_unavailable"}' })

        // Granted: the next backoff step subscribes, the node is ready and gets node B's events.
        yield* Effect.promise(() => admin.call("ACL", "SETUSER", "gateway", "allchannels"))
        yield* TestClock.adjust(a.config.busReconnectMax)
        yield* eventuallyEffect(
          "readyz ready once the retry subscribed",
          Effect.map(readyStatus(a), (s) => s === 200)
        )
        expect(yield* a.metric("filament_gateway_bus_subscribe_failures_total")).toBe(failures0 + 1)
        yield* b.gateway.publish(MessageCreate, message(guild, channel, "from B"))
        expect((yield* onA.nextOfType("message_create")).d["content"]).toBe("from B")
      })
  )

  it.scoped(
    "a remote revocation event whose payload does not decode here (schema skew) is delivered, counted and logged; events without a follow-up are not decoded",
    () =>
      Effect.gen(function* () {
        const redis = yield* startRedis
        const injector = yield* redis.client()
        const node = yield* startClusterNode(redis)
        const [guild, channel] = [newId(), newId()]
        const member = yield* node.connectReady(newId(), { [guild]: "*" })
        yield* subscribeChat(member, guild, channel)
        const undecodable = (type: string) =>
          node.metric("filament_gateway_bus_undecodable_total", { event_type: type })
        const [remove0, message0] = [
          yield* undecodable("workspace_member_remove"),
          yield* undecodable("message_create")
        ]

        const now = yield* Clock.currentTimeMillis
        const signed = (seq: number, type: string, scope: "guild" | "channel", d: unknown) =>
          encodeMessage(
            Buffer.from(BUS_SECRET),
            {
              node: "e".repeat(32),
              seq,
              at: now,
              scope,
              type,
              guild: guild as BusHeader["guild"] & string,
              ...(scope === "channel" ? { channel: channel as BusHeader["channel"] & string } : {})
            },
            Buffer.from(JSON.stringify({ v: 1, t: type, d }))
          )
        const topic = guildTopic(guild as GuildId)
        // A newer node's removal reason this node's schema does not know.
        yield* Effect.promise(() =>
          injector.spublish(
            topic,
            signed(0, "workspace_member_remove", "guild", {
              guild_id: guild,
              user_id: newId(),
              reason: "retired",
              removed_at_unix: BASE_UNIX
            })
          )
        )
        // A message whose payload does not decode either: it has no follow-up, so it is not decoded.
        yield* Effect.promise(() =>
          injector.spublish(
            topic,
            signed(1, "message_create", "channel", { channel_id: channel, content: 7 })
          )
        )
        expect((yield* member.next("remove")).d["reason"]).toBe("retired")
        expect((yield* member.next("message")).d["content"]).toBe(7)
        yield* eventuallyEffect(
          "the undecodable removal counted",
          Effect.map(undecodable("workspace_member_remove"), (n) => n === remove0 + 1)
        )
        expect(yield* undecodable("message_create")).toBe(message0)
      })
  )
})
