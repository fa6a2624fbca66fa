/**
 * A broadcast's path through this node, both ways. Published here (`Publisher`): encode once, the
 * `publishing` hooks, the registry's recipients, onto the bus, one local delivery loop, the
 * `published` hooks. Arrived from another node (`deliverRemote`): the frame is already built, so only
 * the lookup and the loop (and the `published` hooks for the events they act on).
 */
import { Effect, Either, Option, ParseResult, Queue, Tracer } from "effect"
import type { Clock } from "effect"
import type { EventDefinition, PayloadOf } from "../../protocol/EventDefinition.js"
import { decodePayload } from "../../protocol/EventDefinition.js"
import { Manifest } from "../../protocol/Manifest.js"
import type { ChannelId, GuildId } from "../../protocol/Ids.js"
import type { OutboundError, PublishError } from "../Errors.js"
import type { GatewayMetricsShape } from "../Metrics.js"
import type { SubscriptionRegistryShape } from "../registry/Subscriptions.js"
import * as Tracing from "../Tracing.js"
import type { Delivery, EventBusShape, Route } from "./Bus.js"
import type { Connection, DeliveryResult } from "./Connection.js"
import * as Fanout from "./Fanout.js"
import * as Outbound from "./Outbound.js"
import type { GatewayHooksShape, Publisher } from "./Seams.js"

/** Observes one broadcast: its frame, route, how many local connections it was offered to, and whence. */
export type PublishTap = (
  frame: Outbound.Frame,
  route: Route,
  recipients: number,
  origin: "local" | "bus"
) => void

export interface BroadcastOptions {
  readonly maxEventBytes: number
  readonly metrics: GatewayMetricsShape
  readonly registry: SubscriptionRegistryShape
  readonly hooks: GatewayHooksShape
  readonly bus: EventBusShape
  readonly tracing: Tracing.TracingShape
  readonly clock: Clock.Clock
}

export interface Broadcast {
  readonly publisher: Publisher
  /** The bus's frames delivered to this node's connections, one at a time (fork it once). */
  readonly deliverRemote: Effect.Effect<never>
  /** Sets (or with `undefined` removes) the one observer of this node's broadcasts. */
  readonly setTap: (tap: PublishTap | undefined) => void
}

/** Bound on the decode issue a log line quotes. */
const MAX_DECODE_ISSUE_CHARS = 200

/**
 * The typed payload of a frame another node built, or the first decode issue: a node of another
 * version (a rolling deploy) may have encoded a payload this one's schema no longer accepts.
 */
const remotePayload = (event: EventDefinition, frame: Outbound.Frame): Either.Either<unknown, string> => {
  let envelope: { d?: unknown }
  try {
    envelope = JSON.parse(frame.wire.toString("utf8", frame.wire.length - frame.bytes)) as { d?: unknown }
  } catch (error) {
    return Either.left(String(error))
  }
  return Either.mapLeft(decodePayload(event, envelope.d, { strict: false }), (error) => {
    const [issue] = ParseResult.ArrayFormatter.formatErrorSync(error)
    return issue === undefined ? error.message : `${JSON.stringify(issue.path)}: ${issue.message}`
  })
}

/** Every channel / guild event carries its routing ids (the manifest's scope contract). */
const routeOf = (event: EventDefinition, payload: unknown): Route => {
  const target = payload as { readonly guild_id: GuildId; readonly channel_id: ChannelId }
  return event.scope === "channel"
    ? { scope: "channel", guildId: target.guild_id, channelId: target.channel_id }
    : { scope: "guild", guildId: target.guild_id }
}

/** An unbuildable frame is counted and logged, never delivered, never thrown. */
const buildFailed = (metrics: GatewayMetricsShape, event: EventDefinition, error: OutboundError) =>
  Effect.zipRight(
    Effect.sync(() => metrics.dropped(event.scope, event.type, error.reason)),
    Effect.logWarning(`gateway.${event.scope}_fanout.${error.reason}`).pipe(
      Effect.annotateLogs({
        event_type: event.type,
        detail: "detail" in error ? error.detail : error.bytes
      }),
      Effect.zipRight(Effect.fail(error))
    )
  )

