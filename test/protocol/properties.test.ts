/**
 * Property tests (fast-check with Effect Schema arbitraries): encode → JSON → decode round-trips for
 * arbitrary valid payloads of every event; arbitrary JSON and arbitrary strings never make a decoder
 * throw and are rejected unless valid, judged by independent oracles (ajv on the generated JSON
 * Schemas, a hand-written envelope check).
 */
import { Arbitrary, Either, FastCheck as fc, Schema } from "effect"
import { describe, expect, it } from "vitest"
import {
  COMMANDS,
  decodeCommand,
  MessageCreatePayload,
  SubscribePayload,
  UnsubscribePayload
} from "../../src/protocol/Commands.js"
import { parseEnvelope } from "../../src/protocol/Envelope.js"
import { decodePayload, encodePayload, type EventDefinition } from "../../src/protocol/EventDefinition.js"
import { commandJsonSchema, decodeEvent, Manifest } from "../../src/protocol/Manifest.js"
import { ajvAccepts, ajvAcceptsEvent, effectAccepts, viaJson } from "./support.js"
import { PresenceSync } from "../../src/protocol/events/presence.js"
import { EVENT_VECTORS, ulids } from "./vectors.js"

const events = Manifest.events.map((event) => [event.type, event as EventDefinition] as const)
const modes = [{ strict: true }, { strict: false }] as const

describe.each(events)("%s properties", (_type, event) => {
  it("encode → JSON → decode round-trips arbitrary valid payloads, and ajv accepts the wire form", () => {
    fc.assert(
      fc.property(Arbitrary.make(event.payload), (payload) => {
        const wire = viaJson(Either.getOrThrow(encodePayload(event, payload)))
        expect(decodePayload(event, wire, { strict: true })).toEqual(Either.right(payload))
        expect(ajvAcceptsEvent(event, wire, { strict: true })).toBe(true)
      }),
      { numRuns: 25 }
    )
  })

  it("arbitrary JSON never throws and is rejected unless the JSON Schema accepts it", () => {
    fc.assert(
      fc.property(fc.jsonValue(), (input) => {
        for (const mode of modes) {
          const accepted = effectAccepts(event, input, mode)
          if (accepted) expect(ajvAcceptsEvent(event, input, mode)).toBe(true)
        }
      }),
      { numRuns: 40 }
    )
  })

  it("a valid payload with one field replaced by arbitrary JSON: Effect and ajv agree", () => {
    const valid = EVENT_VECTORS[event.type as keyof typeof EVENT_VECTORS].valid
    fc.assert(
      fc.property(
        fc.constantFrom(...valid),
        fc.nat(),
        fc.oneof(fc.jsonValue(), fc.constant(undefined)),
        (base, which, replacement) => {
          const keys = Object.keys(base)
          const key = keys[which % keys.length]!
          const input: Record<string, unknown> = { ...base }
          if (replacement === undefined) delete input[key]
          else input[key] = replacement
          for (const mode of modes) {
            expect(effectAccepts(event, input, mode), `${key}=${JSON.stringify(replacement)}`).toBe(
              ajvAcceptsEvent(event, input, mode)
            )
          }
        }
      ),
      { numRuns: 40 }
    )
  })
})

describe("normalization properties", () => {
  it("presence_sync keeps exactly the first occurrence of each id, in order", () => {
    const pool = ulids(8)
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...pool), { maxLength: 60 }), (ids) => {
        const decoded = decodePayload(PresenceSync, { guild_id: pool[0], user_ids: ids }, { strict: false })
        expect(decoded).toEqual(Either.right({ guild_id: pool[0], user_ids: [...new Set(ids)] }))
      }),
      { numRuns: 100 }
    )
  })
})

/** The envelope rule written out independently of the schemas. */
const envelopeOracle = (text: string, strict: boolean): boolean => {
  if (new TextEncoder().encode(text).length > 65_536) return false
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    return false
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) return false
  const record = json as Record<string, unknown>
  const has = (key: string) => Object.prototype.hasOwnProperty.call(record, key)
  if (!has("v") || !has("t") || !has("d")) return false
  if (strict && Object.keys(record).some((key) => key !== "v" && key !== "t" && key !== "d")) return false
  const { v, t, d } = record
  return (
    v === 1 &&
    typeof t === "string" &&
    /^[a-z0-9_.]{1,64}$/.test(t) &&
    typeof d === "object" &&
    d !== null &&
    !Array.isArray(d)
  )
}

