/**
 * Presence announcements of the chat hooks: a user's online and offline in a guild, within the storm
 * bound (`GATEWAY_PRESENCE_BURST` per `GATEWAY_PRESENCE_TICK_SECS`).
 */
import { Effect } from "effect"
import { PresenceSync, PresenceUpdate } from "../../protocol/events/presence.js"
import type { GuildId, UserId } from "../../protocol/Ids.js"
import type { PresenceStatus } from "../../protocol/Shapes.js"
import type { GatewayConfigShape } from "../Config.js"
import type { Publisher } from "../core/Seams.js"
import type { PublishError } from "../Errors.js"
import type { PresenceShape } from "./Presence.js"

/** A follow-up event: its failure is already counted and logged by the publish path. */
export const announce = (published: Effect.Effect<unknown, PublishError>) =>
  Effect.catchAll(published, (error) =>
    Effect.logDebug(`gateway.follow_up.not_published: ${error.reason}`)
  ).pipe(Effect.asVoid)

export const makePresenceAnnouncements = (
  config: Pick<GatewayConfigShape, "presenceBurst" | "presenceSyncMaxUsers">,
  presence: PresenceShape
) => {
  /**
   * The storm bound: a guild announces its first `presenceBurst` presence changes of a tick at once;
   * later ones are held until the tick ends (a held change and its opposite cancel), and then more
   * than `presenceBurst` held become one guild-wide `presence_sync`, encoded once, instead of one
   * update each. A guild whose tick held something stays held the next tick too, so its changes keep
   * their order; it announces at once again after a tick without changes.
   */
  interface GuildTick {
    readonly announced: number
    readonly held: Map<UserId, PresenceStatus>
  }
  const ticks = new Map<GuildId, GuildTick>()

  const announcePresence = (publisher: Publisher, guildId: GuildId, userId: UserId, status: PresenceStatus) =>
    Effect.suspend(() => {
      const tick = ticks.get(guildId) ?? { announced: 0, held: new Map<UserId, PresenceStatus>() }
      if (tick.held.size === 0 && tick.announced < config.presenceBurst) {
        ticks.set(guildId, { announced: tick.announced + 1, held: tick.held })
        return announce(publisher.publish(PresenceUpdate, { guild_id: guildId, user_id: userId, status }))
      }
      ticks.set(guildId, tick)
      // A user's changes in a guild alternate: the opposite of a held change undoes it.
      if (tick.held.has(userId) && tick.held.get(userId) !== status) tick.held.delete(userId)
      else tick.held.set(userId, status)
      return Effect.void
    })

  const announceHeld = (publisher: Publisher, guildId: GuildId, held: ReadonlyMap<UserId, PresenceStatus>) =>
    Effect.gen(function* () {
      if (held.size > config.presenceBurst) {
        const snapshot = yield* presence.snapshot(guildId, undefined, config.presenceSyncMaxUsers)
        // A truncated snapshot would drop users from every subscriber's set: the updates go instead.
        if (snapshot.total <= snapshot.userIds.length) {
          return yield* announce(
            publisher.publish(PresenceSync, { guild_id: guildId, user_ids: snapshot.userIds })
          )
        }
      }
      for (const [userId, status] of held) {
        yield* announce(publisher.publish(PresenceUpdate, { guild_id: guildId, user_id: userId, status }))
      }
    })

  /** Ends the tick: a guild without held changes announces at once again; held ones go out now. */
  const endTick = (publisher: Publisher) =>
    Effect.suspend(() =>
      Effect.forEach(
        Array.from(ticks),
        ([guildId, tick]) => {
          if (tick.held.size === 0) {
            ticks.delete(guildId)
            return Effect.void
          }
          // Changes made while these go out are held for the next tick, after them.
          ticks.set(guildId, { announced: config.presenceBurst, held: new Map() })
          return announceHeld(publisher, guildId, tick.held)
        },
        { discard: true }
      )
    )

  const announceOffline = (publisher: Publisher, guildId: GuildId, userId: UserId) =>
    Effect.flatMap(presence.leave(guildId, userId), (wentOffline) =>
      wentOffline ? announcePresence(publisher, guildId, userId, "offline") : Effect.void
    )

  return { announceOffline, announcePresence, endTick }
}