/** Who receives a route's frame on this node: an index lookup (a user route: one per user). */
const recipientsOf = (
  registry: SubscriptionRegistryShape,
  route: Route
): Effect.Effect<ReadonlyArray<Connection>> => {
  if (route.scope === "channel") return registry.channelMembers(route.guildId, route.channelId)
  if (route.scope === "guild") return registry.guildMembers(route.guildId)
  if (route.userIds.length === 1) return registry.userMembers(route.userIds[0]!)
  // A connection belongs to one user and the ids are distinct: the lists are disjoint, one loop serves all.
  return Effect.map(
    Effect.forEach(route.userIds, (userId) => registry.userMembers(userId)),
    (lists) => lists.flat()
  )
}

/**
 * Remote delivery: the bus's frames to this node's connections, one fiber per node, in arrival order
 * (per publisher: publish order).
 */
const remoteDelivery = (
  options: BroadcastOptions,
  publisher: Publisher,
  tapOf: () => PublishTap | undefined
): Effect.Effect<never> => {
  const { metrics, registry, hooks, bus, tracing, clock } = options
  /** Another node's frame to this node's recipients: already built, so only the lookup and the loop. */
  const deliverOne = ({ frame, publishedAt, route }: Delivery) =>
    Effect.gen(function* () {
      metrics.busLag(Math.max(0, clock.unsafeCurrentTimeMillis() - publishedAt) / 1000)
      const recipients = yield* recipientsOf(registry, route)
      Fanout.broadcast(metrics, frame, recipients)
      tapOf()?.(frame, route, recipients.length, "bus")
      // The after-delivery hooks (revocation) act on this node's connections too; the
      // before-delivery ones (projections, dual emit) ran once, on the publishing node.
      // Only the events a hook acts on are decoded again.
      if (!hooks.publishedEvents.has(frame.eventType)) return
      const event = Manifest.lookup(frame.eventType)
      if (event === undefined) return
      const payload = remotePayload(event, frame)
      if (Either.isRight(payload)) return yield* hooks.published(event, payload.right, publisher)
      // Its hook (revocation) did not run on this node: worth an alert, not a crash.
      metrics.busUndecodable(frame.eventType)
      yield* Effect.logWarning(
        `gateway.bus_delivery.undecodable event_type=${frame.eventType}: ${payload.left.slice(0, MAX_DECODE_ISSUE_CHARS)}`
      )
    })
  /** A traced publish is continued here: this node's delivery is a span of the publisher's trace. */
  const deliverOneTraced = (delivery: Delivery) =>
    Option.match(delivery.trace === undefined ? Option.none() : Tracing.parentOf(delivery.trace), {
      onNone: () => deliverOne(delivery),
      onSome: (parent) =>
        Effect.withSpan(deliverOne(delivery), "gateway.remote_delivery", {
          parent,
          kind: "consumer",
          attributes: {
            "filament.event_type": delivery.frame.eventType,
            "filament.scope": delivery.route.scope
          }
        })
    })

  return Effect.forever(
    Effect.flatMap(Queue.take(bus.deliveries), tracing.enabled ? deliverOneTraced : deliverOne).pipe(
      Effect.catchAllDefect((defect) => Effect.logError("gateway.bus_delivery.defect", defect))
    )
  )
}

