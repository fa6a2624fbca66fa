/**
 * Client-side frame decoding: envelope and payload, built from the event registry.
 *
 * Tolerant where the original web client is tolerant (unknown top-level envelope keys, additive
 * payload fields, unknown event types) and fail-closed everywhere else: a known event whose payload
 * does not match its schema is dropped with a typed reason, and later frames are unaffected.
 */
import { Data, Either } from "effect"
import { MAX_EVENT_BYTES, parseEnvelope } from "../protocol/Envelope.js"
import { decodePayload } from "../protocol/EventDefinition.js"
import type { EventDefinition } from "../protocol/EventDefinition.js"
import { decodeEvent, Manifest } from "../protocol/Manifest.js"
import type { GatewayEventType, PayloadOfType } from "../protocol/Manifest.js"

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

/** A decoded event. `legacyType` is set when it arrived under a deprecated name and was normalized. */
export type ClientEvent = {
  readonly [T in ClientEventType]: {
    readonly type: T
    readonly payload: PayloadOfType<T>
    readonly legacyType?: LegacyEventType
  }
}[ClientEventType]

/** The decoded event of one type. */
export type ClientEventOf<T extends ClientEventType> = Extract<ClientEvent, { readonly type: T }>

export type DropReason = "invalid_envelope" | "invalid_payload" | "unknown_event" | "oversized"

/** Why a text frame did not become an event. `eventType` is the envelope's `t` when it was valid. */
export class FrameDropped extends Data.TaggedError("FrameDropped")<{
  readonly reason: DropReason
  readonly eventType?: string
  readonly detail: string
}> {
  override get message(): string {
    return `${this.reason}: ${this.detail}`
  }
}

// Additive fields are tolerated (and stripped), as every web-client decoder does.
const tolerant = { strict: false } as const

const isLegacyEventType = (type: string): type is LegacyEventType => Object.hasOwn(LEGACY_EVENTS, type)

/** The explicit events a legacy event may normalize to, in the manifest's order. */
const replacementsOf = (legacy: LegacyEventType): ReadonlyArray<string> =>
  Manifest.lookup(legacy)?.migration?.replacedBy ?? []

/** Every event type the client decodes to, from the registry, in catalog order. */
export const CLIENT_EVENT_TYPES: ReadonlyArray<ClientEventType> = Manifest.events
  .map((event) => event.type)
  .filter((type): type is ClientEventType => !isLegacyEventType(type))

const drop = (reason: DropReason, detail: string, eventType?: string): Either.Either<never, FrameDropped> =>
  Either.left(
    eventType === undefined
      ? new FrameDropped({ reason, detail })
      : new FrameDropped({ reason, detail, eventType })
  )

const decodeLegacy = (legacy: LegacyEventType, data: unknown): Either.Either<ClientEvent, FrameDropped> => {
  const errors: Array<string> = []
  for (const type of replacementsOf(legacy)) {
    const event = Manifest.lookup(type)
    if (event === undefined) continue
    const result = decodePayload(event as EventDefinition, data, tolerant)
    // The payload was decoded by the schema of `type`, so it is that event's payload.
    if (Either.isRight(result))
      return Either.right({ type, payload: result.right, legacyType: legacy } as ClientEvent)
    errors.push(`as ${type}: ${result.left.message}`)
  }
  return drop("invalid_payload", errors.join("; ") || "no replacement event registered", legacy)
}

/**
 * Decodes one text frame. The byte size is checked before parsing; the envelope is tolerant of
 * unknown top-level keys; the payload is decoded by the registered schema of its event type.
 * Never throws.
 */
export const decodeFrame = (
  text: string,
  options?: { readonly maxBytes?: number }
): Either.Either<ClientEvent, FrameDropped> => {
  const maxBytes = options?.maxBytes ?? MAX_EVENT_BYTES
  const envelope = parseEnvelope(text, { strict: false, maxBytes })
  if (Either.isLeft(envelope)) {
    const rejection = envelope.left
    switch (rejection.reason) {
      case "oversized":
        return drop("oversized", `frame is ${rejection.bytes} bytes, over ${maxBytes}`)
      case "invalid_json":
        return drop("invalid_envelope", "frame is not JSON")
      case "invalid_envelope":
        return drop("invalid_envelope", rejection.detail)
    }
  }
  const { t, d } = envelope.right
  if (isLegacyEventType(t)) return decodeLegacy(t, d)
  // The registry looks types up in a Map: `__proto__`, `constructor` and the like are unknown.
  return Either.match(decodeEvent(t, d, tolerant), {
    onLeft: (error) => drop(error.reason, error.detail, t),
    onRight: (event) => Either.right(event as ClientEvent)
  })
}
