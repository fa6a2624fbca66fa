/**
 * The seams: the services the core calls but does not implement. `GatewayHooks` is where stateful
 * behaviours (presence, voice snapshots, revocation, dual emit) attach to subscriptions, publishing
 * and the gateway's start, and `Publisher` what a hook may do; `AccessPolicy` decides who may
 * subscribe and post; `MessageHandler` turns a `message_create` into a message. `chat/` implements
 * them (a host app may replace any); the default hooks do nothing.
 */
import { Context, Effect, Layer } from "effect"
import type { MessageCreateCommand } from "../../protocol/Commands.js"
import type { EventDefinition, PayloadOf } from "../../protocol/EventDefinition.js"
import type { ChannelId, GuildId, UserId } from "../../protocol/Ids.js"
import type { MessageSnapshot } from "../../protocol/Shapes.js"
import type { Principal } from "../Auth.js"
import type { MessageRejected, OutboundError, PublishError, PublishRefused } from "../Errors.js"
import type { DisconnectOutcome, SubscribeOutcome, UnsubscribeOutcome } from "../registry/Indexes.js"
import type { Connection, DeliveryResult, DisconnectReason } from "./Connection.js"
import type { Frame } from "./Outbound.js"

// `any` payloads: EventDefinition is invariant in its schema types; the payload type is recovered with PayloadOf.
/* eslint-disable @typescript-eslint/no-explicit-any */
export type RoutedEvent = EventDefinition<string, any, any, "channel" | "guild">
export type UserEvent = EventDefinition<string, any, any, "user">
/* eslint-enable @typescript-eslint/no-explicit-any */

/** An event's payload and the frame it was encoded into. */
export interface BuiltEvent<Payload> {
  readonly payload: Payload
  readonly frame: Frame
}

/** The publish path: encode once, route by scope through the registry's indexes, one delivery loop. */
export interface Publisher {
  /**
   * Channel events go to `d.guild_id` + `d.channel_id`, guild events to `d.guild_id`. Succeeds with
   * the number of local connections the frame was delivered to (written or queued). Fails, with
   * nothing delivered, when the frame cannot be built or a hook refuses the event.
   */
  readonly publish: <E extends RoutedEvent>(
    event: E,
    payload: PayloadOf<E>
  ) => Effect.Effect<number, PublishError>
  /**
   * Events of one route already built (`Outbound.encode`), in order, as **one write per local
   * recipient**: their frames concatenated (`Outbound.batch`). Each still passes the hooks, goes onto
   * the bus as its own message and is counted once per recipient. For state events (presence, voice:
   * never recorded) whose payloads all name the same route; anything else is a defect. Fails, with
   * nothing delivered, when a hook refuses one of them.
   */
  readonly publishBuilt: <E extends RoutedEvent>(
    event: E,
    built: ReadonlyArray<BuiltEvent<PayloadOf<E>>>
  ) => Effect.Effect<number, PublishRefused>
  /** A user-scoped event to every connection of each listed user (duplicates ignored). */
  readonly publishToUsers: <E extends UserEvent>(
    event: E,
    payload: PayloadOf<E>,
    userIds: Iterable<UserId>
  ) => Effect.Effect<number, PublishError>
  /**
   * An event to one connection: the connection-scoped ones, and the snapshots the manifest files
   * under their guild / channel but that only the subscribing connection receives (`presence_sync`,
   * `voice_participant_sync`). Counted under `scope="connection"`.
   */
  readonly send: <E extends EventDefinition>(
    connection: Connection,
    event: E,
    payload: PayloadOf<E>
  ) => Effect.Effect<DeliveryResult, OutboundError>
  /** `send` of a frame built once for several connections (a shared snapshot), counted the same way. */
  readonly sendFrame: (connection: Connection, frame: Frame) => DeliveryResult
}

export interface SubscriptionChange<Outcome> {
  readonly connection: Connection
  readonly guildId: GuildId
  readonly channelId: ChannelId
  readonly outcome: Outcome
}

export type Subscribed = SubscriptionChange<Extract<SubscribeOutcome, { readonly _tag: "Subscribed" }>>

export interface Disconnected extends DisconnectOutcome {
  readonly connection: Connection
  readonly reason: DisconnectReason
}

/** What runs around subscriptions, publishing and the gateway's start. */
export interface GatewayHooksShape {
  /** After an authorized subscribe is in the registry, before the `subscribed` ack (presence). */
  readonly beforeAck: (change: Subscribed, publisher: Publisher) => Effect.Effect<void>
  /** After the `subscribed` ack (voice snapshot). */
  readonly afterAck: (change: Subscribed, publisher: Publisher) => Effect.Effect<void>
  /** After an unsubscribe, before its ack. */
  readonly unsubscribed: (
    change: SubscriptionChange<UnsubscribeOutcome>,
    publisher: Publisher
  ) => Effect.Effect<void>
  /** After a closed connection left every index (the one cleanup path). */
  readonly disconnected: (change: Disconnected, publisher: Publisher) => Effect.Effect<void>
  /**
   * After a routed or user event's frame was built, before it is delivered: may publish events that
   * must arrive first (dual emit: the legacy event) or refuse the event (voice caps), in which case
   * nobody receives it.
   */
  readonly publishing: (
    event: EventDefinition,
    payload: unknown,
    publisher: Publisher
  ) => Effect.Effect<void, PublishRefused>
  /** After a routed or user event was delivered (revocation). */
  readonly published: (event: EventDefinition, payload: unknown, publisher: Publisher) => Effect.Effect<void>
  /**
   * The event types `published` acts on: a frame from another node is decoded back into its payload
   * only for these (the others need no payload after delivery).
   */
  readonly publishedEvents: ReadonlySet<string>
  /** Background work (the voice expiry sweep), forked once in the gateway's scope. */
  readonly start: (publisher: Publisher) => Effect.Effect<void>
}

export class GatewayHooks extends Context.Tag("filament/GatewayHooks")<GatewayHooks, GatewayHooksShape>() {}

export const none: GatewayHooksShape = {
  beforeAck: () => Effect.void,
  afterAck: () => Effect.void,
  unsubscribed: () => Effect.void,
  disconnected: () => Effect.void,
  publishing: () => Effect.void,
  published: () => Effect.void,
  publishedEvents: new Set(),
  start: () => Effect.void
}

export const layerNone: Layer.Layer<GatewayHooks> = Layer.succeed(GatewayHooks, none)

/** May this principal subscribe to, or post in, a channel? (Default: `chat/Access.ts`, the token's claims.) */
export interface AccessPolicyShape {
  readonly canSubscribe: (
    principal: Principal,
    guildId: GuildId,
    channelId: ChannelId
  ) => Effect.Effect<boolean>
  readonly canPost: (principal: Principal, guildId: GuildId, channelId: ChannelId) => Effect.Effect<boolean>
}

export class AccessPolicy extends Context.Tag("filament/AccessPolicy")<AccessPolicy, AccessPolicyShape>() {}

/**
 * What an ingress `message_create` becomes, once the AccessPolicy has allowed the channel (Ingress
 * checks `canPost` for every handler). Default: `chat/Messages.ts`, plain text.
 */
export interface MessageHandlerShape {
  readonly create: (
    principal: Principal,
    command: MessageCreateCommand
  ) => Effect.Effect<MessageSnapshot, MessageRejected>
}

export class MessageHandler extends Context.Tag("filament/MessageHandler")<
  MessageHandler,
  MessageHandlerShape
>() {}
