/**
 * The bus's wire codec on its own (no Redis, no clock): a signed message decodes to the header and
 * the envelope byte for byte; each defect is refused with the drop reason the transport counts; a
 * route is split into one message per guild or per user batch; a message is routed only on a topic
 * it belongs to; the replay guard drops a seen sequence number and forgets it after the window.
 * The same checks over a real Redis are in `bus.test.ts`.
 */
import { createHmac } from "node:crypto"
import { describe, expect, it } from "@effect/vitest"
import { Either } from "effect"
import type { ChannelId, GuildId, UserId } from "../../src/protocol/Ids.js"
import {
  decodeMessage,
  encodeMessage,
  encodeRoute,
  makeReplayGuard,
  POSITIONED_PREFIX,
  positionedSuffix,
  routeOn,
  USERS_PER_MESSAGE,
  type BusHeader,
  type Stamp
} from "../../src/server/cluster/BusCodec.js"
import { guildTopic, userTopic } from "../../src/server/registry/Interest.js"
import { newId } from "../server/harness.js"

const SECRET = Buffer.from("bus-secret-0123456789-0123456789-abcdef")
const OTHER = Buffer.from("another-secret-0123456789-0123456789-ab")
const LIMITS = { maxMessageBytes: 16_384, maxEventBytes: 1_024 }
const guild = newId() as GuildId
const channel = newId() as ChannelId
const envelope = Buffer.from(`{"v":1,"t":"message_create","d":{"content":"hi"}}`)

const header = (overrides: Partial<BusHeader> = {}): BusHeader => ({
  node: "a".repeat(32),
  seq: 0,
  at: 1_700_000_000_000,
  scope: "channel",
  type: "message_create",
  guild,
  channel,
  ...overrides
})

const decode = (message: Buffer, secrets = [SECRET]) => decodeMessage(secrets, message, LIMITS)

/** Re-signs a message after its body was edited, so only the edit is wrong. */
const resigned = (message: Buffer) => {
  createHmac("sha256", SECRET).update(message.subarray(33)).digest().copy(message, 1)
  return message
}

/** A recorded event's message as the append script publishes it: the position written by Redis in front. */
const positioned = (position: string, message: Buffer) =>
  Buffer.concat([POSITIONED_PREFIX, Buffer.from(position, "latin1"), positionedSuffix(message)])

