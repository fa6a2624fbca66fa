/**
 * The web client's gateway scenarios (reference §9.6), ported to our decoders, driven by the payload
 * vectors recorded from the original web client's own tests.
 */
import { describe, expect, it } from "@effect/vitest"
import * as fc from "fast-check"
import { readFileSync } from "node:fs"
import { decodeFrame } from "../../src/client/Decode.js"
import type { ClientEvent, DropReason } from "../../src/client/Decode.js"
import { EVENT_VECTORS } from "../protocol/vectors.js"

interface Vectors {
  readonly valid: Record<string, ReadonlyArray<unknown>>
  readonly invalid: Record<string, ReadonlyArray<{ readonly payload: unknown; readonly reason: string }>>
  readonly envelope_invalid: ReadonlyArray<{ readonly frame: string; readonly reason: string }>
  readonly unsupported_event_types: ReadonlyArray<{ readonly type: string; readonly payload: unknown }>
}

const vectors = JSON.parse(
  readFileSync(new URL("../fixtures/filament-client-vectors.json", import.meta.url), "utf8")
) as Vectors

const frame = (t: string, d: unknown, extra: object = {}) => JSON.stringify({ v: 1, t, d, ...extra })

const accepted = (text: string): ClientEvent => {
  const result = decodeFrame(text)
  if (result._tag === "Left") throw new Error(`expected accepted, got ${result.left.message}`)
  return result.right
}

const rejection = (text: string): { reason: DropReason; eventType: string | undefined } => {
  const result = decodeFrame(text)
  if (result._tag === "Right") throw new Error(`expected a drop, decoded ${JSON.stringify(result.right)}`)
  return { reason: result.left.reason, eventType: result.left.eventType }
}

const GUILD = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
const CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
/** A canonical ULID whose last four characters encode `n`. */
const ulid = (n: number) =>
  "01ARZ3NDEKTSV4RRFFQ69G" + [3, 2, 1, 0].map((power) => CROCKFORD[Math.floor(n / 32 ** power) % 32]).join("")

/**
 * Vectors where we follow the original server, not the web client, on a documented disagreement
 * (reference §4.4). Each is asserted to decode the other way, so a change of mind fails here.
 */
const SERVER_SIDE_DISAGREEMENTS: Record<string, string> = {
  "workspace_channel_permission_override_update valid #1":
    "role targets carry a role ULID (what the server sends); the web client's legacy role name is a client bug",
  "workspace_role_create invalid #1": "the server allows position < 1 for owners; the web client drops those"
}

describe("web-client vectors", () => {
  const valid = Object.entries(vectors.valid).flatMap(([type, payloads]) =>
    payloads.map((payload, index) => ({ key: `${type} valid #${index}`, type, payload }))
  )
  const invalid = Object.entries(vectors.invalid).flatMap(([type, cases]) =>
    cases.map((entry, index) => ({ key: `${type} invalid #${index}`, type, payload: entry.payload }))
  )
  const agreed = ({ key }: { key: string }) => !Object.hasOwn(SERVER_SIDE_DISAGREEMENTS, key)
  const validCases = valid.filter(agreed).map(({ key, type, payload }) => [key, type, payload] as const)
  const invalidCases = invalid.filter(agreed).map(({ key, type, payload }) => [key, type, payload] as const)

  it("cover every payload class of the original", () => {
    expect(valid.length).toBe(71)
    expect(invalid.length).toBe(122)
    expect(new Set(Object.keys(vectors.invalid)).size).toBe(36)
  })

  it.each(Object.entries(SERVER_SIDE_DISAGREEMENTS))("diverges on purpose: %s (%s)", (key) => {
    const entry = [...valid, ...invalid].find((vector) => vector.key === key)!
    const result = decodeFrame(frame(entry.type, entry.payload))
    expect(result._tag === "Right").toBe(key.includes(" invalid #"))
  })

  it.each(validCases)("accepts valid %s", (_name, type, payload) => {
    expect(accepted(frame(type, payload)).type).toBe(type)
  })

  it.each(invalidCases)("rejects malformed %s", (_name, type, payload) => {
    expect(rejection(frame(type, payload))).toEqual({ reason: "invalid_payload", eventType: type })
  })

  it.each(vectors.envelope_invalid.map((entry) => [entry.reason, entry.frame] as const))(
    "rejects envelope: %s",
    (_reason, text) => {
      const expected = text.length > 65_536 ? "oversized" : "invalid_envelope"
      expect(rejection(text).reason).toBe(expected)
    }
  )

  it.each(vectors.unsupported_event_types.map((entry) => [entry.type, entry.payload] as const))(
    "ignores unknown event type %s",
    (type, payload) => {
      expect(rejection(frame(type, payload))).toEqual({ reason: "unknown_event", eventType: type })
    }
  )
})

