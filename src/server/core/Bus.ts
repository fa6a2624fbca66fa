/**
 * EventBus: how a frame published on one node reaches the connections of the others. The gateway
 * always delivers to its own connections first; the bus only carries the already-built frame with
 * its routing key to the other nodes, which deliver it to their local recipients without encoding it
 * again. The bus follows this node's topic interest (`registry/Interest.ts`). This module holds the
 * service and the one-node bus; the Redis bus is `cluster/EventBus.ts`.
 */
import { Context, Effect, Layer, Queue } from "effect"
import type { ChannelId, GuildId, UserId } from "../../protocol/Ids.js"
import type { BusPublish, Position } from "../recovery/History.js"
import { TopicInterest, type TopicInterestShape } from "../registry/Interest.js"
import type { Frame } from "./Outbound.js"

/** Who receives a frame: the routing key of a published event. */
export type Route =
  | { readonly scope: "channel"; readonly guildId: GuildId; readonly channelId: ChannelId }
  | { readonly scope: "guild"; readonly guildId: GuildId }
  | { readonly scope: "user"; readonly userIds: ReadonlyArray<UserId> }

/** A frame another node published, for this node's local recipients. */
export interface Delivery {
  readonly route: Route
  readonly frame: Frame
  /** The publishing node's clock when it published (lag histogram). */
  readonly publishedAt: number
  /** The W3C `traceparent` of the publisher's bus hand-off span, when that publish was traced. */
  readonly trace: string | undefined
  /** A recorded event's position in its stream (the route's one stream), as the history assigned it. */
  readonly position: Position | undefined
  /** This node's own recorded event back from the bus: a marker of its place, delivered locally already. */
  readonly own: boolean
}

export interface EventBusShape extends TopicInterestShape {
  /**
   * Carries a frame this node has delivered locally to the other nodes (at most once, never blocks),
   * with the `traceparent` of a traced publish.
   */
  readonly publish: (route: Route, frame: Frame, trace?: string) => void
  /**
   * The message of a recorded event for the history store to publish in its append step (a channel
   * or guild route, or a user route of one user), so every node receives a stream's events in offset
   * order. Absent on a bus without other nodes. Used instead of `publish`, never with it.
   */
  readonly recorded?: (route: Route, frame: Frame, trace?: string) => BusPublish
  /** Other nodes' frames, in arrival order, for the gateway's single delivery fiber. */
  readonly deliveries: Queue.Dequeue<Delivery>
  /**
   * False while the broker is unreachable or a topic this node has interest in could not be
   * subscribed (`/readyz`).
   */
  readonly healthy: () => boolean
}

export class EventBus extends Context.Tag("filament/EventBus")<EventBus, EventBusShape>() {}

/** One node: local delivery is all there is. */
export const makeMemory: Effect.Effect<EventBusShape> = Effect.map(
  Queue.bounded<Delivery>(1),
  (deliveries) => ({
    publish: () => undefined,
    deliveries,
    setInterest: () => undefined,
    awaitActive: () => Effect.void,
    healthy: () => true
  })
)

/** A bus layer that also serves as the registry's `TopicInterest`: the registry's changes reach it. */
export const withInterest = <E, R>(
  bus: Layer.Layer<EventBus, E, R>
): Layer.Layer<EventBus | TopicInterest, E, R> =>
  Layer.provideMerge(Layer.effect(TopicInterest, EventBus), bus)

export const layerMemory: Layer.Layer<EventBus | TopicInterest> = withInterest(
  Layer.effect(EventBus, makeMemory)
)
