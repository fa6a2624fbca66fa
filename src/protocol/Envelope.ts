/**
 * The `{v,t,d}` envelope shared by both directions.
 *
 * Ingress decoding is strict (exactly the keys `v`, `t`, `d`); client decoding tolerates unknown
 * top-level keys, as the original web client does. Both check the UTF-8 byte size before parsing.
 */
import { Either, Schema } from "effect"
import { declarationRule } from "./Refinements.js"
import { DECLARATION_RULES, utf8ByteLength } from "./Rules.js"

export { utf8ByteLength }

export const PROTOCOL_VERSION = 1 as const

/** Hard protocol cap on a frame, both directions (UTF-8 bytes). */
export const MAX_EVENT_BYTES = 65_536

export const EVENT_TYPE_PATTERN = /^[a-z0-9_.]{1,64}$/

export const EventType = Schema.String.pipe(
  Schema.pattern(EVENT_TYPE_PATTERN, { message: () => "event type must match ^[a-z0-9_.]{1,64}$" })
)

/**
 * `d` must be a JSON object (not an array, not null). Passed through as parsed, not copied: a copy
 * made by assignment would turn an own `"__proto__"` key into the object's prototype, hiding it from
 * the payload decoder's unknown-key check (and exposing inherited values).
 */
export const EnvelopeData = Schema.declare(DECLARATION_RULES.isJsonObject, {
  ...declarationRule("isJsonObject"),
  identifier: "EnvelopeData",
  description: "a JSON object",
  jsonSchema: { type: "object" }
})

export const Envelope = Schema.Struct({
  v: Schema.Literal(PROTOCOL_VERSION),
  t: EventType,
  d: EnvelopeData
})
export type Envelope = typeof Envelope.Type

export type EnvelopeRejection =
  | { readonly reason: "oversized"; readonly bytes: number }
  | { readonly reason: "invalid_json" }
  | { readonly reason: "invalid_envelope"; readonly detail: string }

const isJsonWhitespace = (unit: number) => unit === 0x20 || unit === 0x0a || unit === 0x0d || unit === 0x09

/**
 * Whether a JSON text (one that `JSON.parse` accepted) has an object with a repeated key, which
 * `JSON.parse` would silently resolve to the last value. Strict ingress refuses such frames, as the
 * original server's decoder does: `{"guild_id":A,"guild_id":B}` must not mean B to us and A to a proxy.
 */
export const hasDuplicateKeys = (text: string): boolean => {
  // One entry per open container: the keys seen so far for an object, `undefined` for an array.
  const open: Array<Set<string> | undefined> = []
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i)
    if (unit === 0x7b) open.push(new Set())
    else if (unit === 0x5b) open.push(undefined)
    else if (unit === 0x7d || unit === 0x5d) open.pop()
    else if (unit === 0x22) {
      const start = i
      for (i++; i < text.length && text.charCodeAt(i) !== 0x22; i++) if (text.charCodeAt(i) === 0x5c) i++
      let next = i + 1
      while (isJsonWhitespace(text.charCodeAt(next))) next++
      const keys = open[open.length - 1]
      // In valid JSON a string followed by `:` is an object key; values are followed by `,` `}` `]`.
      if (keys !== undefined && text.charCodeAt(next) === 0x3a) {
        const raw = text.slice(start, i + 1)
        const key = raw.includes("\\") ? (JSON.parse(raw) as string) : raw.slice(1, -1)
        if (keys.has(key)) return true
        keys.add(key)
      }
    }
  }
  return false
}

const decodeStrict = Schema.decodeUnknownEither(Envelope, { onExcessProperty: "error" })
const decodeTolerant = Schema.decodeUnknownEither(Envelope, { onExcessProperty: "ignore" })

/**
 * Parses a text frame into an envelope. `strict` (ingress) rejects unknown top-level keys and
 * duplicate keys anywhere; otherwise (client) unknown keys are ignored. Never throws.
 */
export const parseEnvelope = (
  text: string,
  options: { readonly strict: boolean; readonly maxBytes?: number }
): Either.Either<Envelope, EnvelopeRejection> => {
  const maxBytes = options.maxBytes ?? MAX_EVENT_BYTES
  // Checked before parsing: a UTF-16 unit is 1..3 UTF-8 bytes, so short frames skip the count.
  if (text.length > maxBytes || (text.length * 3 > maxBytes && utf8ByteLength(text) > maxBytes)) {
    return Either.left({ reason: "oversized", bytes: utf8ByteLength(text) })
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    return Either.left({ reason: "invalid_json" })
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    return Either.left({ reason: "invalid_envelope", detail: "frame is not a JSON object" })
  }
  if (options.strict && hasDuplicateKeys(text)) {
    return Either.left({ reason: "invalid_envelope", detail: "frame has a duplicate object key" })
  }
  const decoded = (options.strict ? decodeStrict : decodeTolerant)(json)
  return Either.mapLeft(decoded, (error) => ({ reason: "invalid_envelope" as const, detail: error.message }))
}
