/**
 * chat/: the chat behaviours the core knows only through its seams (`core/Seams.ts`) — presence,
 * the voice projection, these hooks, the default messages and access policy — kept in memory; the
 * Redis-backed presence and voice are in cluster/.
 *
 * The default `GatewayHooks`: what makes the gateway a chat gateway rather than a pub/sub
 * pipe. On the core's seams it adds
 *
 * - presence (docs/PROTOCOL.md, Presence): `presence_sync` to the subscriber, `presence_update` online
 *   once when a user comes online in a guild and offline once when their last subscription there
 *   goes (unsubscribe, disconnect, revocation);
 * - voice snapshots (docs/PROTOCOL.md, Voice snapshots): the `VoiceParticipants` projection follows
 *   the published voice events, refuses joins over its caps, sends `voice_participant_sync` after every
 *   authorized subscribe, and announces expired participants (lazily on subscribe and join, and from
 *   one periodic sweep);
 * - revocation (ours): after `workspace_member_remove` / `workspace_member_ban` for user U in guild G
 *   is delivered, U's connections lose every subscription in G, U leaves G's voice channels and goes
 *   offline there;
 * - the migration lifecycle (docs/PROTOCOL.md, Compatibility and versioning): with
 *   `GATEWAY_DUAL_EMIT_LEGACY_OVERRIDE`, every channel override event is preceded by the deprecated
 *   `workspace_channel_override_update`; the compatibility counters count the legacy and the explicit
 *   emits.
 *
 * Follow-up events are announcements: one that cannot be built is counted and logged by the publish
 * path and never fails the command or publish that caused it. The presence announcements (within
 * the node's presence write budget) are in `PresenceAnnouncements.ts`, the voice projection's in
 * `VoiceAnnouncements.ts`.
 */
import { Effect, Either, Layer, Schedule } from "effect"
import type { EventDefinition, PayloadOf } from "../../protocol/EventDefinition.js"
import { PresenceSync } from "../../protocol/events/presence.js"
import { VoiceParticipantSync } from "../../protocol/events/voice.js"
import {
  WorkspaceChannelOverrideUpdate,
  WorkspaceChannelPermissionOverrideUpdate,
  WorkspaceChannelRoleOverrideUpdate,
  WorkspaceMemberBan,
  WorkspaceMemberRemove
} from "../../protocol/events/workspace.js"
import type { GuildId, UserId } from "../../protocol/Ids.js"
import { GatewayConfig } from "../Config.js"
import type { Connection } from "../core/Connection.js"
import { GatewayHooks, type Publisher, type GatewayHooksShape } from "../core/Seams.js"
import { GatewayMetrics, type CompatibilityPath, type RevocationEvent } from "../Metrics.js"
import { Presence } from "./Presence.js"
import { makePresenceAnnouncements } from "./PresenceAnnouncements.js"
import { SubscriptionRegistry } from "../registry/Subscriptions.js"
import { VoiceParticipants, voiceChange } from "./Voice.js"
import { makeVoiceAnnouncements, unixSeconds } from "./VoiceAnnouncements.js"

/** The explicit override events and the compatibility path each is counted under. */
const MIGRATION_PATHS: ReadonlyMap<string, CompatibilityPath> = new Map([
  [WorkspaceChannelRoleOverrideUpdate.type, "channel_role_override_migration"],
  [WorkspaceChannelPermissionOverrideUpdate.type, "channel_permission_override_migration"]
])

const REVOKING_EVENTS: ReadonlySet<string> = new Set([WorkspaceMemberRemove.type, WorkspaceMemberBan.type])

/** Both revoking events carry the member and the guild. */
type Membership = PayloadOf<typeof WorkspaceMemberRemove> | PayloadOf<typeof WorkspaceMemberBan>

export const make = Effect.gen(function* () {
  const config = yield* GatewayConfig
  const metrics = yield* GatewayMetrics
  const registry = yield* SubscriptionRegistry
  const presence = yield* Presence
  const voice = yield* VoiceParticipants
  const { announceOffline, announcePresence, flushHeld, snapshotFrame } = makePresenceAnnouncements(
    config,
    presence,
    (guildId) => Effect.map(registry.guildMembers(guildId), (members) => members.length)
  )
  const { announceRemovals, applyVoice, sweep } = makeVoiceAnnouncements(metrics, voice)

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

  /** The subscribe snapshot: one frame per guild version, shared (`snapshotFrame`). */
  const sendPresenceSync = (
    publisher: Publisher,
    connection: Connection,
    guildId: GuildId,
    userIds: ReadonlyArray<UserId>
  ) =>
    Effect.suspend(() => {
      const frame = snapshotFrame(guildId, userIds)
      // An unbuildable snapshot takes the publisher's path, which counts and logs the failure.
      if (Either.isLeft(frame)) {
        return sendSnapshot(publisher, connection, PresenceSync, { guild_id: guildId, user_ids: userIds })
      }
      publisher.sendFrame(connection, frame.right)
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
      // The original removes a kicked or banned user from the guild's voice channels; then presence (U
      // no longer receives either).
      yield* announceRemovals(publisher, yield* voice.removeUser(user_id, guild_id))
      if (outcome.userLeftGuild) yield* announceOffline(publisher, guild_id, user_id)
    })

  /**
   * Dual emit, as in the original's migration window: with the switch on, the legacy name first, same
   * payload; the explicit event (its frame already built when this runs) follows. `explicit_emit`
   * counts with the switch off too, so the sunset rule's "legacy flat while explicit grows" can be read
   * off one family.
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
        // As in the original: a user with no connection left leaves every voice channel; then offline.
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
        [Effect.repeat(sweep(publisher), Schedule.spaced(config.voiceSweep)), flushHeld(publisher)],
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
