/** Channel-scoped message events: delivered to the subscribers of the channel. */
import { Schema } from "effect"
import { defineEvent } from "../EventDefinition.js"
import { ChannelId, GuildId, MessageId, UserId } from "../Ids.js"
import { ruleFilter } from "../Refinements.js"
import {
  atLeastOneOf,
  bothOrNeither,
  Emoji,
  FENCED_CODE_BLOCKS_RULE,
  MarkdownTokens,
  MESSAGE_CONTENT_BYTES_RULE,
  MessageContent,
  MessageSnapshot,
  NonNegativeCount,
  ReactionOperation,
  REACTORS_WITHIN_COUNT_RULE,
  UnixSeconds
} from "../Shapes.js"

export const MessageCreate = defineEvent({
  type: "message_create",
  version: 1,
  scope: "channel",
  description:
    "A message was created (REST or gateway `message_create`). `d` is the message snapshot, flat. " +
    "Missing `attachments` / `reactions` decode as empty lists.",
  payload: MessageSnapshot,
  unexpressible: [
    MESSAGE_CONTENT_BYTES_RULE,
    `markdown_tokens: ${FENCED_CODE_BLOCKS_RULE}`,
    `reactions[].${REACTORS_WITHIN_COUNT_RULE}`
  ]
})

export const MessageUpdate = defineEvent({
  type: "message_update",
  version: 1,
  scope: "channel",
  description: "A message was edited. The server always sends both `content` and `markdown_tokens`.",
  payload: Schema.Struct({
    guild_id: GuildId,
    channel_id: ChannelId,
    message_id: MessageId,
    updated_fields: Schema.Struct({
      content: Schema.optionalWith(MessageContent, { exact: true }),
      markdown_tokens: Schema.optionalWith(MarkdownTokens, { exact: true })
    }).pipe(atLeastOneOf("content", "markdown_tokens")),
    updated_at_unix: UnixSeconds
  }),
  unexpressible: [
    `updated_fields.${MESSAGE_CONTENT_BYTES_RULE}`,
    `updated_fields.markdown_tokens: ${FENCED_CODE_BLOCKS_RULE}`
  ]
})

export const MessageDelete = defineEvent({
  type: "message_delete",
  version: 1,
  scope: "channel",
  description: "A message was deleted.",
  payload: Schema.Struct({
    guild_id: GuildId,
    channel_id: ChannelId,
    message_id: MessageId,
    deleted_at_unix: UnixSeconds
  })
})

export const MessageReaction = defineEvent({
  type: "message_reaction",
  version: 2,
  scope: "channel",
  description:
    "A reaction was added or removed; `count` is the total after the operation. The server always " +
    "sends `operation` and `actor_user_id`; the count-only v1 form (neither) is still accepted.",
  payload: Schema.Struct({
    guild_id: GuildId,
    channel_id: ChannelId,
    message_id: MessageId,
    emoji: Emoji,
    count: NonNegativeCount,
    operation: Schema.optionalWith(ReactionOperation, { exact: true }),
    actor_user_id: Schema.optionalWith(UserId, { exact: true })
  }).pipe(
    ruleFilter(
      "togetherOrNeither",
      ["operation", "actor_user_id", "operation and actor_user_id are present together or not at all"],
      { jsonSchema: bothOrNeither("operation", "actor_user_id") }
    )
  )
})
