/**
 * Every event's payload schema against hand-written vectors: valid ones decode in both modes,
 * invalid ones are rejected in both, each required field and each field's type matter, additive
 * unknown fields are accepted by client (tolerant) decoding only, and the client's normalizations hold.
 */
import { Either } from "effect"
import { describe, expect, it } from "vitest"
import { decodePayload, encodePayload, type EventDefinition } from "../../src/protocol/EventDefinition.js"
import * as Message from "../../src/protocol/events/message.js"
import * as Presence from "../../src/protocol/events/presence.js"
import * as Voice from "../../src/protocol/events/voice.js"
import * as Workspace from "../../src/protocol/events/workspace.js"
import { decodeEvent, Manifest, payloadJsonSchema } from "../../src/protocol/Manifest.js"
import { effectAccepts, requiredKeys, withAdditiveFields } from "./support.js"
import { A, C, EVENT_VECTORS, G, M, R, U, U2 } from "./vectors.js"

const strict = { strict: true } as const
const tolerant = { strict: false } as const

const wrongTypeOf = (value: unknown): unknown => (typeof value === "number" ? String(value) : 12345)

describe.each(Manifest.events.map((event) => [event.type, event] as const))("%s", (_type, event) => {
  const definition = event as EventDefinition
  const vectors = EVENT_VECTORS[event.type]
  const first = vectors.valid[0]!

  it("has at least one valid and two invalid vectors (plus derived ones)", () => {
    expect(vectors.valid.length).toBeGreaterThanOrEqual(1)
    expect(
      vectors.invalid.length + requiredKeys(payloadJsonSchema(definition)).length
    ).toBeGreaterThanOrEqual(2)
  })

  it("accepts every valid vector, strict and tolerant", () => {
    for (const payload of vectors.valid) {
      expect(effectAccepts(definition, payload, strict), JSON.stringify(payload).slice(0, 200)).toBe(true)
      expect(effectAccepts(definition, payload, tolerant)).toBe(true)
    }
  })

  it("rejects every invalid vector, strict and tolerant", () => {
    for (const { payload, why } of vectors.invalid) {
      expect(effectAccepts(definition, payload, strict), why).toBe(false)
      expect(effectAccepts(definition, payload, tolerant), why).toBe(false)
    }
  })

  it("rejects the payload without each required field", () => {
    const required = requiredKeys(payloadJsonSchema(definition))
    expect(required.length).toBeGreaterThan(0)
    for (const key of required) {
      const payload = { ...first }
      delete payload[key]
      expect(effectAccepts(definition, payload, tolerant), `without ${key}`).toBe(false)
      expect(effectAccepts(definition, payload, strict), `without ${key}`).toBe(false)
    }
  })

  it("rejects a wrong JSON type at each field", () => {
    for (const key of Object.keys(first)) {
      const payload = { ...first, [key]: wrongTypeOf(first[key]) }
      expect(effectAccepts(definition, payload, tolerant), `wrong type at ${key}`).toBe(false)
    }
    for (const notAnObject of [null, [], "x", 1, true]) {
      expect(effectAccepts(definition, notAnObject, tolerant)).toBe(false)
    }
  })

  it("client decoding accepts additive unknown fields at every level; strict decoding rejects them", () => {
    for (const payload of vectors.valid) {
      const extended = withAdditiveFields(payload)
      const plain = decodePayload(definition, payload, tolerant)
      const additive = decodePayload(definition, extended, tolerant)
      expect(Either.isRight(additive), JSON.stringify(extended).slice(0, 200)).toBe(true)
      expect(additive).toEqual(plain)
      expect(effectAccepts(definition, extended, strict)).toBe(false)
    }
  })

  it("encodes a decoded valid payload back to an equivalent wire payload", () => {
    for (const payload of vectors.valid) {
      const decoded = Either.getOrThrow(decodePayload(definition, payload, strict))
      const wire = Either.getOrThrow(encodePayload(definition, decoded))
      expect(decodePayload(definition, wire, strict)).toEqual(Either.right(decoded))
    }
  })
})

