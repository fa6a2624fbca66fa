/** Connection-scoped events: sent to one connection only. */
import { Schema } from "effect"
import { defineEvent } from "../EventDefinition.js"
import { ChannelId, GuildId, UserId } from "../Ids.js"
import { MAX_RECOVERY_STREAMS, StreamRecovery } from "../Recovery.js"
import { ruleFilter } from "../Refinements.js"
import { bothOrNeither } from "../Shapes.js"

export const Ready = defineEvent({
  type: "ready",
  version: 1,
  scope: "connection",
  description: "First text frame on every connection: the authenticated user.",
  payload: Schema.Struct({ user_id: UserId })
})

export const Subscribed = defineEvent({
  type: "subscribed",
  version: 1,
  scope: "connection",
  description: "Acknowledges an authorized subscribe, echoing its canonical ids.",
  delivery: "The connection that subscribed; a forbidden subscribe gets no ack.",
  payload: Schema.Struct({ guild_id: GuildId, channel_id: ChannelId })
})

export const Unsubscribed = defineEvent({
  type: "unsubscribed",
  version: 1,
  scope: "connection",
  origin: "extension",
  description: "Acknowledges an unsubscribe (ours, additive: original clients ignore it).",
  delivery: "The connection that unsubscribed.",
  payload: Schema.Struct({ guild_id: GuildId, channel_id: ChannelId })
})

export const Recovery = defineEvent({
  type: "recovery",
  version: 1,
  scope: "connection",
  origin: "extension",
  description:
    "Missed-event recovery (ours, opt-in with `recovery=1`): the position of each stream and, where the " +
    "client gave one, whether every missed event was replayed (`recovered`) or why not (`reason`: refetch).",
  delivery:
    "An opted-in connection only: once after `ready` for its user stream (no ids), and once per authorized " +
    "`subscribe` (its ids; channel and guild streams) after the replayed events, before live ones.",
  payload: Schema.Struct({
    guild_id: Schema.optionalWith(GuildId, { exact: true }),
    channel_id: Schema.optionalWith(ChannelId, { exact: true }),
    streams: Schema.Array(StreamRecovery).pipe(Schema.maxItems(MAX_RECOVERY_STREAMS))
  }).pipe(
    ruleFilter(
      "togetherOrNeither",
      ["guild_id", "channel_id", "guild_id and channel_id are present together or not at all"],
      {
        jsonSchema: bothOrNeither("guild_id", "channel_id")
      }
    )
  )
})
