/**
 * Nested shapes shared by several events (message snapshots, reactions, markdown, roles, voice
 * participants) and the scalar rules they are built from.
 *
 * Bounds are the ones the original web client enforces. Where the client normalizes while decoding
 * (deduplication, defaults, lower-casing), the schema is a transformation whose encoded side is the
 * wire shape, so `encode` produces exactly what the server sends and `decode` what the client sees.
 * Lengths in characters are JavaScript string lengths (UTF-16 code units), as the client counts them.
 */
import { Schema } from "effect"
import { MAX_ATTACHMENTS_PER_MESSAGE, MAX_MESSAGE_CONTENT_BYTES } from "./Commands.js"
import { AttachmentId, ChannelId, GuildId, MessageId, RoleId, UserId } from "./Ids.js"
import { ruleFilter, ruleTransform } from "./Refinements.js"

export const MAX_PRESENCE_SYNC_USER_IDS = 1024
export const MAX_VOICE_PARTICIPANTS = 512
export const MAX_ROLE_REORDER_IDS = 64
export const MAX_MARKDOWN_TOKENS = 4096
export const MAX_MARKDOWN_INLINE_CHARS = 4096
export const MAX_FENCED_CODE_BLOCKS = 64
export const MAX_FENCED_CODE_CHARS = 16_384
export const MAX_CODE_LANGUAGE_CHARS = 32
export const MAX_REACTIONS_PER_MESSAGE = 64
export const MAX_REACTORS_PER_REACTION = 32
export const MAX_EMOJI_CHARS = 32
export const MAX_ATTACHMENT_FILENAME_CHARS = 128
export const MAX_MIME_TYPE_CHARS = 128
export const MAX_VOICE_IDENTITY_CHARS = 512
export const MAX_ROLE_NAME_CHARS = 32
export const MAX_CHANNEL_NAME_CHARS = 64
export const MAX_WORKSPACE_NAME_CHARS = 64
export const MAX_USERNAME_CHARS = 64
export const MAX_ABOUT_MARKDOWN_CHARS = 2048

// ---------------------------------------------------------------------------------------------------------
// Scalars
// ---------------------------------------------------------------------------------------------------------

/** An integer JSON number between `min` and `Number.MAX_SAFE_INTEGER` (the client's safe-integer rule). */
const safeIntegerFrom = (min: number) =>
  Schema.Number.pipe(Schema.int(), Schema.between(min, Number.MAX_SAFE_INTEGER))

/** Unix seconds; the client rejects 0 and negatives. */
export const UnixSeconds = safeIntegerFrom(1)
export const NonNegativeCount = safeIntegerFrom(0)
export const PositiveCount = safeIntegerFrom(1)

// eslint-disable-next-line no-control-regex -- rejecting control characters is the point
const NO_CONTROL_NOT_BLANK = /^[^\u0000-\u001f\u007f]*[^\s\u0000-\u001f\u007f][^\u0000-\u001f\u007f]*$/

/** A human-visible name: 1..max characters, no control characters, not only whitespace. */
export const displayName = (max: number) =>
  Schema.String.pipe(
    Schema.minLength(1),
    Schema.maxLength(max),
    Schema.pattern(NO_CONTROL_NOT_BLANK),
    Schema.annotations({ description: "no control characters, not blank" })
  )

export const Username = Schema.String.pipe(Schema.minLength(1), Schema.maxLength(MAX_USERNAME_CHARS))

/**
 * Message text: at most 2000 UTF-8 bytes (the server's rule). The JSON Schema can only state the
 * 2000-character bound, which the byte bound implies.
 */
export const MessageContent = Schema.String.pipe(
  Schema.maxLength(MAX_MESSAGE_CONTENT_BYTES),
  ruleFilter("maxUtf8Bytes", [MAX_MESSAGE_CONTENT_BYTES])
)
export const MESSAGE_CONTENT_BYTES_RULE = `content is at most ${MAX_MESSAGE_CONTENT_BYTES} UTF-8 bytes`

