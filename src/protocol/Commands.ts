/**
 * Ingress commands (client -> server): `subscribe`, `unsubscribe` (ours, additive) and
 * `message_create`. Decoding is synchronous and strict: unknown keys anywhere are rejected, ids are
 * accepted in any case and yield their canonical uppercase form. A rejection's `reason` is exactly
 * the metric reason and the close reason.
 */
import { Either, type ParseResult, Schema } from "effect"
import { formatSchemaIssues, MAX_EVENT_BYTES, parseEnvelope, schemaIssues } from "./Envelope.js"
import { AttachmentId, ChannelId, GuildId, ingress } from "./Ids.js"
import { SubscribeSince } from "./Recovery.js"
import { ruleFilter, ruleTransform } from "./Refinements.js"

export const MAX_MESSAGE_CONTENT_BYTES = 2000
export const MAX_ATTACHMENTS_PER_MESSAGE = 5

const ChannelTarget = {
  guild_id: ingress(GuildId),
  channel_id: ingress(ChannelId)
}

/** `since` (missed-event recovery, ours): ignored on a connection that did not opt in. */
export const SubscribePayload = Schema.Struct({
  ...ChannelTarget,
  since: Schema.optionalWith(SubscribeSince, { exact: true })
})
export const UnsubscribePayload = Schema.Struct(ChannelTarget)

export const MESSAGE_CREATE_CONTENT_BYTES_RULE = `content is at most ${MAX_MESSAGE_CONTENT_BYTES} UTF-8 bytes`

// The §3.2 content rule (`messageCreateContent`) holds for the wire and the decoded form alike.
const MessageCreateWire = Schema.Struct({
  ...ChannelTarget,
  // The character bound is implied by the byte bound; it is here so the JSON Schema states it.
  content: Schema.String.pipe(Schema.maxLength(MAX_MESSAGE_CONTENT_BYTES)),
  attachment_ids: Schema.optional(
    Schema.NullOr(Schema.Array(ingress(AttachmentId)).pipe(Schema.maxItems(MAX_ATTACHMENTS_PER_MESSAGE)))
  )
}).pipe(
  ruleFilter("messageCreateContent", [MAX_MESSAGE_CONTENT_BYTES], {
    jsonSchema: {
      $comment: "content may be empty only when attachment_ids is non-empty",
      if: { properties: { content: { type: "string", maxLength: 0 } }, required: ["content"] },
      then: { properties: { attachment_ids: { type: "array", minItems: 1 } }, required: ["attachment_ids"] }
    }
  })
)

/**
 * `message_create`: null/absent attachments become `[]`; duplicates removed keeping first order.
 * The decoded form carries the same rules, so only valid commands can be constructed.
 */
export const MessageCreatePayload = ruleTransform(
  MessageCreateWire,
  Schema.Struct({
    guild_id: Schema.typeSchema(GuildId),
    channel_id: Schema.typeSchema(ChannelId),
    content: Schema.String.pipe(Schema.maxLength(MAX_MESSAGE_CONTENT_BYTES)),
    attachment_ids: Schema.Array(Schema.typeSchema(AttachmentId)).pipe(
      Schema.maxItems(MAX_ATTACHMENTS_PER_MESSAGE),
      ruleFilter("uniqueBy", [null, "attachment_ids must be unique"])
    )
  }).pipe(ruleFilter("messageCreateContent", [MAX_MESSAGE_CONTENT_BYTES])),
  "messageCreateCommand",
  []
)

export type SubscribeCommand = { readonly _tag: "subscribe" } & typeof SubscribePayload.Type
export type UnsubscribeCommand = { readonly _tag: "unsubscribe" } & typeof UnsubscribePayload.Type
export type MessageCreateCommand = { readonly _tag: "message_create" } & typeof MessageCreatePayload.Type
export type Command = SubscribeCommand | UnsubscribeCommand | MessageCreateCommand

