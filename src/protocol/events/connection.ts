/** Connection-scoped events: sent to one connection only. */
import { Schema } from "effect"
import { defineEvent } from "../EventDefinition.js"
import { ChannelId, GuildId, UserId } from "../Ids.js"

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
