/**
 * Remote delivery: the bus's frames to this node's connections, one fiber per node. Another node's
 * frame is already built, so only the lookup, the loop and the `published` hooks of the events they
 * act on; this node's own recorded event back from the bus only takes its place (`LocalOrder`).
 */
import { Effect, Either, Option, ParseResult, Queue } from "effect"
import type { Clock } from "effect"
import type { EventDefinition } from "../../protocol/EventDefinition.js"
import { decodePayload } from "../../protocol/EventDefinition.js"
import { Manifest } from "../../protocol/Manifest.js"
import type { GatewayMetricsShape } from "../Metrics.js"
import type { Position, StreamName } from "../recovery/History.js"
import type { SubscriptionRegistryShape } from "../registry/Subscriptions.js"
import * as Tracing from "../Tracing.js"
import type { PublishTap } from "./Broadcast.js"
import type { Delivery, EventBusShape } from "./Bus.js"
import * as Fanout from "./Fanout.js"
import type * as LocalOrder from "./LocalOrder.js"
import type * as Outbound from "./Outbound.js"
import { recipientsOf, streamOfRoute } from "./Routes.js"
import type { GatewayHooksShape, Publisher } from "./Seams.js"

export interface RemoteDeliveryOptions {
  readonly metrics: GatewayMetricsShape
  readonly registry: SubscriptionRegistryShape
  readonly hooks: GatewayHooksShape
  readonly bus: EventBusShape
  readonly tracing: Tracing.TracingShape
  readonly clock: Clock.Clock
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

/**
 * Remote delivery: the bus's frames to this node's connections, one fiber per node, in arrival order
 * (per publisher: publish order).
 */
export const remoteDelivery = (
  options: RemoteDeliveryOptions,
  publisher: Publisher,
  tapOf: () => PublishTap | undefined,
  order: LocalOrder.LocalOrder
): Effect.Effect<never> => {
  const { metrics, registry, hooks, bus, tracing, clock } = options
  /** Another node's frame to this node's recipients: already built, so only the lookup and the loop. */
  const deliverOne = ({ frame, position, publishedAt, route }: Delivery) =>
    Effect.gen(function* () {
      metrics.busLag(Math.max(0, clock.unsafeCurrentTimeMillis() - publishedAt) / 1000)
      const recipients = yield* recipientsOf(registry, route)
      // A recorded event: positioned for opted-in recipients (held during their replay) as a local one.
      Fanout.broadcast(
        metrics,
        frame,
        recipients,
        position === undefined ? undefined : { stream: streamOfRoute(route), ...position }
      )
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

  const deliverRemote = tracing.enabled ? deliverOneTraced : deliverOne
  /** This node's own recorded event back from the bus: only the place it takes among the others. */
  const deliver = (delivery: Delivery) =>
    !delivery.own
      ? deliverRemote(delivery)
      : delivery.position === undefined
        ? Effect.void
        : deliverAtMarker(delivery.frame, streamOfRoute(delivery.route), delivery.position)
  /** This node's own publish, to its opted-in recipients, where Redis put it among the others. */
  const deliverAtMarker = (frame: Outbound.Frame, stream: StreamName, position: Position) =>
    Effect.map(order.atOwnMarker(stream, position), (optedIn) => {
      if (optedIn.length > 0) Fanout.broadcast(metrics, frame, optedIn, { stream, ...position })
    })

  return Effect.forever(
    Effect.flatMap(Queue.take(bus.deliveries), deliver).pipe(
      Effect.catchAllDefect((defect) => Effect.logError("gateway.bus_delivery.defect", defect))
    )
  )
}
