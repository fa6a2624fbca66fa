/**
 * The publish API's request and response, shared by `POST /v1/publish` and the inspector's publish
 * console: a body is validated into a `PublishRequest` (a known, non-connection event type, a payload
 * that passes its schema strictly, `users` exactly when the event is user-scoped), published, and
 * answered 202 with the recipient count or with the refusal's status and concise JSON body.
 */
import { HttpServerResponse } from "@effect/platform"
import { Effect, Either, type ParseResult, Schema } from "effect"
import { formatSchemaIssues, schemaIssues } from "../../protocol/Envelope.js"
import { decodePayload, type EventDefinition } from "../../protocol/EventDefinition.js"
import { PresenceSync, PresenceUpdate } from "../../protocol/events/presence.js"
import { VoiceParticipantSync } from "../../protocol/events/voice.js"
import { ingress, UserId } from "../../protocol/Ids.js"
import { Manifest } from "../../protocol/Manifest.js"
import { PublishRejected } from "../Errors.js"
import type { GatewayShape } from "../core/Gateway.js"
import type { RoutedEvent, UserEvent } from "../core/Seams.js"

const PublishBody = Schema.Struct({
  t: Schema.String,
  d: Schema.Unknown,
  users: Schema.optional(Schema.Array(Schema.Unknown))
})
const decodeBody = Schema.decodeUnknownEither(PublishBody, { onExcessProperty: "error" })
const decodeUserId = Schema.decodeUnknownEither(ingress(UserId))

export type PublishRequest =
  | { readonly _tag: "Routed"; readonly event: RoutedEvent; readonly payload: unknown }
  | {
      readonly _tag: "Users"
      readonly event: UserEvent
      readonly payload: unknown
      readonly users: ReadonlyArray<UserId>
    }

/**
 * Presence and the subscribe snapshots are the gateway's own state: a published copy would contradict
 * what the gateway tells its clients.
 */
const GATEWAY_OWNED: ReadonlySet<string> = new Set([
  PresenceSync.type,
  PresenceUpdate.type,
  VoiceParticipantSync.type
])

const invalid = (detail: string) => Either.left(new PublishRejected({ reason: "invalid_event", detail }))

/** A schema rejection, concise: the first issues' paths (from the body's root) and messages. */
const invalidSchema = (error: ParseResult.ParseError, prefix: ReadonlyArray<PropertyKey>) => {
  const issues = schemaIssues(error, prefix)
  return Either.left(
    new PublishRejected({ reason: "invalid_event", detail: formatSchemaIssues(issues), issues })
  )
}

/**
 * Validates a publish body: a known, non-connection event type, a payload that passes its schema
 * strictly, and `users` exactly when the event is user-scoped.
 */
export const decodePublishRequest = (
  json: unknown,
  maxUsers: number
): Either.Either<PublishRequest, PublishRejected> => {
  const body = decodeBody(json)
  if (Either.isLeft(body)) return invalidSchema(body.left, [])
  const { d, t, users } = body.right
  const event: EventDefinition | undefined = Manifest.lookup(t)
  if (event === undefined) return invalid(`unknown event type "${t}"`)
  if (event.scope === "connection") return invalid(`"${t}" is connection-scoped and cannot be published`)
  if (GATEWAY_OWNED.has(t)) return invalid(`"${t}" is produced by the gateway itself and cannot be published`)
  const payload = decodePayload(event, d, { strict: true })
  if (Either.isLeft(payload)) return invalidSchema(payload.left, ["d"])
  if (event.scope !== "user") {
    if (users !== undefined)
      return invalid(`"users" is only for user-scoped events, "${t}" is ${event.scope}-scoped`)
    return Either.right({ _tag: "Routed", event: event as RoutedEvent, payload: payload.right })
  }
  if (users === undefined || users.length === 0) return invalid(`"${t}" is user-scoped: "users" is required`)
  if (users.length > maxUsers) return invalid(`"users" has ${users.length} entries, over ${maxUsers}`)
  const ids: Array<UserId> = []
  for (const user of users) {
    const id = decodeUserId(user)
    if (Either.isLeft(id)) return invalid(`"users" contains a value that is not a user ULID`)
    ids.push(id.right)
  }
  return Either.right({ _tag: "Users", event: event as UserEvent, payload: payload.right, users: ids })
}

export const jsonResponse = (status: number, body: unknown) => HttpServerResponse.unsafeJson(body, { status })

/** Publishes a validated request: 202 with the recipient count, or the refusal's status and body. */
export const publishResponse = (gateway: GatewayShape, target: PublishRequest) =>
  (target._tag === "Routed"
    ? gateway.publish(target.event, target.payload)
    : gateway.publishToUsers(target.event, target.payload, target.users)
  ).pipe(
    Effect.map((recipients) => jsonResponse(202, { recipients })),
    Effect.catchTags({
      OversizedOutbound: (error) =>
        Effect.succeed(
          jsonResponse(413, { error: "event_too_large", bytes: error.bytes, max_bytes: error.maxBytes })
        ),
      SerializeError: (error) =>
        Effect.succeed(jsonResponse(500, { error: "serialize_error", detail: error.detail })),
      PublishRefused: (error) =>
        Effect.succeed(jsonResponse(409, { error: error.reason, limit: error.limit, detail: error.detail }))
    })
  )
