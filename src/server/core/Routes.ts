/**
 * A route's targets on this node: the route a channel / guild event names, the connections it
 * reaches (a registry lookup) and the history stream it is recorded in.
 */
import { Effect } from "effect"
import type { EventDefinition } from "../../protocol/EventDefinition.js"
import type { ChannelId, GuildId } from "../../protocol/Ids.js"
import { channelStream, guildStream, userStream } from "../../protocol/Streams.js"
import type { StreamName } from "../recovery/History.js"
import type { SubscriptionRegistryShape } from "../registry/Subscriptions.js"
import type { Route } from "./Bus.js"
import type { Connection } from "./Connection.js"

/** Every channel / guild event carries its routing ids (the manifest's scope contract). */
export const routeOf = (event: EventDefinition, payload: unknown): Route => {
  const target = payload as { readonly guild_id: GuildId; readonly channel_id: ChannelId }
  return event.scope === "channel"
    ? { scope: "channel", guildId: target.guild_id, channelId: target.channel_id }
    : { scope: "guild", guildId: target.guild_id }
}

/** Who receives a route's frame on this node: an index lookup (a user route: one per user). */
export const recipientsOf = (
  registry: SubscriptionRegistryShape,
  route: Route
): Effect.Effect<ReadonlyArray<Connection>> => {
  if (route.scope === "channel") return registry.channelMembers(route.guildId, route.channelId)
  if (route.scope === "guild") return registry.guildMembers(route.guildId)
  if (route.userIds.length === 1) return registry.userMembers(route.userIds[0]!)
  // A connection belongs to one user and the ids are distinct: the lists are disjoint, one loop serves all.
  return Effect.map(
    Effect.forEach(route.userIds, (userId) => registry.userMembers(userId)),
    (lists) => lists.flat()
  )
}

/** The one stream of a channel or guild route. */
export const streamOf = (route: Exclude<Route, { readonly scope: "user" }>): StreamName =>
  (route.scope === "channel"
    ? channelStream(route.guildId, route.channelId)
    : guildStream(route.guildId)) as StreamName

/** The one stream of a route that names one stream (a user route: its first user). */
export const streamOfRoute = (route: Route): StreamName =>
  route.scope === "user" ? (userStream(route.userIds[0]!) as StreamName) : streamOf(route)