/** `#RRGGBB`; the server emits uppercase, the client accepts either case. */
export const ColorHex = Schema.String.pipe(Schema.pattern(/^#[0-9A-Fa-f]{6}$/))

// ---------------------------------------------------------------------------------------------------------
// Enumerations
// ---------------------------------------------------------------------------------------------------------

export const PERMISSIONS = [
  "manage_roles",
  "manage_member_roles",
  "manage_workspace_roles",
  "manage_channel_overrides",
  "delete_message",
  "ban_member",
  "view_audit_log",
  "manage_ip_bans",
  "create_message",
  "publish_video",
  "publish_screen_share",
  "subscribe_streams"
] as const
export const Permission = Schema.Literal(...PERMISSIONS).annotations({ identifier: "Permission" })
export type Permission = typeof Permission.Type

/** Legacy guild role. */
export const Role = Schema.Literal("owner", "moderator", "member")
export type Role = typeof Role.Type
export const ChannelKind = Schema.Literal("text", "voice")
export type ChannelKind = typeof ChannelKind.Type
export const GuildVisibility = Schema.Literal("private", "public")
export type GuildVisibility = typeof GuildVisibility.Type
export const VoiceStreamKind = Schema.Literal("microphone", "camera", "screen_share")
export type VoiceStreamKind = typeof VoiceStreamKind.Type
export const PresenceStatus = Schema.Literal("online", "offline")
export type PresenceStatus = typeof PresenceStatus.Type
export const MemberRemoveReason = Schema.Literal("kick", "ban", "leave")
export type MemberRemoveReason = typeof MemberRemoveReason.Type
export const ReactionOperation = Schema.Literal("add", "remove")
export type ReactionOperation = typeof ReactionOperation.Type
export const IpBanAction = Schema.Literal("upsert", "remove")
export type IpBanAction = typeof IpBanAction.Type
export const PermissionOverrideTargetKind = Schema.Literal("role", "member")
export type PermissionOverrideTargetKind = typeof PermissionOverrideTargetKind.Type

export const Permissions = Schema.Array(Permission)

/** Channel permission override lists (always both present). */
export const PermissionOverrideFields = Schema.Struct({ allow: Permissions, deny: Permissions })

// ---------------------------------------------------------------------------------------------------------
// Deduplication (the client keeps the first occurrence, in order)
// ---------------------------------------------------------------------------------------------------------

/**
 * A wire array decoded with duplicates (by the item's `keyField`, or the item itself when `null`)
 * removed, first occurrence kept. The decoded side is unique by construction; encoding is the identity.
 */
export const dedupedArray = <A, I>(
  item: Schema.Schema<A, I>,
  options: { readonly maxItems: number; readonly keyField: string | null; readonly keyName: string }
) =>
  ruleTransform(
    Schema.Array(item).pipe(Schema.maxItems(options.maxItems)),
    Schema.Array(Schema.typeSchema(item)).pipe(
      Schema.maxItems(options.maxItems),
      ruleFilter("uniqueBy", [options.keyField, `entries must be unique by ${options.keyName}`])
    ),
    "firstBy",
    [options.keyField]
  )

// ---------------------------------------------------------------------------------------------------------
// MarkdownToken
// ---------------------------------------------------------------------------------------------------------

const InlineText = Schema.String.pipe(Schema.maxLength(MAX_MARKDOWN_INLINE_CHARS))

/** Fenced code language: the client lower-cases it. */
export const CodeLanguage = ruleTransform(
  Schema.String.pipe(
    Schema.minLength(1),
    Schema.maxLength(MAX_CODE_LANGUAGE_CHARS),
    Schema.pattern(/^[A-Za-z0-9_.+-]+$/)
  ),
  Schema.String.pipe(
    Schema.minLength(1),
    Schema.maxLength(MAX_CODE_LANGUAGE_CHARS),
    Schema.pattern(/^[a-z0-9_.+-]+$/)
  ),
  "lowerCase",
  []
)

const bareToken = <const T extends string>(type: T) => Schema.Struct({ type: Schema.Literal(type) })

export const MarkdownToken = Schema.Union(
  bareToken("paragraph_start"),
  bareToken("paragraph_end"),
  Schema.Struct({
    type: Schema.Literal("heading_start"),
    level: Schema.Number.pipe(Schema.int(), Schema.between(1, 6))
  }),
  bareToken("heading_end"),
  bareToken("emphasis_start"),
  bareToken("emphasis_end"),
  bareToken("strong_start"),
  bareToken("strong_end"),
  Schema.Struct({ type: Schema.Literal("list_start"), ordered: Schema.Boolean }),
  bareToken("list_end"),
  bareToken("list_item_start"),
  bareToken("list_item_end"),
  Schema.Struct({ type: Schema.Literal("link_start"), href: InlineText }),
  bareToken("link_end"),
  Schema.Struct({ type: Schema.Literal("text"), text: InlineText }),
  Schema.Struct({ type: Schema.Literal("code"), code: InlineText }),
  Schema.Struct({
    type: Schema.Literal("fenced_code"),
    language: Schema.NullOr(CodeLanguage),
    code: Schema.String.pipe(Schema.maxLength(MAX_FENCED_CODE_CHARS))
  }),
  bareToken("soft_break"),
  bareToken("hard_break")
).annotations({ identifier: "MarkdownToken" })
export type MarkdownToken = typeof MarkdownToken.Type

export const FENCED_CODE_BLOCKS_RULE = `at most ${MAX_FENCED_CODE_BLOCKS} fenced_code tokens per token list`

export const MarkdownTokens = Schema.Array(MarkdownToken).pipe(
  Schema.maxItems(MAX_MARKDOWN_TOKENS),
  ruleFilter("maxFencedCode", [MAX_FENCED_CODE_BLOCKS, FENCED_CODE_BLOCKS_RULE])
)

// ---------------------------------------------------------------------------------------------------------
// Attachment, Reaction, MessageSnapshot
// ---------------------------------------------------------------------------------------------------------

/** 1..128 characters, no `/`, `\` or control characters, not only whitespace. */
export const AttachmentFilename = Schema.String.pipe(
  Schema.minLength(1),
  Schema.maxLength(MAX_ATTACHMENT_FILENAME_CHARS),
  // eslint-disable-next-line no-control-regex -- rejecting control characters is the point
  Schema.pattern(/^[^\u0000-\u001f\u007f/\\]*[^\s\u0000-\u001f\u007f/\\][^\u0000-\u001f\u007f/\\]*$/),
  Schema.annotations({ description: "no '/', '\\' or control characters, not blank" })
)

export const Attachment = Schema.Struct({
  attachment_id: AttachmentId,
  guild_id: GuildId,
  channel_id: ChannelId,
  owner_id: UserId,
  filename: AttachmentFilename,
  mime_type: Schema.String.pipe(Schema.minLength(1), Schema.maxLength(MAX_MIME_TYPE_CHARS)),
  size_bytes: PositiveCount,
  sha256_hex: Schema.String.pipe(Schema.pattern(/^[0-9A-Fa-f]{64}$/))
}).annotations({ identifier: "Attachment" })
export type Attachment = typeof Attachment.Type

export const Emoji = Schema.String.pipe(
  Schema.minLength(1),
  Schema.maxLength(MAX_EMOJI_CHARS),
  Schema.pattern(/^\S+$/)
)

export const REACTORS_WITHIN_COUNT_RULE = "reactor_user_ids has at most `count` entries"

export const Reaction = Schema.Struct({
  emoji: Emoji,
  count: NonNegativeCount,
  reacted_by_me: Schema.optionalWith(Schema.Boolean, { exact: true }),
  reactor_user_ids: Schema.optionalWith(
    Schema.Array(UserId).pipe(
      Schema.maxItems(MAX_REACTORS_PER_REACTION),
      ruleFilter("uniqueBy", [null, "reactor_user_ids must be unique"], {
        jsonSchema: { uniqueItems: true }
      })
    ),
    { exact: true }
  )
}).pipe(
  ruleFilter("reactionCounts", [REACTORS_WITHIN_COUNT_RULE], {
    identifier: "Reaction",
    jsonSchema: {
      $comment: "reacted_by_me: true requires count >= 1",
      if: { properties: { reacted_by_me: { type: "boolean", const: true } }, required: ["reacted_by_me"] },
      then: { properties: { count: { type: "integer", minimum: 1 } } }
    }
  })
)
export type Reaction = typeof Reaction.Type

export const EMPTY_CONTENT_RULE_JSON_SCHEMA = {
  $comment: "content may be empty only when attachments is non-empty",
  if: { properties: { content: { type: "string", maxLength: 0 } }, required: ["content"] },
  then: { properties: { attachments: { type: "array", minItems: 1 } }, required: ["attachments"] }
} as const

const messageSnapshotFields = {
  message_id: MessageId,
  guild_id: GuildId,
  channel_id: ChannelId,
  author_id: UserId,
  content: MessageContent,
  markdown_tokens: MarkdownTokens
}
const Attachments = Schema.Array(Attachment).pipe(Schema.maxItems(MAX_ATTACHMENTS_PER_MESSAGE))
const Reactions = Schema.Array(Reaction).pipe(Schema.maxItems(MAX_REACTIONS_PER_MESSAGE))

const MessageSnapshotWire = Schema.Struct({
  ...messageSnapshotFields,
  attachments: Schema.optionalWith(Attachments, { exact: true }),
  reactions: Schema.optionalWith(Reactions, { exact: true }),
  created_at_unix: UnixSeconds
}).pipe(ruleFilter("contentOrAttachments", [], { jsonSchema: EMPTY_CONTENT_RULE_JSON_SCHEMA }))

/**
 * A message as REST returns it (the flat `d` of `message_create`). The client treats missing
 * `attachments` / `reactions` as empty; the server always sends both.
 */
export const MessageSnapshot = ruleTransform(
  MessageSnapshotWire,
  Schema.Struct({
    message_id: Schema.typeSchema(MessageId),
    guild_id: Schema.typeSchema(GuildId),
    channel_id: Schema.typeSchema(ChannelId),
    author_id: Schema.typeSchema(UserId),
    content: Schema.typeSchema(MessageContent),
    markdown_tokens: Schema.typeSchema(MarkdownTokens),
    attachments: Schema.typeSchema(Attachments),
    reactions: Schema.typeSchema(Reactions),
    created_at_unix: UnixSeconds
  }).pipe(ruleFilter("contentOrAttachments", [])),
  "defaultEmptyLists",
  [["attachments", "reactions"]]
)
export type MessageSnapshot = typeof MessageSnapshot.Type

// ---------------------------------------------------------------------------------------------------------
// Voice, roles, channels
// ---------------------------------------------------------------------------------------------------------

/** LiveKit identity (`u.<user_id>.<guild_id>.<channel_id>` from our server; the client only bounds it). */
export const VoiceIdentity = Schema.String.pipe(
  Schema.minLength(1),
  Schema.maxLength(MAX_VOICE_IDENTITY_CHARS)
)

export const VoiceParticipant = Schema.Struct({
  user_id: UserId,
  identity: VoiceIdentity,
  joined_at_unix: UnixSeconds,
  updated_at_unix: UnixSeconds,
  is_muted: Schema.Boolean,
  is_deafened: Schema.Boolean,
  is_speaking: Schema.Boolean,
  is_video_enabled: Schema.Boolean,
  is_screen_share_enabled: Schema.Boolean
}).annotations({ identifier: "VoiceParticipant" })
export type VoiceParticipant = typeof VoiceParticipant.Type

/** Voice participants of a snapshot, at most 512, duplicates by `identity` removed. */
export const VoiceParticipants = dedupedArray(VoiceParticipant, {
  maxItems: MAX_VOICE_PARTICIPANTS,
  keyField: "identity",
  keyName: "identity"
})

const I32_MIN = -2_147_483_648
const I32_MAX = 2_147_483_647

/**
 * A workspace role as created. `position` is the server's i32: the web client rejects < 1, but the
 * server may emit it and the client follows the server (docs/CLIENT.md, Decoding), so any i32 is accepted.
 */
export const WorkspaceRole = Schema.Struct({
  role_id: RoleId,
  name: displayName(MAX_ROLE_NAME_CHARS),
  position: Schema.Number.pipe(Schema.int(), Schema.between(I32_MIN, I32_MAX)),
  is_system: Schema.Boolean,
  permissions: Permissions,
  color_hex: Schema.optionalWith(Schema.NullOr(ColorHex), { exact: true })
}).annotations({ identifier: "WorkspaceRole" })
export type WorkspaceRole = typeof WorkspaceRole.Type

export const ChannelSummary = Schema.Struct({
  channel_id: ChannelId,
  name: displayName(MAX_CHANNEL_NAME_CHARS),
  kind: ChannelKind
}).annotations({ identifier: "ChannelSummary" })
export type ChannelSummary = typeof ChannelSummary.Type

/** `{key: [other]}` for each key of a pair: either both present or neither. */
export const bothOrNeither = (a: string, b: string) => ({ dependencies: { [a]: [b], [b]: [a] } })

/** `updated_fields` objects: every key optional, at least one present (the client's rule). */
export const atLeastOneOf =
  <const K extends string>(...keys: ReadonlyArray<K>) =>
  <A extends { readonly [P in K]?: unknown }, I, R>(self: Schema.Schema<A, I, R>) =>
    ruleFilter("atLeastOneOf", [keys], {
      jsonSchema: { allOf: [{ anyOf: keys.map((key) => ({ required: [key] })) }] }
    })(self)
