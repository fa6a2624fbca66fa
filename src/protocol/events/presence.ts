/** Guild presence events (docs/PROTOCOL.md, Presence). */
import { Schema } from "effect"
import { defineEvent } from "../EventDefinition.js"
import { GuildId, UserId } from "../Ids.js"
import { dedupedArray, MAX_PRESENCE_SYNC_USER_IDS, PresenceStatus } from "../Shapes.js"

export const PresenceSync = defineEvent({
  type: "presence_sync",
  version: 1,
  scope: "guild",
  description:
    "Snapshot of the users online in a guild; replaces the client's online set for the guild. At most " +
    `${MAX_PRESENCE_SYNC_USER_IDS} ids; duplicates are removed keeping the first occurrence.`,
  delivery:
    "The connection that subscribed, right after an authorized subscribe (before `subscribed`); and, in " +
    "a presence storm, the whole guild at a tick's end instead of the held `presence_update`s.",
  payload: Schema.Struct({
    guild_id: GuildId,
    user_ids: dedupedArray(UserId, {
      maxItems: MAX_PRESENCE_SYNC_USER_IDS,
      keyField: null,
      keyName: "user id"
    })
  })
})

export const PresenceUpdate = defineEvent({
  type: "presence_update",
  version: 1,
  scope: "guild",
  description: "A user came online in the guild (first subscription) or went offline (last one gone).",
  payload: Schema.Struct({ guild_id: GuildId, user_id: UserId, status: PresenceStatus })
})
