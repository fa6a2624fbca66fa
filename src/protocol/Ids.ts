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

const CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

/** A new canonical ULID: 48-bit millisecond time, 80 random bits (Web Crypto: Node and browsers). */
export const ulid = (timeMillis: number): string => {
  let time = ""
  let remaining = Math.max(0, Math.floor(timeMillis))
  for (let i = 0; i < 10; i++) {
    time = CROCKFORD[remaining % 32]! + time
    remaining = Math.floor(remaining / 32)
  }
  const random = crypto.getRandomValues(new Uint8Array(16))
  let tail = ""
  for (let i = 0; i < 16; i++) tail += CROCKFORD[random[i]! % 32]
  return time + tail
}

const brandedUlid = <const B extends string>(brand: B) =>
  Schema.String.pipe(
    Schema.pattern(ULID_PATTERN, {
      message: () => `expected a canonical uppercase ULID (${brand})`
    }),
    Schema.brand(brand),
    Schema.annotations({ title: brand, description: "canonical uppercase ULID" })
  )

export const Ulid = brandedUlid("Ulid")
export type Ulid = typeof Ulid.Type
export const UserId = brandedUlid("UserId")
export type UserId = typeof UserId.Type
export const GuildId = brandedUlid("GuildId")
export type GuildId = typeof GuildId.Type
export const ChannelId = brandedUlid("ChannelId")
export type ChannelId = typeof ChannelId.Type
export const MessageId = brandedUlid("MessageId")
export type MessageId = typeof MessageId.Type
export const RoleId = brandedUlid("RoleId")
export type RoleId = typeof RoleId.Type
export const AttachmentId = brandedUlid("AttachmentId")
export type AttachmentId = typeof AttachmentId.Type
export const FriendRequestId = brandedUlid("FriendRequestId")
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
