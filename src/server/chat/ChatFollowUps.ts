/**
 * chat/: the chat behaviours the core knows only through its seams (`core/Seams.ts`) — presence,
 * the voice projection, these hooks, the default messages and access policy — kept in memory; the
 * Redis-backed presence and voice are in cluster/.
 *
 * The default `GatewayHooks`: what makes the gateway a chat gateway rather than a pub/sub
 * pipe. On the core's seams it adds
 *
 * - presence (reference §5.5, §5.7): `presence_sync` to the subscriber, `presence_update` online
 *   once when a user comes online in a guild and offline once when their last subscription there
 *   goes (unsubscribe, disconnect, revocation);
 * - voice snapshots (§5.8): the `VoiceParticipants` projection follows the published voice events,
 *   refuses joins over its caps, sends `voice_participant_sync` after every authorized subscribe, and
 *   announces expired participants (lazily on subscribe and join, and from one periodic sweep);
 * - revocation (ours): after `workspace_member_remove` / `workspace_member_ban` for user U in guild G
 *   is delivered, U's connections lose every subscription in G, U leaves G's voice channels and goes
 *   offline there;
 * - the migration lifecycle (§8.3, §8.4): with `GATEWAY_DUAL_EMIT_LEGACY_OVERRIDE`, every channel
 *   override event is preceded by the deprecated `workspace_channel_override_update`; the
 *   compatibility counters count the legacy and the explicit emits.
 *
 * Follow-up events are announcements: one that cannot be built is counted and logged by the publish
 * path and never fails the command or publish that caused it.
 */
import { Clock, Effect, Either, Layer, Schedule } from "effect"
import type { EventDefinition, PayloadOf } from "../../protocol/EventDefinition.js"
import { PresenceSync, PresenceUpdate } from "../../protocol/events/presence.js"
import {
  VoiceParticipantJoin,
  VoiceParticipantLeave,
  VoiceParticipantSync,
  VoiceStreamUnpublish
} from "../../protocol/events/voice.js"
import {
  WorkspaceChannelOverrideUpdate,
  WorkspaceChannelPermissionOverrideUpdate,
  WorkspaceChannelRoleOverrideUpdate,
  WorkspaceMemberBan,
  WorkspaceMemberRemove
} from "../../protocol/events/workspace.js"
import type { GuildId, UserId } from "../../protocol/Ids.js"
import type { PresenceStatus } from "../../protocol/Shapes.js"
import { GatewayConfig } from "../Config.js"
import type { Connection } from "../core/Connection.js"
import * as Outbound from "../core/Outbound.js"
import type { PublishError } from "../Errors.js"
import { GatewayHooks, type Publisher, type GatewayHooksShape } from "../core/Seams.js"
import { GatewayMetrics, type CompatibilityPath, type RevocationEvent } from "../Metrics.js"
import { Presence } from "./Presence.js"
import { SubscriptionRegistry } from "../registry/Subscriptions.js"
import { VoiceParticipants, voiceChange, type VoiceChange, type VoiceRemoval } from "./Voice.js"

/** The explicit override events and the compatibility path each is counted under (reference §8.4). */
const MIGRATION_PATHS: ReadonlyMap<string, CompatibilityPath> = new Map([
  [WorkspaceChannelRoleOverrideUpdate.type, "channel_role_override_migration"],
  [WorkspaceChannelPermissionOverrideUpdate.type, "channel_permission_override_migration"]
])

const REVOKING_EVENTS: ReadonlySet<string> = new Set([WorkspaceMemberRemove.type, WorkspaceMemberBan.type])

/** Both revoking events carry the member and the guild. */
type Membership = PayloadOf<typeof WorkspaceMemberRemove> | PayloadOf<typeof WorkspaceMemberBan>

const unixSeconds = Effect.map(Clock.currentTimeMillis, (millis) => Math.max(1, Math.floor(millis / 1000)))

