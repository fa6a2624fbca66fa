/**
 * Client-side frame decoding: envelope and payload, by the decoders generated from the event
 * registry (`generated/decoders.ts`: plain code, no Effect, the Effect schemas' verdicts).
 *
 * Tolerant where the original web client is tolerant (unknown top-level envelope keys, additive
 * payload fields, unknown event types) and fail-closed everywhere else: a known event whose payload
 * does not match its schema is dropped with a typed reason, and later frames are unaffected.
 */
import type { GatewayEventType, PayloadOfType } from "../protocol/Manifest.js"
import type { EventPosition } from "../protocol/Recovery.js"
import { utf8ByteLength } from "../protocol/Rules.js"
import {
  decodeEnvelope,
  decodePosition,
  EVENT_PAYLOAD_DECODERS,
  EVENT_TYPES,
  MAX_EVENT_BYTES,
  REPLACED_BY
} from "./generated/decoders.js"

/** A decoding result, shaped like Effect's `Either` (`_tag`, `right` / `left`) but a plain object. */
export type Result<A, E> =
  { readonly _tag: "Right"; readonly right: A } | { readonly _tag: "Left"; readonly left: E }

/**
 * Deprecated events the client still accepts, each with the compatibility-counter path it is
 * counted under. A legacy event is normalized to the first of its manifest replacements whose
 * schema accepts the payload (decided by shape, not by name), so handlers only see explicit events.
 */
export const LEGACY_EVENTS = {
  workspace_channel_override_update: { path: "channel_override_migration" }
} as const

export type LegacyEventType = keyof typeof LEGACY_EVENTS

/** The event types a client can receive after normalization: every registry event but the legacy ones. */
export type ClientEventType = Exclude<GatewayEventType, LegacyEventType>

/**
 * A decoded event. `legacyType` is set when it arrived under a deprecated name and was normalized;
 * `pos` when the connection opted in to recovery and the event is recoverable (its stream position).
 */
export type ClientEvent = {
  readonly [T in ClientEventType]: {
    readonly type: T
    readonly payload: PayloadOfType<T>
    readonly legacyType?: LegacyEventType
    readonly pos?: EventPosition
  }
}[ClientEventType]

/** The decoded event of one type. */
export type ClientEventOf<T extends ClientEventType> = Extract<ClientEvent, { readonly type: T }>

/** `duplicate`: the client already has this stream position (only `GatewayClient` drops for it). */
export type DropReason = "invalid_envelope" | "invalid_payload" | "unknown_event" | "oversized" | "duplicate"

/** Why a text frame did not become an event. `eventType` is the envelope's `t` when it was valid. */
export class FrameDropped extends Error {
  readonly _tag = "FrameDropped"
  override readonly name = "FrameDropped"
  readonly reason: DropReason
  readonly eventType?: string
  readonly detail: string

  constructor(fields: { readonly reason: DropReason; readonly eventType?: string; readonly detail: string }) {
    super(`${fields.reason}: ${fields.detail}`)
    this.reason = fields.reason
    if (fields.eventType !== undefined) this.eventType = fields.eventType
    this.detail = fields.detail
  }
}

export const isLegacyEventType = (type: string): type is LegacyEventType => Object.hasOwn(LEGACY_EVENTS, type)

/** The explicit events a legacy event may normalize to, in the manifest's order. */
export const replacementsOf = (legacy: LegacyEventType): ReadonlyArray<GatewayEventType> =>
  REPLACED_BY.get(legacy) ?? []

/** Every event type the client decodes to, from the registry, in catalog order. */
export const CLIENT_EVENT_TYPES: ReadonlyArray<ClientEventType> = EVENT_TYPES.filter(
  (type): type is ClientEventType => !isLegacyEventType(type)
)

const drop = (reason: DropReason, detail: string, eventType?: string): Result<never, FrameDropped> => ({
  _tag: "Left",
  left:
    eventType === undefined
      ? new FrameDropped({ reason, detail })
      : new FrameDropped({ reason, detail, eventType })
})

// The payload was decoded by the decoder of `type`, so it is that event's payload.
const decoded = (event: {
  readonly type: string
  readonly payload: unknown
  readonly legacyType?: LegacyEventType
  readonly pos?: EventPosition
}): Result<ClientEvent, never> => ({
  _tag: "Right",
  right: event as ClientEvent
})

const decodeLegacy = (
  legacy: LegacyEventType,
  data: unknown,
  position: { readonly pos?: EventPosition }
): Result<ClientEvent, FrameDropped> => {
  const errors: Array<string> = []
  for (const type of replacementsOf(legacy)) {
    const result = EVENT_PAYLOAD_DECODERS.get(type)?.(data)
    if (result === undefined) continue
    if (result.ok) return decoded({ type, payload: result.value, legacyType: legacy, ...position })
    errors.push(`as ${type}: ${result.error}`)
  }
  return drop("invalid_payload", errors.join("; ") || "no replacement event registered", legacy)
}

/**
 * Decodes one text frame. The byte size is checked before parsing; the envelope is tolerant of
 * unknown top-level keys; the payload is decoded by the generated decoder of its event type.
 * Never throws.
 */
export const decodeFrame = (
  text: string,
  options?: { readonly maxBytes?: number }
): Result<ClientEvent, FrameDropped> => {
  const maxBytes = options?.maxBytes ?? MAX_EVENT_BYTES
  // Checked before parsing: a UTF-16 unit is 1..3 UTF-8 bytes, so short frames skip the count.
  if (text.length > maxBytes || (text.length * 3 > maxBytes && utf8ByteLength(text) > maxBytes)) {
    return drop("oversized", `frame is ${utf8ByteLength(text)} bytes, over ${maxBytes}`)
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    return drop("invalid_envelope", "frame is not JSON")
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    return drop("invalid_envelope", "frame is not a JSON object")
  }
  const envelope = decodeEnvelope(json)
  if (!envelope.ok) return drop("invalid_envelope", envelope.error)
  const { t, d } = envelope.value
  // Only a connection that opted in to recovery gets `pos`. A bad one is refused rather than
  // ignored: the positions the client recovers from must come from the server, exactly.
  let position: { readonly pos?: EventPosition } = {}
  if (Object.hasOwn(json, "pos")) {
    const pos = decodePosition((json as { readonly pos: unknown }).pos)
    if (!pos.ok) return drop("invalid_envelope", `pos: ${pos.error}`, t)
    position = { pos: pos.value }
  }
  if (isLegacyEventType(t)) return decodeLegacy(t, d, position)
  // A Map: `__proto__`, `constructor` and the like are unknown.
  const decoder = EVENT_PAYLOAD_DECODERS.get(t)
  if (decoder === undefined) return drop("unknown_event", `unknown event "${t}"`, t)
  const payload = decoder(d)
  return payload.ok
    ? decoded({ type: t, payload: payload.value, ...position })
    : drop("invalid_payload", payload.error, t)
}