export const make = (options: BroadcastOptions): Broadcast => {
  const { maxEventBytes: maxBytes, metrics, registry, hooks, bus, tracing } = options
  // Undefined unless an inspector is looking: a publish then pays one comparison.
  let publishTap: PublishTap | undefined

  /** Encodes once. A built frame is returned as is (an `Either` is an Effect): nothing to allocate. */
  const build = <E extends EventDefinition>(
    event: E,
    payload: PayloadOf<E>
  ): Effect.Effect<Outbound.Frame, OutboundError> => {
    const encoded = Outbound.encode(event, payload, maxBytes)
    return Either.isRight(encoded) ? encoded : buildFailed(metrics, event, encoded.left)
  }

  // The hot path of every broadcast: plain steps rather than a generator, so the fiber that runs it
  // does as little as it can (a host app runs one per event).
  const publishUntraced = (event: EventDefinition, payload: unknown, route: Route) =>
    Effect.suspend((): Effect.Effect<number, PublishError> => {
      const encoded = Outbound.encode(event, payload as never, maxBytes)
      if (Either.isLeft(encoded)) return buildFailed(metrics, event, encoded.left)
      const frame = encoded.right
      return Effect.zipRight(
        hooks.publishing(event, payload, publisher),
        Effect.flatMap(recipientsOf(registry, route), (recipients) => {
          // Onto the bus first: other nodes send to their recipients while this one loops over its own.
          bus.publish(route, frame)
          const { delivered } = Fanout.broadcast(metrics, frame, recipients)
          if (publishTap !== undefined) publishTap(frame, route, recipients.length, "local")
          return Effect.as(hooks.published(event, payload, publisher), delivered)
        })
      )
    })

  /** The same steps, each a span; the bus hand-off carries its span to the nodes that deliver it. */
  const publishTraced = (event: EventDefinition, payload: unknown, route: Route) =>
    Effect.gen(function* () {
      const frame = yield* build(event, payload as never).pipe(Effect.withSpan("gateway.publish.build"))
      yield* hooks.publishing(event, payload, publisher)
      const recipients = yield* recipientsOf(registry, route)
      yield* Effect.annotateCurrentSpan("filament.bytes", frame.bytes)
      yield* Effect.useSpan("gateway.publish.bus_handoff", { kind: "producer" }, (span) =>
        Effect.sync(() => bus.publish(route, frame, Tracing.traceparent(span)))
      )
      const { delivered } = yield* Effect.sync(() => Fanout.broadcast(metrics, frame, recipients)).pipe(
        Effect.withSpan("gateway.publish.fanout", {
          attributes: { "filament.recipients": recipients.length }
        })
      )
      if (publishTap !== undefined) publishTap(frame, route, recipients.length, "local")
      yield* hooks.published(event, payload, publisher)
      return delivered
    }).pipe(
      Effect.withSpan("gateway.publish", {
        attributes: { "filament.event_type": event.type, "filament.scope": event.scope }
      })
    )

  /** Traced when the caller is (a traced command) or when a new trace is sampled. */
  const publishRoute = tracing.enabled
    ? (event: EventDefinition, payload: unknown, route: Route) =>
        Effect.flatMap(Effect.serviceOption(Tracer.ParentSpan), (parent) =>
          Option.isSome(parent) || tracing.sampleRoot()
            ? publishTraced(event, payload, route)
            : publishUntraced(event, payload, route)
        )
    : publishUntraced

  const sendFrame = (connection: Connection, frame: Outbound.Frame): DeliveryResult => {
    const result = connection.deliver(frame)
    if (result === "sent" || result === "queued") metrics.emitted("connection", frame.eventType, 1)
    else metrics.dropped("connection", frame.eventType, result === "evicted" ? "full_queue" : "closed")
    return result
  }

  const publisher: Publisher = {
    publish: (event, payload) => publishRoute(event, payload, routeOf(event, payload)),
    publishToUsers: (event, payload, userIds) =>
      publishRoute(event, payload, { scope: "user", userIds: [...new Set(userIds)] }),
    send: (connection, event, payload) =>
      Effect.map(build(event, payload), (frame) => sendFrame(connection, frame)),
    sendFrame
  }

  return {
    publisher,
    deliverRemote: remoteDelivery(options, publisher, () => publishTap),
    setTap: (tap) => {
      publishTap = tap
    }
  }
}