export const make = Effect.gen(function* () {
  const config = yield* GatewayConfig
  const metrics = yield* GatewayMetrics
  const registry = yield* SubscriptionRegistry
  const presence = yield* Presence
  const voice = yield* VoiceParticipants

  /** A follow-up event: its failure is already counted and logged by the publish path. */
  const announce = (published: Effect.Effect<unknown, PublishError>) =>
    Effect.catchAll(published, (error) =>
      Effect.logDebug(`gateway.follow_up.not_published: ${error.reason}`)
    ).pipe(Effect.asVoid)

  /** Reference §4.5: one unpublish per published stream, then the leave, all with one timestamp. */
  const announceRemovals = (publisher: Publisher, removals: ReadonlyArray<VoiceRemoval>) =>
    Effect.gen(function* () {
      if (removals.length === 0) return
      const at = yield* unixSeconds
      for (const removal of removals) {
        const who = {
          guild_id: removal.guildId,
          channel_id: removal.channelId,
          user_id: removal.userId,
          identity: removal.identity
        }
        for (const stream of removal.streams) {
          yield* announce(
            publisher.publish(VoiceStreamUnpublish, { ...who, stream, unpublished_at_unix: at })
          )
        }
        yield* announce(publisher.publish(VoiceParticipantLeave, { ...who, left_at_unix: at }))
      }
    })

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

  const sendSnapshot = <E extends EventDefinition>(
    publisher: Publisher,
    connection: Connection,
    event: E,
    payload: PayloadOf<E>
  ) =>
    publisher.send(connection, event, payload).pipe(
      Effect.catchAll(() => Effect.succeed("closed" as const)),
      Effect.map((result) => result === "sent" || result === "queued")
    )

  /**
   * The subscribe snapshot's frame, one per guild version: `Presence` returns the same array while a
   * guild's online set is unchanged, so every subscribe of that version (a reconnect storm: most of
   * them) is handed the same bytes instead of encoding up to 1024 ids again. Keyed weakly: a
   * version's frame goes with its array.
   */
  const snapshotFrames = new WeakMap<ReadonlyArray<UserId>, Outbound.Frame>()

  const sendPresenceSync = (
    publisher: Publisher,
    connection: Connection,
    guildId: GuildId,
    userIds: ReadonlyArray<UserId>
  ) =>
    Effect.suspend(() => {
      let frame = snapshotFrames.get(userIds)
      if (frame === undefined) {
        const payload = { guild_id: guildId, user_ids: userIds }
        const encoded = Outbound.encode(PresenceSync, payload, config.maxEventBytes)
        // An unbuildable snapshot takes the publisher's path, which counts and logs the failure.
        if (Either.isLeft(encoded)) return sendSnapshot(publisher, connection, PresenceSync, payload)
        snapshotFrames.set(userIds, (frame = encoded.right))
      }
      publisher.sendFrame(connection, frame)
      return Effect.void
    })

  const revoke = (publisher: Publisher, eventType: RevocationEvent, { guild_id, user_id }: Membership) =>
    Effect.gen(function* () {
      const outcome = yield* registry.revoke(user_id, guild_id)
      metrics.revocation(eventType, outcome.connections.length)
      if (outcome.connections.length > 0) {
        yield* Effect.logInfo("gateway.revocation").pipe(
          Effect.annotateLogs({
            event_type: eventType,
            user_id,
            guild_id,
            connections: outcome.connections.length,
            channels: outcome.channels
          })
        )
      }
      // As a kick or ban does in the original (§5.8), then presence (U no longer receives either).
      yield* announceRemovals(publisher, yield* voice.removeUser(user_id, guild_id))
      if (outcome.userLeftGuild) yield* announceOffline(publisher, guild_id, user_id)
    })

  /**
   * Dual emit (reference §8.3): with the switch on, the legacy name first, same payload; the explicit
   * event (its frame already built when this runs) follows. `explicit_emit` counts with the switch off
   * too, so the sunset rule's "legacy flat while explicit grows" can be read off one family.
   */
  const migrate = (publisher: Publisher, path: CompatibilityPath, payload: unknown) =>
    Effect.gen(function* () {
      if (config.dualEmitLegacyOverride) {
        const legacy = yield* Effect.either(
          publisher.publish(
            WorkspaceChannelOverrideUpdate,
            payload as PayloadOf<typeof WorkspaceChannelOverrideUpdate>
          )
        )
        if (legacy._tag === "Right") metrics.compatibilityEvent(path, "legacy_emit")
      }
      metrics.compatibilityEvent(path, "explicit_emit")
    })

  /** The projection follows a voice event before it is delivered; a join over the caps is refused. */
  const applyVoice = (publisher: Publisher, change: VoiceChange) =>
    Effect.gen(function* () {
      if (change._tag === "join") {
        const { channel_id: channelId, guild_id: guildId } = change.payload
        // The original prunes before every registration (§5.8): the expiries go out first.
        yield* announceRemovals(publisher, yield* voice.expire({ guildId, channelId }))
      }
      yield* voice.apply(change).pipe(
        Effect.tapError((refused) =>
          Effect.zipRight(
            Effect.sync(() => metrics.voicePublishRefused(refused.reason)),
            Effect.logWarning(`gateway.voice.refused: ${refused.reason}`).pipe(
              Effect.annotateLogs({ event_type: VoiceParticipantJoin.type, detail: refused.detail })
            )
          )
        )
      )
    })

  const sweep = (publisher: Publisher) =>
    Effect.flatMap(voice.expire(), (removals) => announceRemovals(publisher, removals)).pipe(
      Effect.catchAllCause((cause) => Effect.logError("gateway.voice_sweep.failed", cause))
    )

  const followUps: GatewayHooksShape = {
    beforeAck: ({ connection, guildId, outcome }, publisher) =>
      Effect.gen(function* () {
        const userId = connection.userId
        const cameOnline = outcome.userJoinedGuild ? yield* presence.join(guildId, userId) : false
        const snapshot = yield* presence.snapshot(guildId, userId, config.presenceSyncMaxUsers)
        if (snapshot.total > snapshot.userIds.length) metrics.presenceSyncTruncated()
        yield* sendPresenceSync(publisher, connection, guildId, snapshot.userIds)
        if (cameOnline) yield* announcePresence(publisher, guildId, userId, "online")
      }),

    afterAck: ({ channelId, connection, guildId }, publisher) =>
      Effect.gen(function* () {
        // Lazy expiry first, so the snapshot never shows a participant whose leave is still due.
        yield* announceRemovals(publisher, yield* voice.expire({ guildId, channelId }))
        const participants = yield* voice.snapshot(guildId, channelId)
        const sent = yield* sendSnapshot(publisher, connection, VoiceParticipantSync, {
          guild_id: guildId,
          channel_id: channelId,
          participants,
          synced_at_unix: yield* unixSeconds
        })
        if (sent) metrics.voiceSyncRepair("subscribe")
      }),

    unsubscribed: ({ connection, guildId, outcome }, publisher) =>
      outcome.userLeftGuild ? announceOffline(publisher, guildId, connection.userId) : Effect.void,

    disconnected: ({ connection, userLeftGuilds }, publisher) =>
      Effect.gen(function* () {
        // Reference §5.7: a user with no connection left leaves every voice channel; then offline.
        if ((yield* registry.userMembers(connection.userId)).length === 0) {
          yield* announceRemovals(publisher, yield* voice.removeUser(connection.userId))
        }
        for (const guildId of userLeftGuilds) yield* announceOffline(publisher, guildId, connection.userId)
      }),

    // Runs on every publish: events that are neither voice nor overrides take the allocation-free path.
    publishing: (event, payload, publisher) => {
      const change = voiceChange(event, payload)
      if (change !== undefined) return applyVoice(publisher, change)
      const path = MIGRATION_PATHS.get(event.type)
      return path === undefined ? Effect.void : migrate(publisher, path, payload)
    },

    published: (event, payload, publisher) =>
      REVOKING_EVENTS.has(event.type)
        ? revoke(publisher, event.type as RevocationEvent, payload as Membership)
        : Effect.void,
    publishedEvents: REVOKING_EVENTS,

    start: (publisher) =>
      Effect.all(
        [
          Effect.repeat(sweep(publisher), Schedule.spaced(config.voiceSweep)),
          Effect.repeat(endTick(publisher), Schedule.spaced(config.presenceTick))
        ],
        { concurrency: "unbounded", discard: true }
      )
  }
  return followUps
})

/** Needs the registry, `Presence` and `VoiceParticipants` (e.g. their in-memory layers). */
export const layer: Layer.Layer<
  GatewayHooks,
  never,
  GatewayConfig | GatewayMetrics | SubscriptionRegistry | Presence | VoiceParticipants
> = Layer.effect(GatewayHooks, make)
