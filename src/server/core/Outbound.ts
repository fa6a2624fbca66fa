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
  /** A batch (`batch`): how many events its wire holds, each counted per recipient. Absent: one. */
  readonly events?: number
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

/**
 * Several built frames of one event type as one write per recipient: their wires back to back, each
 * still a complete WebSocket frame (a client reads them as separate messages, in order). Only for
 * the local delivery loop: the bus, the history and the inspector take the frames one by one.
 */
export const batch = (frames: ReadonlyArray<Frame>): Frame => {
  const first = frames[0]!
  if (frames.length === 1) return first
  let bytes = 0
  for (const frame of frames) bytes += frame.bytes
  return {
    eventType: first.eventType,
    scope: first.scope,
    bytes,
    wire: Buffer.concat(frames.map((frame) => frame.wire)),
    events: frames.length
  }
}

/** Where a recoverable event stands in its stream: the `pos` an opted-in connection receives. */
export interface FramePosition {
  readonly stream: string
  readonly epoch: string
  readonly offset: number
}

/** `,"pos":{…}}`: stream names and epochs are `[0-9A-Za-z_:-]` only, so nothing needs escaping. */
const positionSuffix = ({ epoch, offset, stream }: FramePosition): string =>
  `,"pos":{"stream":"${stream}","epoch":"${epoch}","offset":${offset}}}`

/** The envelope of a built frame: the last `bytes` of its wire. */
const envelopeOf = (frame: Frame): Buffer => frame.wire.subarray(frame.wire.length - frame.bytes)

/**
 * The JSON text of `d` inside a built frame (what the history records): the envelope is
 * `{"v":1,"t":"<type>","d":<d>}` and the type needs no escaping (`EVENT_TYPE_PATTERN`).
 */
export const payloadText = (frame: Frame): string =>
  envelopeOf(frame).toString(
    "utf8",
    `{"v":${PROTOCOL_VERSION},"t":"${frame.eventType}","d":`.length,
    frame.bytes - 1
  )

/**
 * The positioned variant of a built frame, by concatenation (no second encode): the envelope
 * without its closing brace, then `,"pos":{…}}`. Byte for byte the legacy frame plus `pos`.
 */
export const withPosition = (frame: Frame, position: FramePosition): Frame => {
  const suffix = positionSuffix(position)
  const envelope = envelopeOf(frame)
  const bytes = frame.bytes - 1 + suffix.length
  const text = Buffer.allocUnsafe(bytes)
  envelope.copy(text, 0, 0, frame.bytes - 1)
  text.write(suffix, frame.bytes - 1, "latin1")
  return { eventType: frame.eventType, scope: frame.scope, bytes, wire: textFrame(text, bytes) }
}

/** A recorded event as an opted-in connection receives it: the same bytes its live frame had. */
export const replayedFrame = (
  eventType: string,
  scope: EventScope,
  payload: string,
  position: FramePosition
): Frame => {
  const text = `{"v":${PROTOCOL_VERSION},"t":"${eventType}","d":${payload}${positionSuffix(position)}`
  const bytes = Buffer.byteLength(text)
  return { eventType, scope, bytes, wire: textFrame(text, bytes) }
}
