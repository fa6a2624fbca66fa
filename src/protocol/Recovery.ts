/**
 * The schemas of missed-event recovery (ours, opt-in): positions, the `since` field of `subscribe`,
 * the `pos` key an opted-in connection's recoverable events carry, and the entries of the `recovery`
 * event. Names, formats and reasons are the plain data of `Streams.ts`.
 */
import { Schema } from "effect"
import { ruleFilter } from "./Refinements.js"
import {
  ALREADY_LIVE,
  EPOCH_PATTERN,
  MAX_EPOCH_CHARS,
  NOT_RECOVERED_REASONS,
  STREAM_NAME_PATTERN
} from "./Streams.js"

export const Epoch = Schema.String.pipe(
  Schema.maxLength(MAX_EPOCH_CHARS),
  Schema.pattern(EPOCH_PATTERN, {
    message: () => `expected an epoch (1..${MAX_EPOCH_CHARS} of [0-9A-Za-z_-])`
  }),
  Schema.annotations({ title: "Epoch", description: "one history of a stream (opaque)" })
)

/** A count of a stream's events: a non-negative JSON safe integer. */
export const StreamOffset = Schema.Number.pipe(
  Schema.int(),
  Schema.between(0, Number.MAX_SAFE_INTEGER),
  Schema.annotations({ title: "StreamOffset", description: "a non-negative safe integer" })
)

export const StreamName = Schema.String.pipe(
  Schema.pattern(STREAM_NAME_PATTERN, {
    message: () => "expected a stream name (channel:<GUILD>:<CHANNEL>, guild:<GUILD>, user:<USER>)"
  }),
  Schema.annotations({ title: "StreamName", description: "channel:G:C, guild:G or user:U (canonical ULIDs)" })
)

/** A position the client hands back (`subscribe.since.channel` / `.guild`). */
export const StreamPosition = Schema.Struct({ epoch: Epoch, offset: StreamOffset })

/** `subscribe.since`: the client's last position of the channel stream and of the guild stream. */
export const SubscribeSince = Schema.Struct({
  channel: Schema.optionalWith(StreamPosition, { exact: true }),
  guild: Schema.optionalWith(StreamPosition, { exact: true })
})

/** The top-level `pos` of a recoverable event on an opted-in connection (after `d`). */
export const EventPosition = Schema.Struct({ stream: StreamName, epoch: Epoch, offset: StreamOffset })
export type EventPosition = typeof EventPosition.Type

export const RecoveryReason = Schema.Literal(...NOT_RECOVERED_REASONS, ALREADY_LIVE)
export type RecoveryReason = typeof RecoveryReason.Type

export const STREAM_VERDICT_RULE =
  "recovered: true carries replayed (and no reason but already_live); recovered: false carries a reason other than already_live and no replayed; without recovered neither"

/** One stream of a `recovery` event: its position now and, when a position was given, the verdict. */
export const StreamRecovery = Schema.Struct({
  stream: StreamName,
  epoch: Epoch,
  offset: StreamOffset,
  recovered: Schema.optionalWith(Schema.Boolean, { exact: true }),
  replayed: Schema.optionalWith(StreamOffset, { exact: true }),
  reason: Schema.optionalWith(RecoveryReason, { exact: true })
}).pipe(
  ruleFilter("streamVerdict", [], {
    jsonSchema: {
      $comment: STREAM_VERDICT_RULE,
      if: { properties: { recovered: { const: true } }, required: ["recovered"] },
      then: { properties: { reason: { const: ALREADY_LIVE } }, required: ["replayed"] },
      else: {
        if: { required: ["recovered"] },
        then: {
          properties: { reason: { not: { const: ALREADY_LIVE } } },
          required: ["reason"],
          not: { required: ["replayed"] }
        },
        else: { not: { anyOf: [{ required: ["replayed"] }, { required: ["reason"] }] } }
      }
    }
  })
)

/** At most the streams of one subscribe: its channel and its guild (or the user stream alone). */
export const MAX_RECOVERY_STREAMS = 2
