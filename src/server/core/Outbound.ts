/**
 * Outbound frames: an event is encoded with its schema, serialized, size-checked and framed as a
 * complete WebSocket text frame exactly once per broadcast. Every recipient's socket is handed the
 * same bytes: no per-recipient serialization, copy or frame header.
 */
import { Either, ParseResult } from "effect"
import { EVENT_TYPE_PATTERN, PROTOCOL_VERSION } from "../../protocol/Envelope.js"
import type { EventDefinition, EventScope, PayloadOf } from "../../protocol/EventDefinition.js"
import { OversizedOutbound, SerializeError, type OutboundError } from "../Errors.js"
import { encodeStrict } from "./PayloadEncoder.js"

export interface Frame {
  readonly eventType: string
  readonly scope: EventScope
  /** UTF-8 bytes of the envelope `{"v":1,"t":...,"d":...}` (what the size cap applies to). */
  readonly bytes: number
  /** The whole WebSocket frame: FIN + text opcode, unmasked length header (server side), envelope. */
  readonly wire: Buffer
}

const FIN_TEXT = 0x81

/**
 * Frames UTF-8 text (a string, or its bytes as another node sent them) as one unmasked,
 * unfragmented, uncompressed text frame (RFC 6455 §5.2).
 */
export const textFrame = (
  text: string | Uint8Array,
  byteLength: number = typeof text === "string" ? Buffer.byteLength(text) : text.length
): Buffer => {
  const header = byteLength < 126 ? 2 : byteLength < 65_536 ? 4 : 10
  const wire = Buffer.allocUnsafe(header + byteLength)
  wire[0] = FIN_TEXT
  if (header === 2) wire[1] = byteLength
  else if (header === 4) {
    wire[1] = 126
    wire.writeUInt16BE(byteLength, 2)
  } else {
    wire[1] = 127
    wire.writeUInt32BE(Math.floor(byteLength / 2 ** 32), 2)
    wire.writeUInt32BE(byteLength >>> 0, 6)
  }
  if (typeof text === "string") wire.write(text, header, "utf8")
  else wire.set(text, header)
  return wire
}

/**
 * Encodes `payload` as `event`'s wire payload inside the envelope and frames it. Synchronous; the
 * result is also an `Effect<Frame, SerializeError | OversizedOutbound>`.
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
  const wire = encodeStrict(event, payload)
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
  const bytes = Buffer.byteLength(text)
  if (bytes > maxBytes) {
    return Either.left(
      new OversizedOutbound({ reason: "oversized_outbound", eventType: event.type, bytes, maxBytes })
    )
  }
  return Either.right({ eventType: event.type, scope: event.scope, bytes, wire: textFrame(text, bytes) })
}