export type CommandRejectionReason =
  | "event_too_large"
  | "invalid_envelope"
  | "invalid_subscribe_payload"
  | "invalid_unsubscribe_payload"
  | "invalid_message_create_payload"
  | "unknown_event"

export interface CommandRejection {
  readonly reason: CommandRejectionReason
  /** The envelope's `t` when the envelope itself was valid. */
  readonly eventType?: string
  readonly detail: string
}

/** The command table: name, payload schema and the rejection reason of a bad payload. */
export const COMMANDS = [
  {
    type: "subscribe",
    description:
      "Subscribe this connection to a channel of a guild. `since` (ours, opt-in): the last positions of the " +
      "channel and guild streams, to replay what was missed.",
    payload: SubscribePayload,
    rejection: "invalid_subscribe_payload",
    unexpressible: []
  },
  {
    type: "unsubscribe",
    description: "Remove this connection's subscription to a channel (ours, additive).",
    payload: UnsubscribePayload,
    rejection: "invalid_unsubscribe_payload",
    unexpressible: []
  },
  {
    type: "message_create",
    description: "Create a message in a channel through the gateway's MessageHandler.",
    payload: MessageCreatePayload,
    rejection: "invalid_message_create_payload",
    unexpressible: [MESSAGE_CREATE_CONTENT_BYTES_RULE]
  }
] as const

export type CommandType = (typeof COMMANDS)[number]["type"]

const strict = { onExcessProperty: "error", errors: "first" } as const
const decoders = {
  subscribe: Schema.decodeUnknownEither(SubscribePayload, strict),
  unsubscribe: Schema.decodeUnknownEither(UnsubscribePayload, strict),
  message_create: Schema.decodeUnknownEither(MessageCreatePayload, strict)
}

const rejection = (reason: CommandRejectionReason, detail: string, eventType?: string): CommandRejection =>
  eventType === undefined ? { reason, detail } : { reason, detail, eventType }

const payloadDetail = (error: ParseResult.ParseError) => formatSchemaIssues(schemaIssues(error, ["d"]))

/**
 * Decodes one text frame into a command. Never throws. Work is bounded by the frame: the size cap,
 * then the nesting bound (`MAX_JSON_DEPTH`, a 4001 `invalid_envelope`), both before parsing.
 */
export const decodeCommand = (
  text: string,
  maxBytes: number = MAX_EVENT_BYTES
): Either.Either<Command, CommandRejection> => {
  const envelope = parseEnvelope(text, { strict: true, maxBytes })
  if (Either.isLeft(envelope)) {
    const error = envelope.left
    return Either.left(
      error.reason === "oversized"
        ? rejection("event_too_large", `frame is ${error.bytes} bytes, over ${maxBytes}`)
        : rejection("invalid_envelope", error.reason === "invalid_json" ? "frame is not JSON" : error.detail)
    )
  }
  const { t, d } = envelope.right
  switch (t) {
    case "subscribe":
      return Either.match(decoders.subscribe(d), {
        onLeft: (error) => Either.left(rejection("invalid_subscribe_payload", payloadDetail(error), t)),
        onRight: (payload) => Either.right({ _tag: "subscribe" as const, ...payload })
      })
    case "unsubscribe":
      return Either.match(decoders.unsubscribe(d), {
        onLeft: (error) => Either.left(rejection("invalid_unsubscribe_payload", payloadDetail(error), t)),
        onRight: (payload) => Either.right({ _tag: "unsubscribe" as const, ...payload })
      })
    case "message_create":
      return Either.match(decoders.message_create(d), {
        onLeft: (error) => Either.left(rejection("invalid_message_create_payload", payloadDetail(error), t)),
        onRight: (payload) => Either.right({ _tag: "message_create" as const, ...payload })
      })
    default:
      return Either.left(rejection("unknown_event", `unknown command "${t}"`, t))
  }
}
