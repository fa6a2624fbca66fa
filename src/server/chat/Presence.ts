/**
 * Presence: which users are online in which guild (docs/PROTOCOL.md, Presence). A user is online in
 * guild G while at least one of their connections holds a subscription in G.
 *
 * The registry decides, atomically, when a node gains or loses a user in a guild (its subscribe /
 * unsubscribe / disconnect / revoke outcomes); this service turns those node-level transitions into
 * guild-level ones. It counts holdings instead of keeping a set so that the transitions commute: a
 * cleanup that runs after a newer subscribe of the same user (two fibers) still ends online, and
 * each announcement is made exactly once. A cluster-wide store replaces `layerMemory` with the same
 * contract (count per node that holds the user, `join` true on 0 -> 1, `leave` true on 1 -> 0).
 */
import { Context, Effect, Layer } from "effect"
import type { GuildId, UserId } from "../../protocol/Ids.js"

export interface PresenceSnapshot {
  /**
   * At most the requested limit. When the guild has more online users than that, the asking user
   * first (when online), so a truncated snapshot still holds it; otherwise every online user.
   */
  readonly userIds: ReadonlyArray<UserId>
  /** Users online in the guild (may exceed `userIds.length`). */
  readonly total: number
}

export interface PresenceShape {
  /** This node now holds `userId` in `guildId`. True when the user just came online in the guild. */
  readonly join: (guildId: GuildId, userId: UserId) => Effect.Effect<boolean>
  /** This node no longer holds `userId` in `guildId`. True when the user just went offline there. */
  readonly leave: (guildId: GuildId, userId: UserId) => Effect.Effect<boolean>
  /**
   * The guild's online users for `presence_sync`, at most `limit`; `first` (if any) leads when the
   * guild has more. A store may return the same `userIds` array while the guild's online set is
   * unchanged (one guild version), so that a caller can derive something once per version from it.
   */
  readonly snapshot: (
    guildId: GuildId,
    first: UserId | undefined,
    limit: number
  ) => Effect.Effect<PresenceSnapshot>
}

export class Presence extends Context.Tag("filament/Presence")<Presence, PresenceShape>() {}

/**
 * In-memory presence of one node: guild -> user -> holdings, insertion-ordered (who came first). An
 * untruncated snapshot is the guild's users in that order, one array per guild version: built on
 * the first snapshot after a change and returned as is until the next one.
 */
export const makeMemory = (): PresenceShape => {
  const guilds = new Map<GuildId, Map<UserId, number>>()
  const versions = new Map<GuildId, ReadonlyArray<UserId>>()
  return {
    join: (guildId, userId) =>
      Effect.sync(() => {
        let users = guilds.get(guildId)
        if (users === undefined) guilds.set(guildId, (users = new Map()))
        const held = users.get(userId) ?? 0
        users.set(userId, held + 1)
        if (held === 0) versions.delete(guildId)
        return held === 0
      }),
    leave: (guildId, userId) =>
      Effect.sync(() => {
        const users = guilds.get(guildId)
        const held = users?.get(userId)
        if (users === undefined || held === undefined) return false
        if (held > 1) {
          users.set(userId, held - 1)
          return false
        }
        users.delete(userId)
        versions.delete(guildId)
        if (users.size === 0) guilds.delete(guildId)
        return true
      }),
    snapshot: (guildId, first, limit) =>
      Effect.sync(() => {
        const users = guilds.get(guildId)
        if (users === undefined || limit <= 0) return { userIds: [], total: users?.size ?? 0 }
        if (users.size <= limit) {
          let everyone = versions.get(guildId)
          if (everyone === undefined) versions.set(guildId, (everyone = Array.from(users.keys())))
          return { userIds: everyone, total: users.size }
        }
        const userIds: Array<UserId> = first !== undefined && users.has(first) ? [first] : []
        for (const userId of users.keys()) {
          if (userIds.length >= limit) break
          if (userId !== first) userIds.push(userId)
        }
        return { userIds, total: users.size }
      })
  }
}

export const layerMemory: Layer.Layer<Presence> = Layer.sync(Presence, makeMemory)
