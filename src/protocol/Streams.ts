/**
 * Streams and positions of missed-event recovery (ours, opt-in): the names, formats and verdict
 * reasons as plain data and functions. No dependency, so the server, the schemas (`Recovery.ts`) and
 * the client SDK (which bundles no Effect) share them.
 *
 * A stream is one publish target: `channel:<GUILD>:<CHANNEL>`, `guild:<GUILD>` or `user:<USER>`
 * (canonical uppercase ULIDs). A position in it is an epoch (one history of the stream; it changes
 * when the history is lost) and an offset (the stream's events counted from 1, gapless).
 */

const ULID = "[0-9A-HJKMNP-TV-Z]{26}"

/** A stream name with canonical ids. */
export const STREAM_NAME_PATTERN = new RegExp(`^(?:channel:${ULID}:${ULID}|guild:${ULID}|user:${ULID})$`)

/** Longest epoch a client or server may send: epochs are opaque tokens, not payload. */
export const MAX_EPOCH_CHARS = 64

/** An epoch: 1..64 of `[0-9A-Za-z_-]` (no `:`, so `user_since=<epoch>:<offset>` splits unambiguously). */
export const EPOCH_PATTERN = /^[0-9A-Za-z_-]{1,64}$/

/** The upgrade query parameters of recovery: `recovery=1` opts in, `user_since=<epoch>:<offset>`. */
export const RECOVERY_PARAM = "recovery"
export const RECOVERY_PARAM_VALUE = "1"
export const USER_SINCE_PARAM = "user_since"

/**
 * Why a position could not be recovered exactly (`recovered: false`): the client refetches.
 * `epoch_changed`: the history was lost; `position_trimmed`: events after it were trimmed (age or
 * count); `position_ahead`: the offset is beyond the stream's head; `too_many_events`: more missed
 * than one replay may carry; `history_unavailable`: the history store could not be read.
 */
export const NOT_RECOVERED_REASONS = [
  "epoch_changed",
  "position_trimmed",
  "position_ahead",
  "too_many_events",
  "history_unavailable"
] as const
export type NotRecoveredReason = (typeof NOT_RECOVERED_REASONS)[number]

/** A recovered guild stream that an earlier subscribe of the same connection already made live. */
export const ALREADY_LIVE = "already_live" as const

export type StreamScope = "channel" | "guild" | "user"

/** A stream name taken apart. */
export type StreamTarget =
  | { readonly scope: "channel"; readonly guild_id: string; readonly channel_id: string }
  | { readonly scope: "guild"; readonly guild_id: string }
  | { readonly scope: "user"; readonly user_id: string }

/** A position in a stream: `offset` counts its events from 1 (0: none yet), within `epoch` only. */
export interface StreamPosition {
  readonly epoch: string
  readonly offset: number
}

export const channelStream = (guildId: string, channelId: string): string => `channel:${guildId}:${channelId}`
export const guildStream = (guildId: string): string => `guild:${guildId}`
export const userStream = (userId: string): string => `user:${userId}`

/** The target of a stream name, or `undefined` when it is not one (ids must be canonical). */
export const parseStream = (name: string): StreamTarget | undefined => {
  if (!STREAM_NAME_PATTERN.test(name)) return undefined
  const parts = name.split(":")
  switch (parts[0]) {
    case "channel":
      return { scope: "channel", guild_id: parts[1]!, channel_id: parts[2]! }
    case "guild":
      return { scope: "guild", guild_id: parts[1]! }
    default:
      return { scope: "user", user_id: parts[1]! }
  }
}

const isOffset = (offset: number): boolean => Number.isSafeInteger(offset) && offset >= 0

/** A position as the `user_since` query value: `<epoch>:<offset>`. */
export const formatPosition = (position: StreamPosition): string => `${position.epoch}:${position.offset}`

/**
 * A `user_since` value parsed, or `undefined` when it is not `<epoch>:<offset>` with a valid epoch
 * and a non-negative safe integer offset in plain decimal (no sign, no leading zero, no exponent).
 */
export const parsePosition = (text: string): StreamPosition | undefined => {
  const colon = text.indexOf(":")
  if (colon < 0) return undefined
  const epoch = text.slice(0, colon)
  const digits = text.slice(colon + 1)
  if (!EPOCH_PATTERN.test(epoch) || !/^(?:0|[1-9][0-9]{0,15})$/.test(digits)) return undefined
  const offset = Number(digits)
  return isOffset(offset) ? { epoch, offset } : undefined
}
