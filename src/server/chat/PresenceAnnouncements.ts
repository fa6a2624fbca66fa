/**
 * Presence announcements of the chat hooks: a user's online and offline in a guild, within the
 * node's presence write budget (`GATEWAY_PRESENCE_WRITES_PER_SEC`; held changes flushed every
 * `GATEWAY_PRESENCE_TICK_SECS`); and the `presence_sync` frames, encoded once per guild version.
 */
import { Clock, Effect, Either } from "effect"
import type { PayloadOf } from "../../protocol/EventDefinition.js"
import { PresenceSync, PresenceUpdate } from "../../protocol/events/presence.js"
import type { GuildId, UserId } from "../../protocol/Ids.js"
import type { PresenceStatus } from "../../protocol/Shapes.js"
import type { GatewayConfigShape } from "../Config.js"
import * as Outbound from "../core/Outbound.js"
import type { BuiltEvent, Publisher } from "../core/Seams.js"
import type { OutboundError, PublishError } from "../Errors.js"
import type { PresenceShape } from "./Presence.js"

/** A follow-up event: its failure is already counted and logged by the publish path. */
export const announce = (published: Effect.Effect<unknown, PublishError>) =>
  Effect.catchAll(published, (error) =>
    Effect.logDebug(`gateway.follow_up.not_published: ${error.reason}`)
  ).pipe(Effect.asVoid)

