/**
 * What an inspector request may carry, checked before any route acts on it: a JSON body within its
 * cap (else 415 / 411 / 413 / 400 with a JSON error), the ids of a query or a body, a tail viewer's
 * filter, and each field error of a publish console payload.
 */
import { HttpIncomingMessage, HttpServerRequest } from "@effect/platform"
import { Effect, Either, Option, ParseResult, Schema } from "effect"
import type { EventDefinition } from "../../protocol/EventDefinition.js"
import { ingress, ChannelId, GuildId, UserId } from "../../protocol/Ids.js"
import { Manifest } from "../../protocol/Manifest.js"
import { jsonResponse as json } from "../edge/Publish.js"
import type * as Tail from "./Tail.js"

export const decodeUser = Schema.decodeUnknownEither(ingress(UserId))
const decodeGuild = Schema.decodeUnknownEither(ingress(GuildId))
const decodeChannel = Schema.decodeUnknownEither(ingress(ChannelId))
export const decodeLogin = Schema.decodeUnknownEither(Schema.Struct({ key: Schema.String }))
export const decodeTarget = Schema.decodeUnknownEither(
  Schema.Struct({ guild_id: ingress(GuildId), channel_id: ingress(ChannelId) })
)

/** A refused body: the HTTP status and the JSON answer. */
export class BodyRefused {
  constructor(
    readonly status: number,
    readonly body: { readonly error: string; readonly detail?: string }
  ) {}
}

/** Reads a JSON body of at most `maxBytes` (declared up front), refusing anything else. */
export const readJson = (maxBytes: number) =>
  Effect.gen(function* () {
    const request = yield* HttpServerRequest.HttpServerRequest
    const mediaType = (request.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase()
    // A cross-site form cannot send application/json without a CORS preflight: no CSRF by form post.
    if (mediaType !== "application/json")
      return yield* Effect.fail(new BodyRefused(415, { error: "unsupported_media_type" }))
    const length = request.headers["content-length"]
    if (length === undefined) return yield* Effect.fail(new BodyRefused(411, { error: "length_required" }))
    if (Number(length) > maxBytes)
      return yield* Effect.fail(new BodyRefused(413, { error: "payload_too_large" }))
    const text = yield* Effect.orElseFail(
      HttpIncomingMessage.withMaxBodySize(request.text, Option.some(maxBytes)),
      () => new BodyRefused(400, { error: "invalid_body", detail: "the request body could not be read" })
    )
    return yield* Effect.try({
      try: () => JSON.parse(text) as unknown,
      catch: () => new BodyRefused(400, { error: "invalid_body", detail: "body is not JSON" })
    })
  })

export const refused = (error: BodyRefused) => Effect.succeed(json(error.status, error.body))

/** Every field error of a payload (the publish console shows each next to its field). */
export const fieldErrors = (
  body: unknown
): ReadonlyArray<{ readonly path: string; readonly message: string }> => {
  if (typeof body !== "object" || body === null) return []
  const { d, t } = body as { readonly t?: unknown; readonly d?: unknown }
  const event: EventDefinition | undefined = typeof t === "string" ? Manifest.lookup(t) : undefined
  if (event === undefined) return []
  const decoded = Schema.decodeUnknownEither(event.payload as Schema.Schema<unknown, unknown>, {
    errors: "all",
    onExcessProperty: "error"
  })(d)
  if (Either.isRight(decoded)) return []
  return ParseResult.ArrayFormatter.formatErrorSync(decoded.left).map((issue) => ({
    path: issue.path.map(String).join("."),
    message: issue.message
  }))
}

/** `?guild=` (with an optional `&channel=`) or `?user=`: what a tail viewer watches. */
export const tailFilter = (query: URLSearchParams): Tail.TailFilter | undefined => {
  const user = query.get("user")
  const guild = query.get("guild")
  const channel = query.get("channel")
  if (user !== null && guild === null && channel === null) {
    const userId = decodeUser(user)
    return Either.isRight(userId) ? { kind: "user", userId: userId.right } : undefined
  }
  if (guild === null || user !== null) return undefined
  const guildId = decodeGuild(guild)
  if (Either.isLeft(guildId)) return undefined
  if (channel === null) return { kind: "guild", guildId: guildId.right }
  const channelId = decodeChannel(channel)
  return Either.isRight(channelId)
    ? { kind: "guild", guildId: guildId.right, channelId: channelId.right }
    : undefined
}