describe("BusCodec", () => {
  it("a recorded event's message carries the position Redis wrote (outside the HMAC, checked for shape); a recorded header needs one, an unrecorded one must not have one", () => {
    const recorded = encodeMessage(SECRET, header({ recorded: true }), envelope)
    const decoded = Either.getOrThrow(decode(positioned("Ep0ch_-x:42", recorded)))
    expect(decoded.position).toEqual({ epoch: "Ep0ch_-x", offset: 42 })
    expect(decoded.envelope.equals(envelope)).toBe(true)
    expect(Either.getOrThrow(decode(encodeMessage(SECRET, header(), envelope))).position).toBeUndefined()
    for (const bad of [
      positioned("e:0", recorded),
      positioned("e:01", recorded),
      positioned("bad epoch:1", recorded),
      positioned(`${"e".repeat(65)}:1`, recorded),
      positioned("e:1", encodeMessage(SECRET, header(), envelope)),
      recorded
    ])
      expect(decode(bad)).toEqual(Either.left("malformed"))
    expect(decode(positioned("e:1", encodeMessage(OTHER, header({ recorded: true }), envelope)))).toEqual(
      Either.left("bad_signature")
    )
  })

  it("a signed message decodes to its header and the envelope byte for byte; a rotation's accepted secret verifies too", () => {
    const decoded = Either.getOrThrow(decode(encodeMessage(SECRET, header({ seq: 7 }), envelope)))
    expect(decoded.header).toEqual(header({ seq: 7 }))
    expect(decoded.envelope.equals(envelope)).toBe(true)
    expect(Either.isRight(decode(encodeMessage(OTHER, header(), envelope), [SECRET, OTHER]))).toBe(true)
  })

  it("each defect is refused with its drop reason", () => {
    const tampered = encodeMessage(SECRET, header(), envelope)
    tampered[tampered.length - 3]! ^= 1
    const wrongVersion = encodeMessage(SECRET, header(), envelope)
    wrongVersion[0] = 2
    const notJson = encodeMessage(SECRET, header(), envelope)
    notJson.write("!", 35)
    const headerTooLong = encodeMessage(SECRET, header(), envelope)
    headerTooLong.writeUInt16BE(0xffff, 33)
    const cases: ReadonlyArray<readonly [string, Buffer]> = [
      ["bad_signature", encodeMessage(OTHER, header(), envelope)],
      ["bad_signature", tampered],
      ["oversized", encodeMessage(SECRET, header(), Buffer.alloc(LIMITS.maxMessageBytes, " "))],
      ["malformed", Buffer.from("hello")],
      ["malformed", wrongVersion],
      ["malformed", resigned(notJson)],
      ["malformed", resigned(headerTooLong)],
      ["malformed", encodeMessage(SECRET, header({ type: "no_such_event" }), envelope)],
      ["malformed", encodeMessage(SECRET, header({ scope: "guild" }), envelope)],
      ["malformed", encodeMessage(SECRET, header({ scope: "user", users: [newId() as UserId] }), envelope)],
      ["malformed", encodeMessage(SECRET, header(), Buffer.alloc(0))],
      ["malformed", encodeMessage(SECRET, header(), Buffer.alloc(LIMITS.maxEventBytes + 1, " "))]
    ]
    expect(cases.map(([, message]) => Either.flip(decode(message)).pipe(Either.getOrThrow))).toEqual(
      cases.map(([reason]) => reason)
    )
  })

  it("a channel event is one message on its guild's topic; a user event one signed message per batch, sent on each user's topic", () => {
    const stamp: Stamp = { node: "b".repeat(32), seq: 3, at: 1_700_000_000_000, type: "message_create" }
    const sent: Array<readonly [string, Buffer]> = []
    const send = (topic: string, message: Buffer) => void sent.push([topic, message])
    encodeRoute(SECRET, stamp, { scope: "channel", guildId: guild, channelId: channel }, envelope, send)
    expect(sent.map(([topic]) => topic)).toEqual([guildTopic(guild)])
    expect(Either.getOrThrow(decode(sent[0]![1])).header).toEqual({
      ...stamp,
      scope: "channel",
      guild,
      channel
    })

    sent.length = 0
    const users = Array.from({ length: USERS_PER_MESSAGE + 3 }, () => newId() as UserId)
    encodeRoute(
      SECRET,
      { ...stamp, type: "profile_update" },
      { scope: "user", userIds: users },
      envelope,
      send
    )
    expect(sent.map(([topic]) => topic)).toEqual(users.map(userTopic))
    expect(new Set(sent.map(([, message]) => message)).size).toBe(2)
    const batches = [sent[0]![1], sent[USERS_PER_MESSAGE]![1]].map((message) =>
      Either.getOrThrow(decode(message))
    )
    expect(batches.map((batch) => batch.header.users)).toEqual([
      users.slice(0, USERS_PER_MESSAGE),
      users.slice(USERS_PER_MESSAGE)
    ])
  })

  it("a message is routed only on a topic it belongs to, a user batch for that topic's user alone", () => {
    const [inBatch, outside] = [newId() as UserId, newId() as UserId]
    const userHeader = header({ scope: "user", type: "profile_update", users: [inBatch] })
    delete (userHeader as { guild?: unknown }).guild
    delete (userHeader as { channel?: unknown }).channel
    expect(routeOn(guildTopic(guild), header())).toEqual({
      scope: "channel",
      guildId: guild,
      channelId: channel
    })
    expect(routeOn(guildTopic(guild), header({ scope: "guild", channel: undefined }))).toEqual({
      scope: "guild",
      guildId: guild
    })
    expect(routeOn(guildTopic(newId() as GuildId), header())).toBeUndefined()
    expect(routeOn(userTopic(inBatch), header())).toBeUndefined()
    expect(routeOn(userTopic(inBatch), userHeader)).toEqual({ scope: "user", userIds: [inBatch] })
    expect(routeOn(userTopic(outside), userHeader)).toBeUndefined()
    expect(routeOn(guildTopic(guild), userHeader)).toBeUndefined()
  })

  it("the replay guard drops a sequence number seen on the topic, per publisher, and forgets a mark older than the window", () => {
    const window = 30_000
    const start = 1_700_000_000_000
    const guard = makeReplayGuard(window, start)
    const [topic, other] = [guildTopic(guild), guildTopic(newId() as GuildId)]
    const from = (node: string, seq: number, at = start) => header({ node: node.repeat(32), seq, at })
    expect(guard.replayed(topic, from("a", 5), start)).toBe(false)
    expect(guard.replayed(topic, from("a", 5), start)).toBe(true)
    expect(guard.replayed(topic, from("a", 4), start)).toBe(true)
    expect(guard.replayed(topic, from("a", 6), start)).toBe(false)
    expect(guard.replayed(other, from("a", 5), start)).toBe(false)
    expect(guard.replayed(topic, from("b", 0), start)).toBe(false)
    // After the window the marks are pruned: the transport drops such a message as stale before this.
    expect(guard.replayed(topic, from("a", 6), start + window + 1)).toBe(false)
  })
})
