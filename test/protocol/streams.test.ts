/**
 * Missed-event recovery on the wire (ours): stream names, the `user_since` position text, the strict
 * `since` of `subscribe` (a bad one is the existing 4002 `invalid_subscribe_payload`) and the
 * top-level `pos`, which client decoding reads and strict ingress refuses.
 */
import { Either, Schema } from "effect"
import { describe, expect, it } from "vitest"
import { closeCodeFor } from "../../src/protocol/CloseCodes.js"
import { decodeCommand } from "../../src/protocol/Commands.js"
import { parseEnvelope } from "../../src/protocol/Envelope.js"
import { toJsonManifest } from "../../src/protocol/Manifest.js"
import { EventPosition } from "../../src/protocol/Recovery.js"
import {
  channelStream,
  formatPosition,
  guildStream,
  parsePosition,
  parseStream,
  userStream
} from "../../src/protocol/Streams.js"
import { ajvAccepts } from "./support.js"
import { C, G, U } from "./vectors.js"

describe("stream names", () => {
  it("build and parse channel, guild and user streams", () => {
    expect(channelStream(G, C)).toBe(`channel:${G}:${C}`)
    expect(guildStream(G)).toBe(`guild:${G}`)
    expect(userStream(U)).toBe(`user:${U}`)
    expect(parseStream(channelStream(G, C))).toEqual({ scope: "channel", guild_id: G, channel_id: C })
    expect(parseStream(guildStream(G))).toEqual({ scope: "guild", guild_id: G })
    expect(parseStream(userStream(U))).toEqual({ scope: "user", user_id: U })
  })

  it.each([
    `channel:${G}`,
    `guild:${G}:${C}`,
    `user:${U.toLowerCase()}`,
    `room:${G}`,
    `guild:${G} `,
    "",
    "__proto__"
  ])("refuses %j", (name) => {
    expect(parseStream(name)).toBeUndefined()
  })
})

describe("user_since position text", () => {
  it("round-trips epoch:offset", () => {
    for (const position of [
      { epoch: "e", offset: 0 },
      { epoch: "01J0Z-x_y", offset: 57 },
      { epoch: "e".repeat(64), offset: Number.MAX_SAFE_INTEGER }
    ])
      expect(parsePosition(formatPosition(position))).toEqual(position)
  })

  it.each([
    "e",
    ":1",
    "e:",
    "e:-1",
    "e:+1",
    "e:01",
    "e:1.0",
    "e:1e3",
    "e:0x10",
    "e:9007199254740992",
    "e:99999999999999999",
    "a:b:1",
    `${"e".repeat(65)}:1`,
    "é:1"
  ])("refuses %j", (text) => {
    expect(parsePosition(text)).toBeUndefined()
  })
})

describe("subscribe.since (strict)", () => {
  const subscribe = (d: unknown) => decodeCommand(JSON.stringify({ v: 1, t: "subscribe", d }))

  it("decodes the channel and guild positions", () => {
    const since = { channel: { epoch: "e1", offset: 57 }, guild: { epoch: "e2", offset: 0 } }
    expect(subscribe({ guild_id: G.toLowerCase(), channel_id: C, since })).toEqual(
      Either.right({ _tag: "subscribe", guild_id: G, channel_id: C, since })
    )
  })

  it("a bad since closes 4002 invalid_subscribe_payload, naming the offending path", () => {
    const result = subscribe({ guild_id: G, channel_id: C, since: { channel: { epoch: "e", offset: -1 } } })
    if (Either.isRight(result)) throw new Error("accepted a negative offset")
    const rejection = result.left
    expect(rejection.reason).toBe("invalid_subscribe_payload")
    expect(rejection.detail).toMatch(/^d\.since\.channel\.offset: /)
    expect(closeCodeFor(rejection.reason)).toMatchObject({ code: 4002, reason: "invalid_subscribe_payload" })
  })
})

describe("the top-level pos", () => {
  const pos = { stream: channelStream(G, C), epoch: "e1", offset: 42 }

  it("is in the JSON manifest as JSON Schema, which ajv applies with the Effect schema's verdicts", () => {
    const schema = toJsonManifest().event_position_schema
    for (const value of [pos, { ...pos, offset: 0 }])
      expect(ajvAccepts(schema, value, { strict: true }), JSON.stringify(value)).toBe(true)
    for (const value of [
      { ...pos, stream: `channel:${G}` },
      { ...pos, epoch: "a:b" },
      { ...pos, offset: -1 },
      { ...pos, offset: 0.5 },
      { stream: pos.stream, epoch: pos.epoch }
    ]) {
      expect(ajvAccepts(schema, value, { strict: true }), JSON.stringify(value)).toBe(false)
      expect(Either.isLeft(Schema.decodeUnknownEither(EventPosition)(value))).toBe(true)
    }
  })

  it("decodes as an event position; strict ingress refuses it as an unknown envelope key", () => {
    expect(Schema.decodeUnknownSync(EventPosition)(pos)).toEqual(pos)
    const text = JSON.stringify({ v: 1, t: "subscribe", d: { guild_id: G, channel_id: C }, pos })
    expect(Either.isLeft(parseEnvelope(text, { strict: true }))).toBe(true)
    expect(decodeCommand(text)).toMatchObject({ left: { reason: "invalid_envelope" } })
  })
})