const commandNames = COMMANDS.map((command) => command.type)
const eventLikeType = fc.oneof(
  fc.constantFrom(...commandNames, "ready", "presence_sync", "__proto__", "constructor", "MESSAGE_CREATE"),
  fc.string({ maxLength: 70 }),
  fc.jsonValue()
)
/**
 * `eventLikeType` as the string a decoder is given: a JSON value's text (`String` would throw on an
 * object whose `toString` key is not a function).
 */
const eventTypeText = eventLikeType.map((type) => (typeof type === "string" ? type : JSON.stringify(type)))
const envelopeLike = fc
  .record(
    {
      v: fc.oneof(fc.constant(1), fc.jsonValue()),
      t: eventLikeType,
      d: fc.oneof(fc.dictionary(fc.string(), fc.jsonValue()), fc.jsonValue()),
      extra: fc.jsonValue()
    },
    { requiredKeys: [] }
  )
  .map((envelope) => JSON.stringify(envelope))

const frames = fc.oneof(fc.string(), fc.string({ unit: "binary" }), fc.json(), envelopeLike)

describe("envelope and command decoders on arbitrary input", () => {
  it("parseEnvelope never throws and agrees with the envelope rule", () => {
    fc.assert(
      fc.property(frames, (text) => {
        for (const strict of [true, false]) {
          expect(Either.isRight(parseEnvelope(text, { strict })), text).toBe(envelopeOracle(text, strict))
        }
      }),
      { numRuns: 400 }
    )
  })

  it("decodeCommand never throws; it accepts only a known command whose payload the JSON Schema accepts", () => {
    const schemas = new Map(COMMANDS.map((command) => [command.type as string, commandJsonSchema(command)]))
    const reasons = new Map(COMMANDS.map((command) => [command.type as string, command.rejection as string]))
    fc.assert(
      fc.property(frames, (text) => {
        const result = decodeCommand(text)
        if (!envelopeOracle(text, true)) {
          expect(Either.isLeft(result) && ["invalid_envelope", "event_too_large"]).toContain(
            Either.isLeft(result) && result.left.reason
          )
          return
        }
        const { t, d } = JSON.parse(text) as { t: string; d: unknown }
        const schema = schemas.get(t)
        if (schema === undefined) {
          expect(Either.isLeft(result) && result.left.reason).toBe("unknown_event")
          return
        }
        const valid = ajvAccepts(schema, d, { strict: true })
        expect(Either.isRight(result) ? "accepted" : result.left.reason).toBe(
          valid ? "accepted" : reasons.get(t)
        )
      }),
      { numRuns: 400 }
    )
  })

  it("decodeCommand round-trips arbitrary valid command payloads", () => {
    const roundTrip = <A extends object, I>(type: string, payload: Schema.Schema<A, I>) =>
      fc.assert(
        fc.property(Arbitrary.make(payload), (decoded) => {
          const wire = Either.getOrThrow(Schema.encodeEither(payload)(decoded))
          const text = JSON.stringify({ v: 1, t: type, d: wire })
          expect(decodeCommand(text)).toEqual(Either.right({ _tag: type, ...decoded }))
        }),
        { numRuns: 50 }
      )
    roundTrip("subscribe", SubscribePayload)
    roundTrip("unsubscribe", UnsubscribePayload)
    roundTrip("message_create", MessageCreatePayload)
  })

  it("decodeEvent never throws on arbitrary types and payloads", () => {
    fc.assert(
      fc.property(eventTypeText, fc.jsonValue(), fc.boolean(), (type, data, strict) => {
        const result = decodeEvent(type, data, { strict })
        if (Either.isRight(result)) expect(Manifest.lookup(type)).toBeDefined()
      }),
      { numRuns: 300 }
    )
  })
})