describe("client normalizations", () => {
  it("presence_sync removes duplicate ids keeping the first occurrence order", () => {
    const decoded = decodePayload(
      Presence.PresenceSync,
      { guild_id: G, user_ids: [U2, U, U2, M, U] },
      tolerant
    )
    expect(decoded).toEqual(Either.right({ guild_id: G, user_ids: [U2, U, M] }))
  })

  it("voice_participant_sync removes duplicate participants by identity keeping the first", () => {
    const participant = (identity: string, is_muted: boolean) => ({
      user_id: U,
      identity,
      joined_at_unix: 1,
      updated_at_unix: 2,
      is_muted,
      is_deafened: false,
      is_speaking: false,
      is_video_enabled: false,
      is_screen_share_enabled: false
    })
    const decoded = Either.getOrThrow(
      decodePayload(
        Voice.VoiceParticipantSync,
        {
          guild_id: G,
          channel_id: C,
          participants: [participant("b", false), participant("a", false), participant("b", true)],
          synced_at_unix: 3
        },
        tolerant
      )
    )
    expect(decoded.participants.map((p) => [p.identity, p.is_muted])).toEqual([
      ["b", false],
      ["a", false]
    ])
  })

  it("message_create without attachments/reactions decodes them as [] and encodes them explicitly", () => {
    const wire = {
      message_id: M,
      guild_id: G,
      channel_id: C,
      author_id: U,
      content: "hi",
      markdown_tokens: [{ type: "text", text: "hi" }],
      created_at_unix: 1
    }
    const decoded = Either.getOrThrow(decodePayload(Message.MessageCreate, wire, strict))
    expect(decoded.attachments).toEqual([])
    expect(decoded.reactions).toEqual([])
    expect(Either.getOrThrow(encodePayload(Message.MessageCreate, decoded))).toEqual({
      ...wire,
      attachments: [],
      reactions: []
    })
  })

  it("message_create with empty content needs attachments, also when they are missing on the wire", () => {
    const base = {
      message_id: M,
      guild_id: G,
      channel_id: C,
      author_id: U,
      content: "",
      markdown_tokens: [],
      created_at_unix: 1
    }
    expect(effectAccepts(Message.MessageCreate, base, tolerant)).toBe(false)
    const attachment = {
      attachment_id: A,
      guild_id: G,
      channel_id: C,
      owner_id: U,
      filename: "a.png",
      mime_type: "image/png",
      size_bytes: 1,
      sha256_hex: "F".repeat(64)
    }
    expect(effectAccepts(Message.MessageCreate, { ...base, attachments: [attachment] }, tolerant)).toBe(true)
  })

  it("fenced code language is lower-cased", () => {
    const decoded = Either.getOrThrow(
      decodePayload(
        Message.MessageUpdate,
        {
          guild_id: G,
          channel_id: C,
          message_id: M,
          updated_fields: { markdown_tokens: [{ type: "fenced_code", language: "TypeScript", code: "" }] },
          updated_at_unix: 1
        },
        tolerant
      )
    )
    expect(decoded.updated_fields.markdown_tokens).toEqual([
      { type: "fenced_code", language: "typescript", code: "" }
    ])
  })

  it("permission override: a role target is a role ULID (the server's payload), a member target a user ULID", () => {
    const payload = (target_kind: string, target_id: string) => ({
      guild_id: G,
      channel_id: C,
      target_kind,
      target_id,
      updated_fields: { allow: [], deny: ["create_message"] },
      updated_at_unix: 1
    })
    const event = Workspace.WorkspaceChannelPermissionOverrideUpdate
    expect(Either.getOrThrow(decodePayload(event, payload("role", R), strict))).toMatchObject({
      target_kind: "role",
      target_id: R
    })
    expect(effectAccepts(event, payload("member", U), strict)).toBe(true)
    expect(effectAccepts(event, payload("role", "owner"), tolerant)).toBe(false)
  })

  it("workspace_role_create accepts a position below 1 (the server may emit it)", () => {
    const role = { role_id: R, name: "owners", position: 0, is_system: false, permissions: [] }
    expect(effectAccepts(Workspace.WorkspaceRoleCreate, { guild_id: G, role }, strict)).toBe(true)
    expect(
      effectAccepts(Workspace.WorkspaceRoleCreate, { guild_id: G, role: { ...role, position: -3 } }, strict)
    ).toBe(true)
  })

  it("message_reaction: operation and actor_user_id come as a pair or not at all", () => {
    const base = { guild_id: G, channel_id: C, message_id: M, emoji: "👍", count: 1 }
    expect(effectAccepts(Message.MessageReaction, base, tolerant)).toBe(true)
    expect(
      effectAccepts(Message.MessageReaction, { ...base, operation: "add", actor_user_id: U }, tolerant)
    ).toBe(true)
    expect(effectAccepts(Message.MessageReaction, { ...base, operation: "add" }, tolerant)).toBe(false)
    expect(effectAccepts(Message.MessageReaction, { ...base, actor_user_id: U }, tolerant)).toBe(false)
  })
})

describe("decodeEvent", () => {
  it("decodes a known event into its typed payload", () => {
    const decoded = decodeEvent("presence_update", { guild_id: G, user_id: U, status: "online" }, tolerant)
    expect(decoded).toEqual(
      Either.right({ type: "presence_update", payload: { guild_id: G, user_id: U, status: "online" } })
    )
  })

  it("rejects unknown types, including prototype-chain names, as unknown_event", () => {
    for (const type of [
      "unknown_event",
      "__proto__",
      "constructor",
      "toString",
      "hasOwnProperty",
      "channel_update"
    ]) {
      const result = decodeEvent(type, {}, tolerant)
      expect(Either.isLeft(result) && result.left.reason, type).toBe("unknown_event")
    }
  })

  it("rejects a known type with an invalid payload as invalid_payload", () => {
    const result = decodeEvent("presence_update", { guild_id: G, user_id: U, status: "away" }, tolerant)
    expect(Either.isLeft(result) && result.left).toMatchObject({
      _tag: "EventDecodeError",
      reason: "invalid_payload",
      eventType: "presence_update"
    })
  })

  it("decodes the deprecated legacy name in both shapes", () => {
    const role = {
      guild_id: G,
      channel_id: C,
      role: "member",
      updated_fields: { allow: [], deny: [] },
      updated_at_unix: 1
    }
    expect(Either.isRight(decodeEvent("workspace_channel_override_update", role, tolerant))).toBe(true)
    const target = {
      guild_id: G,
      channel_id: C,
      target_kind: "member",
      target_id: U,
      updated_fields: { allow: [], deny: [] },
      updated_at_unix: 1
    }
    expect(Either.isRight(decodeEvent("workspace_channel_override_update", target, tolerant))).toBe(true)
  })
})
