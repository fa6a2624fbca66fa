/**
 * ULID-branded identifiers.
 *
 * Outbound and client decoding require the canonical uppercase Crockford form the original server
 * emits. Ingress (client commands, publish bodies) accepts any case, as the original's `ulid` parser
 * does, and yields the canonical uppercase form so subscription keys always match published events.
 */
import { Schema } from "effect"
import { ruleTransform } from "./Refinements.js"

/** Canonical ULID: 26 Crockford base32 characters, uppercase (no I, L, O, U). */
export const ULID_PATTERN = /^[0-9A-HJKMNP-TV-Z]{26}$/

/** Any-case ULID as the ingress parser accepts it. */
export const ULID_PATTERN_ANY_CASE = /^[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$/

const ulid = <const B extends string>(brand: B) =>
  Schema.String.pipe(
    Schema.pattern(ULID_PATTERN, {
      message: () => `expected a canonical uppercase ULID (${brand})`
    }),
    Schema.brand(brand),
    Schema.annotations({ title: brand, description: "canonical uppercase ULID" })
  )

export const Ulid = ulid("Ulid")
export type Ulid = typeof Ulid.Type
export const UserId = ulid("UserId")
export type UserId = typeof UserId.Type
export const GuildId = ulid("GuildId")
export type GuildId = typeof GuildId.Type
export const ChannelId = ulid("ChannelId")
export type ChannelId = typeof ChannelId.Type
export const MessageId = ulid("MessageId")
export type MessageId = typeof MessageId.Type
export const RoleId = ulid("RoleId")
export type RoleId = typeof RoleId.Type
export const AttachmentId = ulid("AttachmentId")
export type AttachmentId = typeof AttachmentId.Type
export const FriendRequestId = ulid("FriendRequestId")
export type FriendRequestId = typeof FriendRequestId.Type

/**
 * The ingress form of an id schema: accepts Crockford base32 in any case and decodes to the
 * canonical uppercase branded id. Encoding yields the canonical form.
 */
export const ingress = <A extends string, I extends string>(canonical: Schema.Schema<A, I>) =>
  ruleTransform(
    Schema.String.pipe(
      Schema.pattern(ULID_PATTERN_ANY_CASE, {
        message: () => "expected a ULID (26 Crockford base32 characters)"
      })
    ),
    canonical,
    "upperCase",
    []
  )
