/** User-scoped profile events: to the user and their observers (no subscription needed). */
import { Schema } from "effect"
import { defineEvent } from "../EventDefinition.js"
import { UserId } from "../Ids.js"
import { ruleFilter } from "../Refinements.js"
import {
  atLeastOneOf,
  FENCED_CODE_BLOCKS_RULE,
  MarkdownTokens,
  MAX_ABOUT_MARKDOWN_CHARS,
  NonNegativeCount,
  UnixSeconds,
  Username
} from "../Shapes.js"

// eslint-disable-next-line no-control-regex -- the client rejects NUL in about_markdown
const NO_NUL = /^[^\u0000]*$/

export const ProfileUpdate = defineEvent({
  type: "profile_update",
  version: 1,
  scope: "user",
  description: "A user's profile changed. `about_markdown_tokens` comes only together with `about_markdown`.",
  payload: Schema.Struct({
    user_id: UserId,
    updated_fields: Schema.Struct({
      username: Schema.optionalWith(Username, { exact: true }),
      about_markdown: Schema.optionalWith(
        Schema.String.pipe(Schema.maxLength(MAX_ABOUT_MARKDOWN_CHARS), Schema.pattern(NO_NUL)),
        { exact: true }
      ),
      about_markdown_tokens: Schema.optionalWith(MarkdownTokens, { exact: true })
    }).pipe(
      atLeastOneOf("username", "about_markdown", "about_markdown_tokens"),
      ruleFilter(
        "requires",
        ["about_markdown_tokens", "about_markdown", "about_markdown_tokens requires about_markdown"],
        { jsonSchema: { dependencies: { about_markdown_tokens: ["about_markdown"] } } }
      )
    ),
    updated_at_unix: UnixSeconds
  }),
  unexpressible: [`updated_fields.about_markdown_tokens: ${FENCED_CODE_BLOCKS_RULE}`]
})

export const ProfileAvatarUpdate = defineEvent({
  type: "profile_avatar_update",
  version: 1,
  scope: "user",
  description: "A user's avatar changed; `avatar_version` is a cache key for avatar URLs.",
  payload: Schema.Struct({ user_id: UserId, avatar_version: NonNegativeCount, updated_at_unix: UnixSeconds })
})

export const ProfileBannerUpdate = defineEvent({
  type: "profile_banner_update",
  version: 1,
  scope: "user",
  description: "A user's banner changed; `banner_version` is a cache key for banner URLs.",
  payload: Schema.Struct({ user_id: UserId, banner_version: NonNegativeCount, updated_at_unix: UnixSeconds })
})
