/** User-scoped friendship events: to the users concerned (no subscription needed). */
import { Schema } from "effect"
import { defineEvent } from "../EventDefinition.js"
import { FriendRequestId, UserId } from "../Ids.js"
import { UnixSeconds, Username } from "../Shapes.js"

const actor = { actor_user_id: Schema.optionalWith(UserId, { exact: true }) }

export const FriendRequestCreate = defineEvent({
  type: "friend_request_create",
  version: 1,
  scope: "user",
  description: "A friend request was sent; the same payload goes to sender and recipient.",
  payload: Schema.Struct({
    request_id: FriendRequestId,
    sender_user_id: UserId,
    sender_username: Username,
    recipient_user_id: UserId,
    recipient_username: Username,
    created_at_unix: UnixSeconds
  })
})

export const FriendRequestUpdate = defineEvent({
  type: "friend_request_update",
  version: 1,
  scope: "user",
  description:
    "A friend request was accepted, from each recipient's perspective (`user_id` is the recipient).",
  payload: Schema.Struct({
    request_id: FriendRequestId,
    state: Schema.Literal("accepted"),
    user_id: UserId,
    friend_user_id: UserId,
    friend_username: Username,
    friendship_created_at_unix: UnixSeconds,
    updated_at_unix: UnixSeconds,
    ...actor
  })
})

export const FriendRequestDelete = defineEvent({
  type: "friend_request_delete",
  version: 1,
  scope: "user",
  description: "A friend request was withdrawn or declined by either party.",
  payload: Schema.Struct({ request_id: FriendRequestId, deleted_at_unix: UnixSeconds, ...actor })
})

export const FriendRemove = defineEvent({
  type: "friend_remove",
  version: 1,
  scope: "user",
  description: "A friendship was removed, from each side's perspective (`user_id` is the recipient).",
  payload: Schema.Struct({
    user_id: UserId,
    friend_user_id: UserId,
    removed_at_unix: UnixSeconds,
    ...actor
  })
})
