/**
 * Outbound frames: an event is encoded with its schema, serialized and size-checked exactly once
 * per broadcast; the resulting `Frame` (one UTF-8 buffer) is handed to every recipient.
 */
import { Either, ParseResult } from "effect"
import { EVENT_TYPE_PATTERN, PROTOCOL_VERSION } from "../protocol/Envelope.js"
import {
  encodePayload,
  type EventDefinition,
  type EventScope,
  type PayloadOf
} from "../protocol/EventDefinition.js"
import { OversizedOutbound, SerializeError, type OutboundError } from "./Errors.js"

export interface Frame {
  readonly eventType: string
  readonly scope: EventScope
  /** The compact JSON envelope `{"v":1,"t":...,"d":...}`, shared by every recipient. */
  readonly data: Buffer
}

/**
 * Encodes `payload` as `event`'s wire payload inside the envelope. Synchronous; the result is also
 * an `Effect<Frame, SerializeError | OversizedOutbound>`.
 */
export const encode = <E extends EventDefinition>(
  event: E,
  payload: PayloadOf<E>,
  maxBytes: number
): Either.Either<Frame, OutboundError> => {
  if (!EVENT_TYPE_PATTERN.test(event.type)) {
    return Either.left(
      new SerializeError({ reason: "serialize_error", eventType: event.type, detail: "invalid event type" })
    )
  }
  const wire = encodePayload(event, payload)
  if (Either.isLeft(wire)) {
    return Either.left(
      new SerializeError({
        reason: "serialize_error",
        eventType: event.type,
        detail: ParseResult.TreeFormatter.formatErrorSync(wire.left)
      })
    )
  }
  let text: string
  try {
    text = JSON.stringify({ v: PROTOCOL_VERSION, t: event.type, d: wire.right })
  } catch (error) {
    return Either.left(
      new SerializeError({ reason: "serialize_error", eventType: event.type, detail: String(error) })
    )
  }
  const data = Buffer.from(text, "utf8")
  if (data.length > maxBytes) {
    return Either.left(
      new OversizedOutbound({
        reason: "oversized_outbound",
        eventType: event.type,
        bytes: data.length,
        maxBytes
      })
    )
  }
  return Either.right({ eventType: event.type, scope: event.scope, data })
}
