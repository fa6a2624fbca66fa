/**
 * The inspector's actions on one connection, named by the `:connectionId` path parameter: close it
 * (4014 `closed_by_admin`), or drop one of its subscriptions through its own unsubscribe command.
 */
import { HttpRouter } from "@effect/platform"
import { Effect, Either, ParseResult } from "effect"
import type { GatewayShape } from "../core/Gateway.js"
import { jsonResponse as json } from "../edge/Publish.js"
import { channelKey } from "../registry/Indexes.js"
import type { SubscriptionRegistryShape } from "../registry/Subscriptions.js"
import { decodeTarget, readJson, refused, SMALL_BODY_BYTES } from "./AdminRequests.js"
import * as Explore from "./Explore.js"

export const make = (gateway: GatewayShape, registry: SubscriptionRegistryShape) => {
  /** The connection named by the `:connectionId` path parameter, with the registry state it was found in. */
  const targetConnection = Effect.gen(function* () {
    const params = yield* HttpRouter.params
    const id = Number(params["connectionId"])
    const state = yield* registry.state
    const connection = Number.isSafeInteger(id) ? Explore.connectionById(state, id) : undefined
    return { connection, state }
  })

  const closeRoute = Effect.gen(function* () {
    const { connection } = yield* targetConnection
    if (connection === undefined || !connection.isOpen) return json(404, { error: "not_found" })
    connection.close("closed_by_admin")
    yield* Effect.logInfo("gateway.admin.connection_closed").pipe(
      Effect.annotateLogs({ user_id: connection.userId, connection_id: connection.id })
    )
    return json(200, { closed: connection.id, code: 4014, reason: "closed_by_admin" })
  })

  const dropRoute = Effect.gen(function* () {
    const body = yield* readJson(SMALL_BODY_BYTES)
    const target = decodeTarget(body)
    if (Either.isLeft(target))
      return json(400, {
        error: "invalid_body",
        detail: ParseResult.TreeFormatter.formatErrorSync(target.left)
      })
    const { channel_id, guild_id } = target.right
    const { connection, state } = yield* targetConnection
    const entry = connection === undefined ? undefined : Explore.subscriptionsOf(state, connection)
    if (connection === undefined || entry === undefined || !entry.has(channelKey(guild_id, channel_id)))
      return json(404, { error: "not_subscribed" })
    // The connection's own unsubscribe, in order with its commands: follow-ups run and it gets the ack.
    if (!gateway.runCommand(connection, { _tag: "unsubscribe", guild_id, channel_id }))
      return json(409, { error: "connection_busy" })
    yield* Effect.logInfo("gateway.admin.subscription_dropped").pipe(
      Effect.annotateLogs({ user_id: connection.userId, connection_id: connection.id, guild_id, channel_id })
    )
    return json(202, { connection: connection.id, guild_id, channel_id })
  }).pipe(Effect.catchAll(refused))

  return { closeRoute, dropRoute }
}