describe("envelope (reference §2.4)", () => {
  it("accepts a valid envelope and tolerates unknown top-level keys", () => {
    const user_id = ulid(1)
    expect(accepted(frame("ready", { user_id }))).toEqual({ type: "ready", payload: { user_id } })
    expect(accepted(frame("ready", { user_id }, { seq: 7, trace: "x" }))).toEqual({
      type: "ready",
      payload: { user_id }
    })
  })

  it.each([
    ["v: 2", JSON.stringify({ v: 2, t: "ready", d: {} })],
    ['v: "1"', JSON.stringify({ v: "1", t: "ready", d: {} })],
    ["v: 1.5", JSON.stringify({ v: 1.5, t: "ready", d: {} })],
    ["presence-sync", frame("presence-sync", {})],
    ["INVALID_TYPE", frame("INVALID_TYPE", {})],
    ["65-char type", frame("x".repeat(65), {})],
    ["empty type", frame("", {})],
    ["numeric type", JSON.stringify({ v: 1, t: 42, d: {} })],
    ["missing t", JSON.stringify({ v: 1, d: {} })],
    ["missing d", JSON.stringify({ v: 1, t: "ready" })],
    ["d null", JSON.stringify({ v: 1, t: "ready", d: null })],
    ["d array", JSON.stringify({ v: 1, t: "ready", d: [] })],
    ["array frame", "[1]"],
    ["null frame", "null"],
    ["not JSON", "not-json"],
    ["empty frame", ""]
  ])("rejects %s as invalid_envelope", (_name, text) => {
    expect(rejection(text).reason).toBe("invalid_envelope")
  })

  it("rejects a 70 KiB frame as oversized before parsing (even when it is not JSON)", () => {
    expect(rejection("x".repeat(70 * 1024)).reason).toBe("oversized")
    const big = frame("ready", { user_id: ulid(1), padding: "y".repeat(70 * 1024) })
    expect(rejection(big).reason).toBe("oversized")
  })

  it("counts UTF-8 bytes, not UTF-16 units, against the 64 KiB cap", () => {
    // 22 000 three-byte characters: 66 000 bytes in 22 000 UTF-16 units.
    const text = frame("ready", { user_id: ulid(1), padding: "€".repeat(22_000) })
    expect(text.length).toBeLessThan(65_536)
    expect(rejection(text).reason).toBe("oversized")
  })

  it("ignores prototype-chain type names", () => {
    for (const type of ["__proto__", "constructor", "prototype", "tostring", "hasownproperty", "valueof"]) {
      expect(rejection(frame(type, {}))).toEqual({ reason: "unknown_event", eventType: type })
    }
  })

  it("never lets an own __proto__ key stand in for a payload field", () => {
    const text = `{"v":1,"t":"ready","d":{"__proto__":{"user_id":"${ulid(1)}"}}}`
    expect(rejection(text)).toEqual({ reason: "invalid_payload", eventType: "ready" })
  })

  it("never throws on arbitrary input", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          fc.json(),
          fc.jsonValue().map((value) => frame("ready", value))
        ),
        (text) => {
          decodeFrame(text)
        }
      ),
      { numRuns: 300 }
    )
  })
})

