/**
 * The `{v,t,d}` envelope shared by both directions.
 *
 * Ingress decoding is strict (exactly the keys `v`, `t`, `d`); client decoding tolerates unknown
 * top-level keys, as the original web client does. Both check the UTF-8 byte size before parsing.
 */
import { Either, Schema } from "effect"

export const PROTOCOL_VERSION = 1 as const

/** Hard protocol cap on a frame, both directions (UTF-8 bytes). */
export const MAX_EVENT_BYTES = 65_536

export const EVENT_TYPE_PATTERN = /^[a-z0-9_.]{1,64}$/

export const EventType = Schema.String.pipe(
  Schema.pattern(EVENT_TYPE_PATTERN, { message: () => "event type must match ^[a-z0-9_.]{1,64}$" })
)

const isJsonObject = (input: unknown): input is { readonly [key: string]: unknown } =>
  typeof input === "object" && input !== null && !Array.isArray(input)

/**
 * `d` must be a JSON object (not an array, not null). Passed through as parsed, not copied: a copy
 * made by assignment would turn an own `"__proto__"` key into the object's prototype, hiding it from
 * the payload decoder's unknown-key check (and exposing inherited values).
 */
export const EnvelopeData = Schema.declare(isJsonObject, {
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

/** UTF-8 byte length of a string, without allocating (isomorphic: no Buffer). */
export const utf8ByteLength = (text: string): number => {
  let bytes = 0
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i)
    if (unit < 0x80) bytes += 1
    else if (unit < 0x800) bytes += 2
    else if (unit >= 0xd800 && unit <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1)
      if (next >= 0xdc00 && next <= 0xdfff) {
        bytes += 4
        i++
      } else bytes += 3
    } else bytes += 3
  }
  return bytes
}

const decodeStrict = Schema.decodeUnknownEither(Envelope, { onExcessProperty: "error" })
const decodeTolerant = Schema.decodeUnknownEither(Envelope, { onExcessProperty: "ignore" })

/**
 * Parses a text frame into an envelope. `strict` (ingress) rejects unknown top-level keys;
 * otherwise (client) they are ignored. Never throws.
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
  const decoded = (options.strict ? decodeStrict : decodeTolerant)(json)
  return Either.mapLeft(decoded, (error) => ({ reason: "invalid_envelope" as const, detail: error.message }))
}
