/**
 * The event registry: every event of the protocol, looked up by type, scope and lifecycle.
 * Server builders, the client dispatch table and the generated docs all iterate this one list.
 */
import type { EventDefinition, EventLifecycle, EventScope, PayloadOf } from "./EventDefinition.js"
import * as Connection from "./events/connection.js"
import * as Friend from "./events/friend.js"
import * as Message from "./events/message.js"
import * as Presence from "./events/presence.js"
import * as Profile from "./events/profile.js"
import * as Voice from "./events/voice.js"
import * as Workspace from "./events/workspace.js"

export class ManifestError extends Error {
  override readonly name = "ManifestError"
}

export interface Registry<E extends EventDefinition> {
  readonly events: ReadonlyArray<E>
  readonly lookup: (type: string) => E | undefined
  readonly byScope: (scope: EventScope) => ReadonlyArray<E>
  readonly byLifecycle: (lifecycle: EventLifecycle) => ReadonlyArray<E>
}

/**
 * Builds a registry, enforcing the manifest invariants: unique names, `version > 0`, a migration
 * note iff deprecated. Throws `ManifestError` at module load, so a broken manifest cannot ship.
 */
export const makeRegistry = <E extends EventDefinition>(events: ReadonlyArray<E>): Registry<E> => {
  // A Map, not an object: names such as `__proto__` or `constructor` never resolve.
  const byType = new Map<string, E>()
  for (const event of events) {
    if (byType.has(event.type)) throw new ManifestError(`duplicate event type "${event.type}"`)
    if (!Number.isInteger(event.version) || event.version <= 0) {
      throw new ManifestError(`event "${event.type}" has schema_version ${event.version}, must be > 0`)
    }
    if (
      event.lifecycle === "deprecated" &&
      (event.migration === undefined || event.migration.note.trim() === "")
    ) {
      throw new ManifestError(`deprecated event "${event.type}" needs a migration note`)
    }
    if (event.lifecycle === "active" && event.migration !== undefined) {
      throw new ManifestError(`active event "${event.type}" must not carry a migration note`)
    }
    byType.set(event.type, event)
  }
  return {
    events,
    lookup: (type) => byType.get(type),
    byScope: (scope) => events.filter((event) => event.scope === scope),
    byLifecycle: (lifecycle) => events.filter((event) => event.lifecycle === lifecycle)
  }
}

/**
 * Every event of the protocol, in catalog order: the 36 original events in the order of the
 * original manifest (reference §4.0), then our extensions, then the deprecated legacy event.
 */
export const EVENTS = [
  Connection.Ready,
  Connection.Subscribed,
  Message.MessageCreate,
  Message.MessageUpdate,
  Message.MessageDelete,
  Message.MessageReaction,
  Workspace.ChannelCreate,
  Presence.PresenceSync,
  Presence.PresenceUpdate,
  Voice.VoiceParticipantSync,
  Voice.VoiceParticipantJoin,
  Voice.VoiceParticipantLeave,
  Voice.VoiceParticipantUpdate,
  Voice.VoiceStreamPublish,
  Voice.VoiceStreamUnpublish,
  Workspace.WorkspaceUpdate,
  Workspace.WorkspaceMemberAdd,
  Workspace.WorkspaceMemberUpdate,
  Workspace.WorkspaceMemberRemove,
  Workspace.WorkspaceMemberBan,
  Workspace.WorkspaceRoleCreate,
  Workspace.WorkspaceRoleUpdate,
  Workspace.WorkspaceRoleDelete,
  Workspace.WorkspaceRoleReorder,
  Workspace.WorkspaceRoleAssignmentAdd,
  Workspace.WorkspaceRoleAssignmentRemove,
  Workspace.WorkspaceChannelRoleOverrideUpdate,
  Workspace.WorkspaceChannelPermissionOverrideUpdate,
  Workspace.WorkspaceIpBanSync,
  Profile.ProfileUpdate,
  Profile.ProfileAvatarUpdate,
  Profile.ProfileBannerUpdate,
  Friend.FriendRequestCreate,
  Friend.FriendRequestUpdate,
  Friend.FriendRequestDelete,
  Friend.FriendRemove,
  Connection.Unsubscribed,
  Workspace.WorkspaceChannelOverrideUpdate
] as const

export type GatewayEvent = (typeof EVENTS)[number]
export type GatewayEventType = GatewayEvent["type"]
export type EventOf<T extends GatewayEventType> = Extract<GatewayEvent, { readonly type: T }>
export type PayloadOfType<T extends GatewayEventType> = PayloadOf<EventOf<T>>

export const Manifest: Registry<GatewayEvent> = makeRegistry<GatewayEvent>(EVENTS)
