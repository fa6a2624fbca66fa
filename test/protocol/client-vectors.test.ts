/**
 * The original web client's own test vectors (test/fixtures/filament-client-vectors.json): every
 * valid payload decodes, every invalid one is rejected, every invalid envelope frame is refused and
 * every unsupported type is unknown, except where the original server and web client disagree and
 * the server wins (docs/CLIENT.md, Decoding). Those exceptions are listed here, each with its reason,
 * and the test checks they are still exceptions.
 */
import { readFileSync } from "node:fs"
import { Either } from "effect"
import { describe, expect, it } from "vitest"
import { decodePayload, type EventDefinition } from "../../src/protocol/EventDefinition.js"
import { parseEnvelope } from "../../src/protocol/Envelope.js"
import { decodeEvent, Manifest } from "../../src/protocol/Manifest.js"

interface ClientVectors {
  readonly meta: { readonly client_supported_event_types: ReadonlyArray<string> }
  readonly valid: Record<string, ReadonlyArray<unknown>>
  readonly invalid: Record<string, ReadonlyArray<{ readonly payload: unknown; readonly reason: string }>>
  readonly envelope_invalid: ReadonlyArray<{ readonly frame: string; readonly reason: string }>
  readonly unsupported_event_types: ReadonlyArray<{ readonly type: string; readonly payload: unknown }>
}

const vectors: ClientVectors = JSON.parse(
  readFileSync(new URL("../fixtures/filament-client-vectors.json", import.meta.url), "utf8")
)

interface Disagreement {
  readonly eventType: string
  readonly list: "valid" | "invalid"
  readonly index: number
  readonly rule: string
}

/** Fixture vectors whose verdict we deliberately flip: where server and web client disagree. */
const DISAGREEMENTS: ReadonlyArray<Disagreement> = [
  {
    eventType: "workspace_channel_permission_override_update",
    list: "valid",
    index: 1,
    rule:
      "role target: the client accepted a legacy role name (`member`) as target_id for target_kind role; " +
      "the server sends a workspace role ULID there, and we decode exactly that, so the name is rejected."
  },
  {
    eventType: "workspace_role_create",
    list: "invalid",
    index: 1,
    rule:
      "role position: the client rejected role.position 0; the server may emit positions below 1, so the " +
      "server's payload wins and we accept it."
  }
]

const isDisagreement = (eventType: string, list: "valid" | "invalid", index: number) =>
  DISAGREEMENTS.some((d) => d.eventType === eventType && d.list === list && d.index === index)

const tolerant = { strict: false } as const

const eventFor = (type: string): EventDefinition => {
  const event = Manifest.lookup(type)
  if (event === undefined) throw new Error(`no event ${type} in the manifest`)
  return event as EventDefinition
}

describe("original web client vectors", () => {
  it("cover exactly the 36 original event types, all in our manifest", () => {
    const types = vectors.meta.client_supported_event_types
    expect(types).toHaveLength(36)
    const original = Manifest.events.filter((e) => e.origin === "original" && e.lifecycle === "active")
    expect([...types].sort()).toEqual(original.map((e) => e.type).sort())
  })

  it("every valid payload decodes (client mode), except the listed disagreements", () => {
    let checked = 0
    for (const [type, payloads] of Object.entries(vectors.valid)) {
      payloads.forEach((payload, index) => {
        const accepted = Either.isRight(decodePayload(eventFor(type), payload, tolerant))
        expect(accepted, `${type} valid[${index}]`).toBe(!isDisagreement(type, "valid", index))
        checked++
      })
    }
    expect(checked).toBe(71)
  })

  it("every invalid payload is rejected (client mode), except the listed disagreements", () => {
    let checked = 0
    for (const [type, entries] of Object.entries(vectors.invalid)) {
      entries.forEach(({ payload, reason }, index) => {
        const accepted = Either.isRight(decodePayload(eventFor(type), payload, tolerant))
        expect(accepted, `${type} invalid[${index}]: ${reason}`).toBe(isDisagreement(type, "invalid", index))
        checked++
      })
    }
    expect(checked).toBe(122)
  })

  it("the listed disagreements point at existing vectors", () => {
    for (const d of DISAGREEMENTS) {
      const list = d.list === "valid" ? vectors.valid[d.eventType] : vectors.invalid[d.eventType]
      expect(list?.[d.index], `${d.eventType} ${d.list}[${d.index}]`).toBeDefined()
    }
  })

  it("every invalid envelope frame is refused, in client and ingress mode", () => {
    expect(vectors.envelope_invalid).toHaveLength(9)
    for (const { frame, reason } of vectors.envelope_invalid) {
      expect(Either.isLeft(parseEnvelope(frame, { strict: false })), reason).toBe(true)
      expect(Either.isLeft(parseEnvelope(frame, { strict: true })), reason).toBe(true)
    }
  })

  it("every unsupported event type is unknown (prototype-chain names included)", () => {
    for (const { type, payload } of vectors.unsupported_event_types) {
      const result = decodeEvent(type, payload, tolerant)
      expect(Either.isLeft(result) && result.left.reason, type).toBe("unknown_event")
    }
  })
})
