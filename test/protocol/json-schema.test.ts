/**
 * The generated JSON Schemas are not decorative: ajv (draft-07), run on the schemas of the JSON
 * manifest, reaches the same verdict as the Effect decoders on every vector. The strict schemas
 * (additionalProperties: false) are compared with strict decoding; the same schemas without
 * additionalProperties with client (tolerant) decoding. The only excused vectors are those breaking a
 * rule the manifest lists as unexpressible; for them the test checks ajv accepts and Effect rejects.
 */
import { readFileSync } from "node:fs"
import { Either, Schema } from "effect"
import { describe, expect, it } from "vitest"
import { COMMANDS } from "../../src/protocol/Commands.js"
import type { EventDefinition } from "../../src/protocol/EventDefinition.js"
import { commandJsonSchema, Manifest, toJsonManifest } from "../../src/protocol/Manifest.js"
import { ajvAccepts, ajvAcceptsEvent, effectAccepts, requiredKeys, withAdditiveFields } from "./support.js"
import { COMMAND_VECTORS, EVENT_VECTORS, type InvalidVector } from "./vectors.js"

const fixture: {
  readonly valid: Record<string, ReadonlyArray<unknown>>
  readonly invalid: Record<string, ReadonlyArray<{ readonly payload: unknown }>>
} = JSON.parse(readFileSync(new URL("../fixtures/filament-client-vectors.json", import.meta.url), "utf8"))

const modes = [{ strict: true }, { strict: false }] as const

/** Every vector of an event: ours, derived ones, and the original client's. */
const vectorsOf = (
  event: EventDefinition
): ReadonlyArray<InvalidVector | { payload: unknown; why: string }> => {
  const own = EVENT_VECTORS[event.type as keyof typeof EVENT_VECTORS]
  const first = own.valid[0]!
  return [
    ...own.valid.map((payload, i) => ({ payload, why: `valid[${i}]` })),
    ...own.valid.map((payload, i) => ({ payload: withAdditiveFields(payload), why: `additive valid[${i}]` })),
    ...own.invalid,
    ...Object.keys(first).map((key) => {
      const payload = { ...first }
      delete payload[key]
      return { payload, why: `without ${key}` }
    }),
    ...(fixture.valid[event.type] ?? []).map((payload, i) => ({ payload, why: `fixture valid[${i}]` })),
    ...(fixture.invalid[event.type] ?? []).map(({ payload }, i) => ({
      payload,
      why: `fixture invalid[${i}]`
    }))
  ]
}

describe("JSON Schema parity (ajv vs Effect) for events", () => {
  const exercised = new Set<string>()

  describe.each(Manifest.events.map((event) => [event.type, event as EventDefinition] as const))(
    "%s",
    (_type, event) => {
      it.each(modes)("same verdict on every vector (strict: $strict)", (mode) => {
        for (const vector of vectorsOf(event)) {
          const effect = effectAccepts(event, vector.payload, mode)
          const ajv = ajvAcceptsEvent(event, vector.payload, mode)
          if ("unexpressible" in vector && vector.unexpressible !== undefined) {
            expect(event.unexpressible, vector.why).toContain(vector.unexpressible)
            expect({ effect, ajv }, vector.why).toEqual({ effect: false, ajv: true })
            exercised.add(`${event.type}: ${vector.unexpressible}`)
          } else {
            expect(ajv, `${vector.why}: ${JSON.stringify(vector.payload).slice(0, 300)}`).toBe(effect)
          }
        }
      })
    }
  )

  it("every unexpressible rule of the manifest is exercised by a vector", () => {
    const listed = Manifest.events.flatMap((event) =>
      event.unexpressible.map((rule) => `${event.type}: ${rule}`)
    )
    expect([...exercised].sort()).toEqual([...new Set(listed)].sort())
  })
})

describe("JSON Schema parity (ajv vs Effect) for commands", () => {
  const exercised = new Set<string>()

  it.each(COMMANDS.map((command) => [command.type, command] as const))("%s", (_type, command) => {
    const decode = Schema.decodeUnknownEither(command.payload as Schema.Schema<unknown, unknown>, {
      onExcessProperty: "error"
    })
    const own = COMMAND_VECTORS[command.type]
    const schema = commandJsonSchema(command)
    const all: ReadonlyArray<InvalidVector> = [
      ...own.valid.map((payload, i) => ({ payload, why: `valid[${i}]` })),
      ...own.invalid
    ]
    for (const vector of all) {
      const effect = Either.isRight(decode(vector.payload))
      const ajv = ajvAccepts(schema, vector.payload, { strict: true })
      if (vector.unexpressible !== undefined) {
        expect(command.unexpressible as ReadonlyArray<string>).toContain(vector.unexpressible)
        expect({ effect, ajv }, vector.why).toEqual({ effect: false, ajv: true })
        exercised.add(`${command.type}: ${vector.unexpressible}`)
      } else expect(ajv, vector.why).toBe(effect)
    }
    for (const rule of command.unexpressible) expect(exercised).toContain(`${command.type}: ${rule}`)
    expect(requiredKeys(schema).length).toBeGreaterThan(0)
  })
})

describe("JSON manifest", () => {
  it("embeds the same payload schemas the parity tests validate against", () => {
    const manifest = toJsonManifest()
    expect(manifest.events.map((e) => e.event_type)).toEqual(Manifest.events.map((e) => e.type))
    for (const entry of manifest.events) {
      expect(entry.payload_schema.$schema).toBe("http://json-schema.org/draft-07/schema#")
      const event = Manifest.lookup(entry.event_type) as EventDefinition
      expect(entry.unexpressible).toEqual(event.unexpressible)
    }
    expect(manifest.commands.map((c) => c.command_type)).toEqual([
      "subscribe",
      "unsubscribe",
      "message_create"
    ])
  })
})
