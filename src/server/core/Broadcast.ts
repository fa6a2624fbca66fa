/**
 * A broadcast's path through this node, both ways. Published here (`Publisher`): encode once, the
 * `publishing` hooks, the registry's recipients, onto the bus, one local delivery loop (a recoverable
 * event: `RecordedDelivery`), the `published` hooks; `publishBuilt` takes several built state events
 * of one route the same way, with one write per recipient for all of them. Arrived from another
 * node: `RemoteDelivery`.
 */
import { Duration, Effect, Either, Option, Tracer } from "effect"
import type { Clock } from "effect"
import type { EventDefinition, PayloadOf } from "../../protocol/EventDefinition.js"
import type { OutboundError, PublishError, PublishRefused } from "../Errors.js"
import type { GatewayMetricsShape } from "../Metrics.js"
import type { HistoryShape } from "../recovery/History.js"
import type { SubscriptionRegistryShape } from "../registry/Subscriptions.js"
import * as Tracing from "../Tracing.js"
import type { EventBusShape, Route } from "./Bus.js"
import type { Connection, DeliveryResult } from "./Connection.js"
import * as Fanout from "./Fanout.js"
import * as LocalOrder from "./LocalOrder.js"
import * as Outbound from "./Outbound.js"
import * as RecordedDelivery from "./RecordedDelivery.js"
import { remoteDelivery } from "./RemoteDelivery.js"
import { recipientsOf, routeOf, streamOfRoute } from "./Routes.js"
import type { BuiltEvent, GatewayHooksShape, Publisher, RoutedEvent } from "./Seams.js"

export { isRecoverable } from "./RecordedDelivery.js"

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
  readonly history: HistoryShape
  /** Bus messages older than this are stale: an own publish's opted-in recipients wait no longer for its marker. */
  readonly busMaxLag: Duration.Duration
}

