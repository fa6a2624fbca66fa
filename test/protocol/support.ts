/** Shared test support: the independent JSON Schema validator and small payload helpers. */
import { Ajv, type Options, type ValidateFunction } from "ajv"
import { Either } from "effect"
import { decodePayload, type EventDefinition } from "../../src/protocol/EventDefinition.js"
import { payloadJsonSchema } from "../../src/protocol/Manifest.js"

type Json = { [key: string]: unknown }

const makeAjv = () =>
  new Ajv({
    strict: true,
    // `required` inside `anyOf` names keys declared by the parent object: fine, not a typo.
    strictRequired: false,
    // Our decoders (and the web client) run patterns without the `u` flag and count lengths in
    // UTF-16 code units (`String.length`); the manifest says so (`string_length_unit`).
    unicodeRegExp: false,
    unicode: false,
    logger: {
      log: console.log,
      warn: (message: unknown) => {
        if (!String(message).startsWith("DEPRECATED: option unicode")) console.warn(message)
      },
      error: console.error
    }
  } as Options)

const ajv = makeAjv()

/** Removes `additionalProperties: false` everywhere: the JSON Schema of tolerant (client) decoding. */
export const tolerantSchema = (schema: unknown): unknown => {
  if (Array.isArray(schema)) return schema.map(tolerantSchema)
  if (typeof schema !== "object" || schema === null) return schema
  const out: Json = {}
  for (const [key, value] of Object.entries(schema)) {
    if (key === "additionalProperties" && value === false) continue
    out[key] = tolerantSchema(value)
  }
  return out
}

const strictValidators = new WeakMap<object, ValidateFunction>()
const tolerantValidators = new WeakMap<object, ValidateFunction>()

/** ajv (draft-07) on the generated JSON Schema: the strict schema, or its tolerant variant. */
export const ajvAccepts = (schema: object, input: unknown, mode: { readonly strict: boolean }): boolean => {
  const cache = mode.strict ? strictValidators : tolerantValidators
  const validate = cache.get(schema) ?? ajv.compile(mode.strict ? schema : (tolerantSchema(schema) as object))
  cache.set(schema, validate)
  return validate(input) === true
}

export const ajvAcceptsEvent = (event: EventDefinition, input: unknown, mode: { readonly strict: boolean }) =>
  ajvAccepts(payloadJsonSchema(event), input, mode)

export const effectAccepts = (event: EventDefinition, input: unknown, mode: { readonly strict: boolean }) =>
  Either.isRight(decodePayload(event, input, mode))

/** Adds an unknown key to every object of a JSON value (additive-field compatibility). */
export const withAdditiveFields = (value: unknown): unknown => {
  if (Array.isArray(value)) return value.map(withAdditiveFields)
  if (typeof value !== "object" || value === null) return value
  const out: Json = {}
  for (const [key, item] of Object.entries(value)) out[key] = withAdditiveFields(item)
  out.zz_additive_field = { since: "v1.1", note: "ignored by tolerant decoders" }
  return out
}

/** A deep JSON copy (wire round trip). */
export const viaJson = (value: unknown): unknown => JSON.parse(JSON.stringify(value))

/** The keys every variant of an object schema requires (top-level `required`, or common to `anyOf`). */
export const requiredKeys = (schema: unknown): ReadonlyArray<string> => {
  const node = schema as Json
  if (Array.isArray(node.anyOf)) {
    const sets = node.anyOf.map((member) => new Set(requiredKeys(member)))
    return [...(sets[0] ?? [])].filter((key) => sets.every((set) => set.has(key)))
  }
  return Array.isArray(node.required) ? (node.required as Array<string>) : []
}
