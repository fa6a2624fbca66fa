/**
 * A broadcast's path through this node, both ways. Published here (`Publisher`): encode once, the
 * `publishing` hooks, the registry's recipients, onto the bus, one local delivery loop, the
 * `published` hooks. Arrived from another node (`deliverRemote`): the frame is already built, so only
 * the lookup and the loop (and the `published` hooks for the events they act on).
 */
import { Duration, Effect, Either, Option, ParseResult, Queue, Tracer } from "effect"
import type { Clock } from "effect"
import type { EventDefinition, PayloadOf } from "../../protocol/EventDefinition.js"
import { decodePayload } from "../../protocol/EventDefinition.js"
import { Manifest } from "../../protocol/Manifest.js"
import type { ChannelId, GuildId, UserId } from "../../protocol/Ids.js"
import { channelStream, guildStream, userStream } from "../../protocol/Streams.js"
import type { OutboundError, PublishError } from "../Errors.js"
import type { GatewayMetricsShape } from "../Metrics.js"
import type { HistoryShape, Position, StreamName } from "../recovery/History.js"
import type { SubscriptionRegistryShape } from "../registry/Subscriptions.js"
import { PresenceSync, PresenceUpdate } from "../../protocol/events/presence.js"
import {
  VoiceParticipantJoin,
  VoiceParticipantLeave,
  VoiceParticipantSync,
  VoiceParticipantUpdate,
  VoiceStreamPublish,
  VoiceStreamUnpublish
} from "../../protocol/events/voice.js"
import * as Tracing from "../Tracing.js"
import type { Delivery, EventBusShape, Route } from "./Bus.js"
import type { Connection, DeliveryResult } from "./Connection.js"
import * as Fanout from "./Fanout.js"
import type { FanoutResult } from "./Fanout.js"
import * as LocalOrder from "./LocalOrder.js"
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

/**
 * Presence and voice are state, not history: after a reconnect they arrive as fresh snapshots, so
 * they are never recorded nor positioned. Every other event of the publish path is recoverable.
 */
const STATE_EVENTS: ReadonlySet<string> = new Set([
  PresenceSync.type,
  PresenceUpdate.type,
  VoiceParticipantSync.type,
  VoiceParticipantJoin.type,
  VoiceParticipantLeave.type,
  VoiceParticipantUpdate.type,
  VoiceStreamPublish.type,
  VoiceStreamUnpublish.type
])

export const isRecoverable = (eventType: string): boolean => !STATE_EVENTS.has(eventType)

/** The one stream of a channel or guild route. */
const streamOf = (route: Exclude<Route, { readonly scope: "user" }>): StreamName =>
  (route.scope === "channel"
    ? channelStream(route.guildId, route.channelId)
    : guildStream(route.guildId)) as StreamName

/** The one stream of a route that names one stream (a user route: its first user). */
const streamOfRoute = (route: Route): StreamName =>
  route.scope === "user" ? (userStream(route.userIds[0]!) as StreamName) : streamOf(route)

/** What became of one of this node's appends: its position, the opted-in recipients its marker serves. */
interface OwnAppend {
  readonly position: Position | undefined
  readonly optedIn: ReadonlyArray<Connection> | undefined
}

/** One user's share of a user-scoped broadcast: their connections and their stream's position. */
interface UserShare {
  readonly stream: StreamName
  readonly position: Position | undefined
  readonly recipients: ReadonlyArray<Connection>
}

