/**
 * The generated client decoders agree with Effect Schema (verdict and decoded value) on generated
 * values and near-misses of every target (test/protocol/parity.ts), on every vector of the original
 * web client's fixtures, and on whole frames against the Effect decoding path.
 */
import { Either, FastCheck as fc } from "effect"
import { readFileSync } from "node:fs"
import { describe, expect, it } from "vitest"
import { decodeFrame, LEGACY_EVENTS } from "../../src/client/Decode.js"
import * as Generated from "../../src/client/generated/decoders.js"
import { COMMANDS } from "../../src/protocol/Commands.js"
import { parseEnvelope } from "../../src/protocol/Envelope.js"
import { decodePayload, type EventDefinition } from "../../src/protocol/EventDefinition.js"
import { decodeEvent, Manifest } from "../../src/protocol/Manifest.js"
import {
  effectVerdict,
  inputsOf,
  mutated,
  NEIGHBOURHOOD_RUNS,
  neighbourhood,
  parity,
  sameVerdict,
  TARGETS,
  validValues
} from "./parity.js"

const RUNS = 300

describe("generated decoders: parity with Effect Schema", () => {
  it("covers the envelope, its recovery position, every event of the manifest and every command", () => {
    expect(TARGETS.map((target) => target.name)).toEqual([
      "envelope",
      "pos",
      ...Manifest.events.map((event) => event.type),
      ...COMMANDS.map((command) => `command ${command.type}`)
    ])
    expect([...Generated.EVENT_PAYLOAD_DECODERS.keys()]).toEqual(Manifest.events.map((event) => event.type))
  })

  it.each(TARGETS.map((target) => [target.name, target] as const))(
    "%s: same verdict and decoded value on generated values and near-misses",
    (_name, target) => {
      fc.assert(parity(Generated, target), { numRuns: RUNS, seed: 17 })
      fc.assert(neighbourhood(Generated, target), { numRuns: NEIGHBOURHOOD_RUNS, seed: 17 })
    }
  )

  it("the property's inputs are mixed: some accepted, some rejected, for every target", () => {
    for (const target of TARGETS) {
      const verdicts = fc
        .sample(inputsOf(target), { numRuns: 200, seed: 3 })
        .map((input) => effectVerdict(target, input).ok)
      expect(verdicts, target.name).toContain(true)
      expect(verdicts, target.name).toContain(false)
    }
  })
})

describe("generated decoders: the original web client's vectors", () => {
  interface Vectors {
    readonly valid: Record<string, ReadonlyArray<unknown>>
    readonly invalid: Record<string, ReadonlyArray<{ readonly payload: unknown }>>
    readonly envelope_invalid: ReadonlyArray<{ readonly frame: string }>
    readonly unsupported_event_types: ReadonlyArray<{ readonly type: string; readonly payload: unknown }>
  }
  const vectors = JSON.parse(
    readFileSync(new URL("../fixtures/filament-client-vectors.json", import.meta.url), "utf8")
  ) as Vectors

  /** The Effect decoding path of a whole frame (envelope, legacy normalization, payload). */
  const effectFrame = (text: string) => {
    const envelope = parseEnvelope(text, { strict: false })
    if (Either.isLeft(envelope))
      return { reason: envelope.left.reason === "oversized" ? "oversized" : "invalid_envelope" }
    const { t, d } = envelope.right
    if (Object.hasOwn(LEGACY_EVENTS, t)) {
      for (const type of Manifest.lookup(t)?.migration?.replacedBy ?? []) {
        const payload = decodePayload(Manifest.lookup(type) as EventDefinition, d, { strict: false })
        if (Either.isRight(payload)) return { type, payload: payload.right, legacyType: t }
      }
      return { reason: "invalid_payload", eventType: t }
    }
    return Either.match(decodeEvent(t, d, { strict: false }), {
      onLeft: (error) => ({ reason: error.reason, eventType: t }),
      onRight: (event) => ({ type: event.type, payload: event.payload })
    })
  }
  const generatedFrame = (text: string) => {
    const result = decodeFrame(text)
    if (result._tag === "Right") return result.right
    const { reason, eventType } = result.left
    return eventType === undefined ? { reason } : { reason, eventType }
  }
  const frame = (t: string, d: unknown) => JSON.stringify({ v: 1, t, d })

  const frames = [
    ...Object.entries(vectors.valid).flatMap(([type, payloads]) => payloads.map((d) => frame(type, d))),
    ...Object.entries(vectors.invalid).flatMap(([type, cases]) =>
      cases.map(({ payload }) => frame(type, payload))
    ),
    ...vectors.envelope_invalid.map(({ frame }) => frame),
    ...vectors.unsupported_event_types.map(({ type, payload }) => frame(type, payload))
  ]

  it("every vector frame: the same event (type, payload) or the same drop reason as the Effect path", () => {
    expect(frames.length).toBeGreaterThan(200)
    for (const text of frames)
      expect(generatedFrame(text), text.slice(0, 300)).toStrictEqual(effectFrame(text))
  })

  it("every vector payload, per event: the same verdict and value as Effect Schema", () => {
    for (const [type, payloads] of Object.entries(vectors.valid).concat(
      Object.entries(vectors.invalid).map(([type, cases]) => [type, cases.map(({ payload }) => payload)])
    )) {
      const target = TARGETS.find((candidate) => candidate.name === type)!
      for (const payload of payloads) sameVerdict(Generated, target, payload)
    }
  })

  it("mutated frames of real events: the same outcome as the Effect path", () => {
    const frameValues = validValues(TARGETS[0]!).chain((envelope) =>
      fc.oneof(
        fc.constant(envelope),
        mutated(fc.constant(envelope)),
        fc.constant({ ...(envelope as object), t: "workspace_channel_override_update" })
      )
    )
    fc.assert(
      fc.property(frameValues, (value) => {
        const text = JSON.stringify(value)
        expect(generatedFrame(text)).toStrictEqual(effectFrame(text))
      }),
      { numRuns: 500, seed: 5 }
    )
  }, 60_000)
})