describe("payload scenarios (reference §9.6)", () => {
  it("tolerates additive fields and strips them", () => {
    const user_id = ulid(1)
    expect(accepted(frame("ready", { user_id, experimental: { a: 1 } }))).toEqual({
      type: "ready",
      payload: { user_id }
    })
    const update = accepted(
      frame("workspace_update", {
        guild_id: GUILD,
        updated_fields: { name: "Renamed", experimental_label: "beta" },
        updated_at_unix: 1710000000,
        schema_hint: 2
      })
    )
    expect(update.type).toBe("workspace_update")
    expect(update.payload).not.toHaveProperty("schema_hint")
  })

  it("accepts message_create with extra fields and without reactions", () => {
    const message = {
      message_id: ulid(10),
      guild_id: GUILD,
      channel_id: ulid(11),
      author_id: ulid(12),
      content: "hi",
      markdown_tokens: [{ type: "paragraph_start" }, { type: "text", text: "hi" }, { type: "paragraph_end" }],
      attachments: [],
      created_at_unix: 1710000000,
      reply_to_message_id: ulid(13),
      delivery_metadata: { path: "edge" }
    }
    const event = accepted(frame("message_create", message))
    expect(event.type).toBe("message_create")
    expect(event.payload).toMatchObject({ content: "hi", reactions: [] })
    expect(event.payload).not.toHaveProperty("delivery_metadata")
  })

  it("rejects presence_sync with 1025 ids and accepts 1024", () => {
    const ids = (count: number) => Array.from({ length: count }, (_, index) => ulid(index))
    expect(rejection(frame("presence_sync", { guild_id: GUILD, user_ids: ids(1025) }))).toEqual({
      reason: "invalid_payload",
      eventType: "presence_sync"
    })
    const event = accepted(frame("presence_sync", { guild_id: GUILD, user_ids: ids(1024) }))
    expect(event.type === "presence_sync" && event.payload.user_ids.length).toBe(1024)
  })

  it("de-duplicates presence ids keeping the first occurrence's order", () => {
    const event = accepted(
      frame("presence_sync", { guild_id: GUILD, user_ids: [ulid(2), ulid(1), ulid(2), ulid(3), ulid(1)] })
    )
    expect(event.type === "presence_sync" && event.payload.user_ids).toEqual([ulid(2), ulid(1), ulid(3)])
  })

  it("rejects lowercase ids in events (the server emits canonical uppercase)", () => {
    expect(rejection(frame("ready", { user_id: ulid(1).toLowerCase() })).reason).toBe("invalid_payload")
  })
})

describe("the recovery position (pos)", () => {
  const user = ulid(1)
  const pos = { stream: `user:${user}`, epoch: "e1", offset: 7 }
  const ready = { user_id: user }
  const role = EVENT_VECTORS.workspace_channel_role_override_update.valid[0]!

  it("is attached to the decoded event (also a legacy one), and absent without it", () => {
    expect(accepted(frame("ready", ready, { pos }))).toEqual({ type: "ready", payload: ready, pos })
    expect(accepted(frame("ready", ready))).toEqual({ type: "ready", payload: ready })
    expect(accepted(frame("workspace_channel_override_update", role, { pos }))).toMatchObject({
      type: "workspace_channel_role_override_update",
      legacyType: "workspace_channel_override_update",
      pos
    })
  })

  it.each([
    ["a lowercase stream id", { ...pos, stream: `user:${user.toLowerCase()}` }],
    ["a negative offset", { ...pos, offset: -1 }],
    ["an epoch with a colon", { ...pos, epoch: "a:b" }],
    ["no epoch", { stream: pos.stream, offset: 1 }],
    ["null", null]
  ])("with %s drops the frame as invalid_envelope", (_why, bad) => {
    expect(rejection(frame("ready", ready, { pos: bad }))).toEqual({
      reason: "invalid_envelope",
      eventType: "ready"
    })
  })
})