export const makePresenceAnnouncements = (
  config: Pick<
    GatewayConfigShape,
    "maxEventBytes" | "presenceSyncMaxUsers" | "presenceTick" | "presenceWritesPerSec"
  >,
  presence: PresenceShape,
  /** This node's connections subscribed in the guild: what announcing to it costs, in writes. */
  subscribers: (guildId: GuildId) => Effect.Effect<number>
) => {
  /**
   * The `presence_sync` frame of a guild version: `Presence` returns the same array while a guild's
   * online set is unchanged, so every subscribe of that version (a reconnect storm: most of them) and
   * a flush of the same version share the bytes instead of encoding up to 1024 ids again. Keyed
   * weakly: a version's frame goes with its array.
   */
  const snapshotFrames = new WeakMap<ReadonlyArray<UserId>, Outbound.Frame>()
  const snapshotFrame = (
    guildId: GuildId,
    userIds: ReadonlyArray<UserId>
  ): Either.Either<Outbound.Frame, OutboundError> => {
    const cached = snapshotFrames.get(userIds)
    if (cached !== undefined) return Either.right(cached)
    const encoded = Outbound.encode(
      PresenceSync,
      { guild_id: guildId, user_ids: userIds },
      config.maxEventBytes
    )
    if (Either.isRight(encoded)) snapshotFrames.set(userIds, encoded.right)
    return encoded
  }

  /**
   * The storm bound: a token bucket of socket writes, refilled with time, at most one second's worth
   * banked. A change goes out at once when no guild waits and the budget pays one write per
   * subscriber of its guild; otherwise it is held. Each tick, the guilds holding changes flush oldest
   * first, each once, while the budget pays; the first it cannot pay waits (and everyone behind it),
   * so a guild larger than the whole budget goes when the budget is full, overdrawing it.
   */
  const cap = config.presenceWritesPerSec
  let budget = cap
  let refilledAt: number | undefined
  const refill = (now: number) => {
    if (refilledAt !== undefined) budget = Math.min(cap, budget + ((now - refilledAt) * cap) / 1000)
    refilledAt = now
  }
  /**
   * Open while a guild holds changes: the tick loop runs only then, so an idle gateway allocates
   * nothing for presence (a loop every 50 ms kept V8's young generation at its full 32 MB).
   */
  const pending = Effect.unsafeMakeLatch(false)
  /**
   * Held changes per guild, oldest guild first. A guild being flushed stays in (at its place) with
   * what arrived meanwhile, so nothing overtakes its flush; after it, that goes to the back.
   */
  const held = new Map<GuildId, Map<UserId, PresenceStatus>>()
  let flushing: GuildId | undefined

  const hold = (guildId: GuildId, userId: UserId, status: PresenceStatus) => {
    const changes = held.get(guildId)
    if (changes === undefined) {
      held.set(guildId, new Map([[userId, status]]))
      pending.unsafeOpen()
    }
    // A user's changes in a guild alternate: the opposite of a held change undoes it.
    else if (changes.has(userId) && changes.get(userId) !== status) {
      changes.delete(userId)
      if (changes.size === 0 && guildId !== flushing) held.delete(guildId)
    } else changes.set(userId, status)
  }

  const announcePresence = (publisher: Publisher, guildId: GuildId, userId: UserId, status: PresenceStatus) =>
    Effect.zipWith(subscribers(guildId), Clock.currentTimeMillis, (writes, now) => {
      refill(now)
      if (held.size === 0 && writes <= budget) {
        budget -= writes
        return announce(publisher.publish(PresenceUpdate, { guild_id: guildId, user_id: userId, status }))
      }
      hold(guildId, userId, status)
      return Effect.void
    }).pipe(Effect.flatten)

  /**
   * One flush of a guild's held changes, one write per subscriber: the updates in the order they
   * happened, concatenated, or one guild-wide `presence_sync`, whichever is fewer bytes. Never a
   * truncated snapshot: it would drop users from every subscriber's set.
   */
  const flush = (publisher: Publisher, guildId: GuildId, changes: ReadonlyMap<UserId, PresenceStatus>) =>
    Effect.gen(function* () {
      const updates: Array<BuiltEvent<PayloadOf<typeof PresenceUpdate>>> = []
      let updateBytes = 0
      for (const [userId, status] of changes) {
        const payload = { guild_id: guildId, user_id: userId, status }
        const encoded = Outbound.encode(PresenceUpdate, payload, config.maxEventBytes)
        // An unbuildable update takes the publish path, which counts and logs the failure.
        if (Either.isLeft(encoded)) yield* announce(publisher.publish(PresenceUpdate, payload))
        else {
          updates.push({ payload, frame: encoded.right })
          updateBytes += encoded.right.wire.length
        }
      }
      if (updates.length === 0) return
      const snapshot = yield* presence.snapshot(guildId, undefined, config.presenceSyncMaxUsers)
      if (snapshot.total <= snapshot.userIds.length) {
        const frame = snapshotFrame(guildId, snapshot.userIds)
        if (Either.isRight(frame) && frame.right.wire.length < updateBytes) {
          const payload = { guild_id: guildId, user_ids: snapshot.userIds }
          return yield* announce(publisher.publishBuilt(PresenceSync, [{ payload, frame: frame.right }]))
        }
      }
      yield* announce(publisher.publishBuilt(PresenceUpdate, updates))
    })

  /** Refills the budget and flushes the held guilds it pays for, oldest first. */
  const endTick = (publisher: Publisher) =>
    Effect.gen(function* () {
      refill(yield* Clock.currentTimeMillis)
      for (const guildId of Array.from(held.keys())) {
        const changes = held.get(guildId)
        if (changes === undefined) continue
        const writes = yield* subscribers(guildId)
        if (writes > budget && budget < cap) return
        budget -= writes
        held.set(guildId, new Map())
        flushing = guildId
        yield* flush(publisher, guildId, changes).pipe(
          Effect.ensuring(Effect.sync(() => (flushing = undefined)))
        )
        const arrived = held.get(guildId)!
        held.delete(guildId)
        if (arrived.size > 0) held.set(guildId, arrived)
      }
    })

  const announceOffline = (publisher: Publisher, guildId: GuildId, userId: UserId) =>
    Effect.flatMap(presence.leave(guildId, userId), (wentOffline) =>
      wentOffline ? announcePresence(publisher, guildId, userId, "offline") : Effect.void
    )

  /** The tick loop (forked once): a tick after a guild starts holding, then every tick while any does. */
  const flushHeld = (publisher: Publisher) =>
    Effect.forever(
      pending.await.pipe(
        Effect.zipRight(Effect.sleep(config.presenceTick)),
        Effect.zipRight(endTick(publisher)),
        Effect.zipRight(Effect.sync(() => held.size === 0 && pending.unsafeClose()))
      )
    )

  return { announceOffline, announcePresence, flushHeld, snapshotFrame }
}
