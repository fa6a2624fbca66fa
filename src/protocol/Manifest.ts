/**
 * The event registry: every event of the protocol, looked up by type, scope and lifecycle.
 * Server builders, the client dispatch table and the generated docs all iterate this one list.
 */
import { Data, Either, JSONSchema, type Schema } from "effect"
import { CLOSE_CODES, closeCodeFor, type CloseCode } from "./CloseCodes.js"
import { COMMANDS } from "./Commands.js"
import { EVENT_TYPE_PATTERN, MAX_EVENT_BYTES, PROTOCOL_VERSION } from "./Envelope.js"
import {
  decodePayload,
  type DecodeOptions,
  type EventDefinition,
  type EventLifecycle,
  type EventScope,
  type PayloadOf
} from "./EventDefinition.js"
import { EventPosition } from "./Recovery.js"
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
  Connection.Recovery,
  Workspace.WorkspaceChannelOverrideUpdate
] as const

export type GatewayEvent = (typeof EVENTS)[number]
export type GatewayEventType = GatewayEvent["type"]
export type EventOf<T extends GatewayEventType> = Extract<GatewayEvent, { readonly type: T }>
export type PayloadOfType<T extends GatewayEventType> = PayloadOf<EventOf<T>>

export const Manifest: Registry<GatewayEvent> = makeRegistry<GatewayEvent>(EVENTS)

// ---------------------------------------------------------------------------------------------------------
// Decoding by event type (client dispatch, publish API)
// ---------------------------------------------------------------------------------------------------------

/** A decoded event: its type and payload, discriminated by `type`. */
export type DecodedEvent = {
  readonly [T in GatewayEventType]: { readonly type: T; readonly payload: PayloadOfType<T> }
}[GatewayEventType]

export class EventDecodeError extends Data.TaggedError("EventDecodeError")<{
  /** `unknown_event`: no such event type; `invalid_payload`: the type is known, `d` is not valid. */
  readonly reason: "unknown_event" | "invalid_payload"
  readonly eventType: string
  readonly detail: string
}> {}

/**
 * Decodes the `t` and `d` of an envelope. `strict: false` is the client's tolerant mode (additive
 * unknown keys ignored), `strict: true` the publish API's. Synchronous, never throws.
 */
export const decodeEvent = (
  type: string,
  data: unknown,
  options: DecodeOptions
): Either.Either<DecodedEvent, EventDecodeError> => {
  const event = Manifest.lookup(type)
  if (event === undefined) {
    return Either.left(
      new EventDecodeError({ reason: "unknown_event", eventType: type, detail: `unknown event "${type}"` })
    )
  }
  return Either.match(decodePayload(event as EventDefinition, data, options), {
    onLeft: (error) =>
      Either.left(
        new EventDecodeError({ reason: "invalid_payload", eventType: type, detail: error.message })
      ),
    onRight: (payload) => Either.right({ type: event.type, payload } as DecodedEvent)
  })
}

// ---------------------------------------------------------------------------------------------------------
// JSON manifest (docs/gateway-events.manifest.json)
// ---------------------------------------------------------------------------------------------------------

export interface JsonManifestEvent {
  readonly event_type: string
  readonly schema_version: number
  readonly scope: EventScope
  readonly lifecycle: EventLifecycle
  readonly origin: EventDefinition["origin"]
  readonly description: string
  readonly delivery?: string
  readonly migration?: { readonly note: string; readonly replaced_by: ReadonlyArray<string> }
  /** JSON Schema (draft-07) of the wire form of `d`. */
  readonly payload_schema: JSONSchema.JsonSchema7Root
  /** Payload rules the JSON Schema cannot express; decoders enforce them. */
  readonly unexpressible: ReadonlyArray<string>
}

export interface JsonManifestCommand {
  readonly command_type: string
  readonly description: string
  readonly rejection_reason: string
  readonly close_code: number
  readonly payload_schema: JSONSchema.JsonSchema7Root
  readonly unexpressible: ReadonlyArray<string>
}

export interface JsonManifest {
  readonly protocol_version: typeof PROTOCOL_VERSION
  readonly max_event_bytes: number
  readonly event_type_pattern: string
  /** How `minLength`/`maxLength` count: our decoders, like the web client, use JavaScript lengths. */
  readonly string_length_unit: "utf16_code_unit"
  /**
   * JSON Schema (draft-07) of `pos`, the top-level key after `d` that every recoverable event
   * carries on a connection that opted in to missed-event recovery (`recovery=1`), and only there.
   */
  readonly event_position_schema: JSONSchema.JsonSchema7Root
  readonly events: ReadonlyArray<JsonManifestEvent>
  readonly commands: ReadonlyArray<JsonManifestCommand>
  readonly close_codes: ReadonlyArray<CloseCode>
}

const payloadSchemas = new WeakMap<EventDefinition, JSONSchema.JsonSchema7Root>()

/** The JSON Schema (draft-07) of an event's wire payload, generated from its Effect schema. */
export const payloadJsonSchema = (event: EventDefinition): JSONSchema.JsonSchema7Root => {
  let schema = payloadSchemas.get(event)
  if (schema === undefined) {
    schema = JSONSchema.make(event.payload)
    payloadSchemas.set(event, schema)
  }
  return schema
}

/** The JSON Schema (draft-07) of a command's wire payload. */
export const commandJsonSchema = (command: {
  readonly payload: Schema.Schema.Any
}): JSONSchema.JsonSchema7Root => JSONSchema.make(command.payload)

/** The machine-readable contract: every event, every command, the close codes. */
export const toJsonManifest = (registry: Registry<EventDefinition> = Manifest): JsonManifest => ({
  protocol_version: PROTOCOL_VERSION,
  max_event_bytes: MAX_EVENT_BYTES,
  event_type_pattern: EVENT_TYPE_PATTERN.source,
  string_length_unit: "utf16_code_unit",
  event_position_schema: JSONSchema.make(EventPosition),
  events: registry.events.map((event) => ({
    event_type: event.type,
    schema_version: event.version,
    scope: event.scope,
    lifecycle: event.lifecycle,
    origin: event.origin,
    description: event.description,
    ...(event.delivery === undefined ? {} : { delivery: event.delivery }),
    ...(event.migration === undefined
      ? {}
      : { migration: { note: event.migration.note, replaced_by: event.migration.replacedBy } }),
    payload_schema: payloadJsonSchema(event),
    unexpressible: event.unexpressible
  })),
  commands: COMMANDS.map((command) => ({
    command_type: command.type,
    description: command.description,
    rejection_reason: command.rejection,
    close_code: closeCodeFor(command.rejection).code,
    payload_schema: commandJsonSchema(command),
    unexpressible: command.unexpressible
  })),
  close_codes: CLOSE_CODES
})

/** The manifest file's exact text (what `npm run docs` writes). */
export const renderJsonManifest = (): string => `${JSON.stringify(toJsonManifest(), null, 2)}\n`