export interface Broadcast {
  readonly publisher: Publisher
  /** The bus's frames delivered to this node's connections, one at a time (fork it once). */
  readonly deliverRemote: Effect.Effect<never>
  /** Sets (or with `undefined` removes) the one observer of this node's broadcasts. */
  readonly setTap: (tap: PublishTap | undefined) => void
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

export const make = (options: BroadcastOptions): Broadcast => {
  const { maxEventBytes: maxBytes, metrics, registry, hooks, bus, tracing, history } = options
  // Undefined unless an inspector is looking: a publish then pays one comparison.
  let publishTap: PublishTap | undefined
  const order = LocalOrder.make(options.clock, Duration.toMillis(options.busMaxLag))
  const recorded = RecordedDelivery.make({
    metrics,
    registry,
    bus,
    history,
    order,
    tapOf: () => publishTap
  })

  /** Encodes once. A built frame is returned as is (an `Either` is an Effect): nothing to allocate. */
  const build = <E extends EventDefinition>(
    event: E,
    payload: PayloadOf<E>
  ): Effect.Effect<Outbound.Frame, OutboundError> => {
    const encoded = Outbound.encode(event, payload, maxBytes)
    return Either.isRight(encoded) ? encoded : buildFailed(metrics, event, encoded.left)
  }

  /** Recipients and delivery of a built frame, recoverable or not. */
  const route = (
    event: EventDefinition,
    frame: Outbound.Frame,
    target: Route,
    trace?: string
  ): Effect.Effect<number> => {
    if (!RecordedDelivery.isRecoverable(event.type)) {
      return Effect.map(recipientsOf(registry, target), (recipients) => {
        // Onto the bus first: other nodes send to their recipients while this one loops over its own.
        bus.publish(target, frame, trace)
        const { delivered } = Fanout.broadcast(metrics, frame, recipients)
        if (publishTap !== undefined) publishTap(frame, target, recipients.length, "local")
        return delivered
      })
    }
    if (target.scope === "user") return recorded.toUsers(frame, target, trace)
    return recorded.toRoute(frame, target, trace)
  }

  // The hot path of every broadcast: plain steps rather than a generator, so the fiber that runs it
  // does as little as it can (a host app runs one per event).
  const publishUntraced = (event: EventDefinition, payload: unknown, target: Route) =>
    Effect.suspend((): Effect.Effect<number, PublishError> => {
      const encoded = Outbound.encode(event, payload as never, maxBytes)
      if (Either.isLeft(encoded)) return buildFailed(metrics, event, encoded.left)
      const frame = encoded.right
      return Effect.zipRight(
        hooks.publishing(event, payload, publisher),
        Effect.flatMap(route(event, frame, target), (delivered) =>
          Effect.as(hooks.published(event, payload, publisher), delivered)
        )
      )
    })

  /** The same steps, each a span; the bus hand-off carries its span to the nodes that deliver it. */
  const publishTraced = (event: EventDefinition, payload: unknown, target: Route) =>
    Effect.gen(function* () {
      const frame = yield* build(event, payload as never).pipe(Effect.withSpan("gateway.publish.build"))
      yield* hooks.publishing(event, payload, publisher)
      yield* Effect.annotateCurrentSpan("filament.bytes", frame.bytes)
      // The hand-off's span is the parent the other nodes' deliveries continue from.
      const trace = yield* Effect.useSpan("gateway.publish.bus_handoff", { kind: "producer" }, (span) =>
        Effect.succeed(Tracing.traceparent(span))
      )
      const delivered = yield* route(event, frame, target, trace).pipe(
        Effect.withSpan("gateway.publish.fanout")
      )
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

  const publishBuilt = (
    event: RoutedEvent,
    built: ReadonlyArray<BuiltEvent<unknown>>
  ): Effect.Effect<number, PublishRefused> =>
    Effect.suspend(() => {
      if (built.length === 0) return Effect.succeed(0)
      const target = routeOf(event, built[0]!.payload)
      // The stream name is the route's identity: a batch's payloads must share one recipient list.
      const stream = streamOfRoute(target)
      if (
        RecordedDelivery.isRecoverable(event.type) ||
        built.some((b) => streamOfRoute(routeOf(event, b.payload)) !== stream)
      ) {
        return Effect.dieMessage(
          `publishBuilt: ${event.type} is recorded, or its payloads name several routes`
        )
      }
      return Effect.zipRight(
        Effect.forEach(built, ({ payload }) => hooks.publishing(event, payload, publisher), {
          discard: true
        }),
        Effect.flatMap(recipientsOf(registry, target), (recipients) => {
          // Onto the bus one by one (its format is one event per message), then one local loop.
          for (const { frame } of built) bus.publish(target, frame)
          const { delivered } = Fanout.broadcast(
            metrics,
            Outbound.batch(built.map((b) => b.frame)),
            recipients
          )
          const tap = publishTap
          if (tap !== undefined) for (const { frame } of built) tap(frame, target, recipients.length, "local")
          return Effect.as(
            Effect.forEach(built, ({ payload }) => hooks.published(event, payload, publisher), {
              discard: true
            }),
            delivered
          )
        })
      )
    })

  const sendFrame = (connection: Connection, frame: Outbound.Frame): DeliveryResult => {
    const result = connection.deliver(frame)
    if (result === "sent" || result === "queued") metrics.emitted("connection", frame.eventType, 1)
    else metrics.dropped("connection", frame.eventType, result === "evicted" ? "full_queue" : "closed")
    return result
  }

  const publisher: Publisher = {
    publish: (event, payload) => publishRoute(event, payload, routeOf(event, payload)),
    publishBuilt,
    publishToUsers: (event, payload, userIds) =>
      publishRoute(event, payload, { scope: "user", userIds: [...new Set(userIds)] }),
    send: (connection, event, payload) =>
      Effect.map(build(event, payload), (frame) => sendFrame(connection, frame)),
    sendFrame
  }

  return {
    publisher,
    deliverRemote: remoteDelivery(options, publisher, () => publishTap, order),
    setTap: (tap) => {
      publishTap = tap
    }
  }
}