export const make = (options: BroadcastOptions): Broadcast => {
  const { maxEventBytes: maxBytes, metrics, registry, hooks, bus, tracing, history } = options
  // Undefined unless an inspector is looking: a publish then pays one comparison.
  let publishTap: PublishTap | undefined
  const order = LocalOrder.make(options.clock, Duration.toMillis(options.busMaxLag))

  /**
   * An append whose message goes onto the bus in the append's step (Redis): its local delivery is
   * awaited by the remote deliveries behind it (`LocalOrder`), once it is done or failed.
   */
  /** Encodes once. A built frame is returned as is (an `Either` is an Effect): nothing to allocate. */
  const build = <E extends EventDefinition>(
    event: E,
    payload: PayloadOf<E>
  ): Effect.Effect<Outbound.Frame, OutboundError> => {
    const encoded = Outbound.encode(event, payload, maxBytes)
    return Either.isRight(encoded) ? encoded : buildFailed(metrics, event, encoded.left)
  }

  /** An append the store could not take: delivered without a position (logged), never lost live. */
  const appendFailed = (frame: Outbound.Frame, stream: string, detail: string) =>
    Effect.logWarning("gateway.history.append_failed").pipe(
      Effect.annotateLogs({ event_type: frame.eventType, stream, detail })
    )

  /**
   * Appends whose messages go onto the bus in the append's step (Redis): `done[i]` is what became of
   * `streams[i]` (its position, the opted-in recipients its marker delivers to), told to `LocalOrder`
   * once the local delivery is done or failed.
   */
  const ordered = <A>(
    streams: ReadonlyArray<StreamName>,
    appendAndDeliver: (done: Array<OwnAppend>) => Effect.Effect<A>
  ): Effect.Effect<A> => {
    if (bus.recorded === undefined) return appendAndDeliver([])
    for (const stream of streams) order.appending(stream)
    const done: Array<OwnAppend> = []
    return Effect.ensuring(
      appendAndDeliver(done),
      Effect.sync(() =>
        streams.forEach((stream, i) => order.appended(stream, done[i]?.position, done[i]?.optedIn))
      )
    )
  }

  /**
   * This node's loop of a recoverable event: positioned for opted-in connections, or, when its
   * marker comes back from the bus (Redis), legacy connections now and the opted-in ones there.
   */
  const deliverLocally = (
    frame: Outbound.Frame,
    recipients: ReadonlyArray<Connection>,
    stream: StreamName,
    position: Position | undefined,
    marked: boolean
  ): OwnAppend & FanoutResult => {
    if (position === undefined || !marked) {
      const result = Fanout.broadcast(
        metrics,
        frame,
        recipients,
        position === undefined ? undefined : { stream, ...position }
      )
      return { ...result, position, optedIn: undefined }
    }
    const started = performance.now()
    const result = Fanout.deliverLegacy(frame, recipients)
    Fanout.record(metrics, frame, result, started)
    return { ...result, position }
  }

  const deliverRouted = (
    frame: Outbound.Frame,
    route: Exclude<Route, { readonly scope: "user" }>,
    recipients: ReadonlyArray<Connection>,
    position: Position | undefined,
    trace?: string
  ): OwnAppend & FanoutResult => {
    // An appended event went onto the bus with its position, in the append's step (Redis).
    if (position === undefined || bus.recorded === undefined) bus.publish(route, frame, trace)
    const stream = streamOf(route)
    const at =
      position ??
      (history.appendNow !== undefined ? history.appendNow({ stream, event: recorded(frame) }) : undefined)
    const result = deliverLocally(
      frame,
      recipients,
      stream,
      at,
      position !== undefined && bus.recorded !== undefined
    )
    if (publishTap !== undefined) publishTap(frame, route, recipients.length, "local")
    return result
  }

  const recorded = (frame: Outbound.Frame) => ({ t: frame.eventType, d: Outbound.payloadText(frame) })

  /** The bus message an append publishes in its own step, when the bus has other nodes. */
  const busMessage = (route: Route, frame: Outbound.Frame, trace: string | undefined) =>
    bus.recorded === undefined ? {} : { publish: bus.recorded(route, frame, trace) }

  /** A store that appends asynchronously (Redis) appends before the lookup and the loop. */
  const appendAsync = (
    frame: Outbound.Frame,
    route: Exclude<Route, { readonly scope: "user" }>,
    trace: string | undefined
  ): Effect.Effect<Position | undefined> =>
    history.appendNow !== undefined
      ? Effect.succeed(undefined)
      : history
          .append({ stream: streamOf(route), event: recorded(frame), ...busMessage(route, frame, trace) })
          .pipe(
            Effect.catchAll((error) =>
              Effect.as(appendFailed(frame, streamOf(route), error.detail), undefined)
            )
          )

  /** Each user's stream gets the event (in one step where the store can), then each user's loop. */
  const deliverToUsers = (
    frame: Outbound.Frame,
    route: { readonly scope: "user"; readonly userIds: ReadonlyArray<UserId> },
    trace?: string
  ): Effect.Effect<number> =>
    Effect.gen(function* () {
      const event = recorded(frame)
      const streams = route.userIds.map((userId) => userStream(userId) as StreamName)
      const lists = yield* Effect.forEach(route.userIds, (userId) => registry.userMembers(userId))
      const shares = (positions: ReadonlyArray<Position | undefined>): Array<UserShare> =>
        streams.map((stream, i) => ({ stream, position: positions[i], recipients: lists[i]! }))
      const deliver = (shares: ReadonlyArray<UserShare>, own: Array<OwnAppend> = []) => {
        // The appended users' streams went onto the bus with their positions, in the append's step.
        const unpublished =
          bus.recorded === undefined
            ? route.userIds
            : route.userIds.filter((_, i) => shares[i]!.position === undefined)
        if (unpublished.length > 0) bus.publish({ scope: "user", userIds: unpublished }, frame, trace)
        const started = performance.now()
        let delivered = 0
        let evicted = 0
        let closed = 0
        let offered = 0
        const marked = bus.recorded !== undefined
        for (const { position, recipients, stream } of shares) {
          let optedIn: ReadonlyArray<Connection> | undefined
          let result: FanoutResult
          if (position === undefined) result = Fanout.deliver(frame, recipients)
          else if (!marked) result = Fanout.deliverPositioned(frame, { stream, ...position }, recipients)
          else ({ optedIn, ...result } = Fanout.deliverLegacy(frame, recipients))
          own.push({ position, optedIn })
          delivered += result.delivered + (optedIn?.length ?? 0)
          evicted += result.evicted
          closed += result.closed
          offered += recipients.length
        }
        Fanout.record(metrics, frame, { delivered, evicted, closed }, started)
        if (publishTap !== undefined) publishTap(frame, route, offered, "local")
        return delivered
      }
      if (history.appendNow !== undefined) {
        const appendNow = history.appendNow
        return deliver(shares(streams.map((stream) => appendNow({ stream, event }))))
      }
      return yield* ordered(streams, (positions) =>
        Effect.gen(function* () {
          const appended = yield* history.appendAll(
            streams.map((stream, i) => ({
              stream,
              event,
              ...busMessage({ scope: "user", userIds: [route.userIds[i]!] }, frame, trace)
            }))
          )
          const appendedAt: Array<Position | undefined> = []
          for (let i = 0; i < appended.length; i++) {
            const result = appended[i]!
            if (Either.isRight(result)) appendedAt.push(result.right)
            else {
              appendedAt.push(undefined)
              yield* appendFailed(frame, streams[i]!, result.left.detail)
            }
          }
          return deliver(shares(appendedAt), positions)
        })
      )
    })

  /** Recipients and delivery of a built frame, recoverable or not. */
  const route = (
    event: EventDefinition,
    frame: Outbound.Frame,
    target: Route,
    trace?: string
  ): Effect.Effect<number> => {
    if (!isRecoverable(event.type)) {
      return Effect.map(recipientsOf(registry, target), (recipients) => {
        // Onto the bus first: other nodes send to their recipients while this one loops over its own.
        bus.publish(target, frame, trace)
        const { delivered } = Fanout.broadcast(metrics, frame, recipients)
        if (publishTap !== undefined) publishTap(frame, target, recipients.length, "local")
        return delivered
      })
    }
    if (target.scope === "user") return deliverToUsers(frame, target, trace)
    return ordered([streamOf(target)], (done) =>
      Effect.flatMap(appendAsync(frame, target, trace), (position) =>
        Effect.map(recipientsOf(registry, target), (recipients) => {
          const result = deliverRouted(frame, target, recipients, position, trace)
          done.push(result)
          // The opted-in recipients get it at its marker, counted as delivered there.
          return result.delivered + (result.optedIn?.length ?? 0)
        })
      )
    )
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
    deliverRemote: remoteDelivery(options, publisher, () => publishTap, order),
    setTap: (tap) => {
      publishTap = tap
    }
  }
}
