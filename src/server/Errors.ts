/**
 * The gateway's typed errors. Each carries a `reason` literal: the value that ends up in a metric
 * label, a close reason or an HTTP error body.
 */
import { Data } from "effect"
import type { SchemaIssue } from "../protocol/Envelope.js"

/** Building an outbound frame failed: the payload does not encode with its schema, or `t` is invalid. */
export class SerializeError extends Data.TaggedError("SerializeError")<{
  readonly reason: "serialize_error"
  readonly eventType: string
  readonly detail: string
}> {}

/** The built envelope is larger than the cap: nobody receives it. */
export class OversizedOutbound extends Data.TaggedError("OversizedOutbound")<{
  readonly reason: "oversized_outbound"
  readonly eventType: string
  readonly bytes: number
  readonly maxBytes: number
}> {}

export type OutboundError = SerializeError | OversizedOutbound

/** The access token is missing, malformed, wrongly signed or expired. */
export class Unauthorized extends Data.TaggedError("Unauthorized")<{
  readonly reason: "missing_token" | "invalid_token"
  readonly detail: string
}> {}

/** The MessageHandler refused an ingress `message_create` (close 4011). */
export class MessageRejected extends Data.TaggedError("MessageRejected")<{
  readonly reason: "forbidden" | "attachments_unsupported" | "handler_failed"
  readonly detail: string
}> {}

/** A publish request that names no publishable event, or whose payload or recipients are invalid. */
export class PublishRejected extends Data.TaggedError("PublishRejected")<{
  readonly reason: "invalid_event"
  readonly detail: string
  /** Set when the body or payload failed its schema: the bounded issues (path and message). */
  readonly issues?: ReadonlyArray<SchemaIssue>
}> {}

/**
 * The gateway refuses to deliver a published event because it would take a bounded projection over
 * its cap (a `voice_participant_join` over the tracked voice channels or participants per channel).
 * Nothing is delivered; the publish API answers 409.
 */
export class PublishRefused extends Data.TaggedError("PublishRefused")<{
  readonly reason: "voice_channel_limit" | "voice_participant_limit"
  readonly limit: number
  readonly detail: string
}> {}

/** Why a publish delivered nothing. */
export type PublishError = OutboundError | PublishRefused

/** The cluster bus (Redis) could not be reached within its timeout at startup. */
export class BusUnavailable extends Data.TaggedError("BusUnavailable")<{
  readonly reason: "bus_unavailable"
  /** The Redis URL(s), without credentials. */
  readonly redis: string
  /** Why: the last connection error, or the timeout. */
  readonly detail: string
}> {
  override get message() {
    return `cannot reach Redis at ${this.redis} (GATEWAY_REDIS_URL): ${this.detail}`
  }
}

/** The standalone server could not listen on `GATEWAY_HOST`:`GATEWAY_PORT` (in use, not permitted, …). */
export class ListenFailed extends Data.TaggedError("ListenFailed")<{
  readonly reason: "listen_failed"
  readonly address: string
  readonly detail: string
}> {
  override get message() {
    return `cannot listen on ${this.address} (GATEWAY_HOST, GATEWAY_PORT): ${this.detail}`
  }
}
