/**
 * The recorded path of a broadcast: a recoverable event is appended to its streams' history, then
 * delivered positioned (`Fanout.deliverPositioned`); with the history in Redis the append also puts
 * it onto the bus, and its opted-in recipients get it at its marker (`LocalOrder`). An append the
 * store could not take is delivered without a position.
 */
import { Effect, Either } from "effect"
import type { UserId } from "../../protocol/Ids.js"
import { userStream } from "../../protocol/Streams.js"
import { PresenceSync, PresenceUpdate } from "../../protocol/events/presence.js"
import {
  VoiceParticipantJoin,
  VoiceParticipantLeave,
  VoiceParticipantSync,
  VoiceParticipantUpdate,
  VoiceStreamPublish,
  VoiceStreamUnpublish
} from "../../protocol/events/voice.js"
import type { GatewayMetricsShape } from "../Metrics.js"
import type { HistoryShape, Position, StreamName } from "../recovery/History.js"
import type { SubscriptionRegistryShape } from "../registry/Subscriptions.js"
import type { PublishTap } from "./Broadcast.js"
import type { EventBusShape, Route } from "./Bus.js"
import type { Connection } from "./Connection.js"
import * as Fanout from "./Fanout.js"
import type { FanoutResult } from "./Fanout.js"
import type * as LocalOrder from "./LocalOrder.js"
import * as Outbound from "./Outbound.js"
import { recipientsOf, streamOf } from "./Routes.js"

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

export interface RecordedDeliveryOptions {
  readonly metrics: GatewayMetricsShape
  readonly registry: SubscriptionRegistryShape
  readonly bus: EventBusShape
  readonly history: HistoryShape
  readonly order: LocalOrder.LocalOrder
  readonly tapOf: () => PublishTap | undefined
}

export interface RecordedDelivery {
  /** A recoverable channel / guild event: appended, looked up and delivered; how many it reached. */
  readonly toRoute: (
    frame: Outbound.Frame,
    route: Exclude<Route, { readonly scope: "user" }>,
    trace?: string
  ) => Effect.Effect<number>
  /** A recoverable user-scoped event: each user's stream appended, then each user's loop. */
  readonly toUsers: (
    frame: Outbound.Frame,
    route: { readonly scope: "user"; readonly userIds: ReadonlyArray<UserId> },
    trace?: string
  ) => Effect.Effect<number>
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
  { bus, order }: RecordedDeliveryOptions,
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
  metrics: GatewayMetricsShape,
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
  options: RecordedDeliveryOptions,
  frame: Outbound.Frame,
  route: Exclude<Route, { readonly scope: "user" }>,
  recipients: ReadonlyArray<Connection>,
  position: Position | undefined,
  trace?: string
): OwnAppend & FanoutResult => {
  const { metrics, bus, history, tapOf } = options
  // An appended event went onto the bus with its position, in the append's step (Redis).
  if (position === undefined || bus.recorded === undefined) bus.publish(route, frame, trace)
  const stream = streamOf(route)
  const at =
    position ??
    (history.appendNow !== undefined ? history.appendNow({ stream, event: recorded(frame) }) : undefined)
  const result = deliverLocally(
    metrics,
    frame,
    recipients,
    stream,
    at,
    position !== undefined && bus.recorded !== undefined
  )
  tapOf()?.(frame, route, recipients.length, "local")
  return result
}

const recorded = (frame: Outbound.Frame) => ({ t: frame.eventType, d: Outbound.payloadText(frame) })

/** The bus message an append publishes in its own step, when the bus has other nodes. */
const busMessage = (bus: EventBusShape, route: Route, frame: Outbound.Frame, trace: string | undefined) =>
  bus.recorded === undefined ? {} : { publish: bus.recorded(route, frame, trace) }

/** A store that appends asynchronously (Redis) appends before the lookup and the loop. */
const appendAsync = (
  { bus, history }: RecordedDeliveryOptions,
  frame: Outbound.Frame,
  route: Exclude<Route, { readonly scope: "user" }>,
  trace: string | undefined
): Effect.Effect<Position | undefined> =>
  history.appendNow !== undefined
    ? Effect.succeed(undefined)
    : history
        .append({ stream: streamOf(route), event: recorded(frame), ...busMessage(bus, route, frame, trace) })
        .pipe(
          Effect.catchAll((error) => Effect.as(appendFailed(frame, streamOf(route), error.detail), undefined))
        )

/** Each user's stream gets the event (in one step where the store can), then each user's loop. */
const deliverToUsers = (
  options: RecordedDeliveryOptions,
  frame: Outbound.Frame,
  route: { readonly scope: "user"; readonly userIds: ReadonlyArray<UserId> },
  trace?: string
): Effect.Effect<number> => {
  const { metrics, registry, bus, history, tapOf } = options
  return Effect.gen(function* () {
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
      tapOf()?.(frame, route, offered, "local")
      return delivered
    }
    if (history.appendNow !== undefined) {
      const appendNow = history.appendNow
      return deliver(shares(streams.map((stream) => appendNow({ stream, event }))))
    }
    return yield* ordered(options, streams, (positions) =>
      Effect.gen(function* () {
        const appended = yield* history.appendAll(
          streams.map((stream, i) => ({
            stream,
            event,
            ...busMessage(bus, { scope: "user", userIds: [route.userIds[i]!] }, frame, trace)
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
}

/** A channel / guild event: its stream appended, then the lookup and this node's loop. */
const deliverToRoute = (
  options: RecordedDeliveryOptions,
  frame: Outbound.Frame,
  target: Exclude<Route, { readonly scope: "user" }>,
  trace?: string
): Effect.Effect<number> =>
  ordered(options, [streamOf(target)], (done) =>
    Effect.flatMap(appendAsync(options, frame, target, trace), (position) =>
      Effect.map(recipientsOf(options.registry, target), (recipients) => {
        const result = deliverRouted(options, frame, target, recipients, position, trace)
        done.push(result)
        // The opted-in recipients get it at its marker, counted as delivered there.
        return result.delivered + (result.optedIn?.length ?? 0)
      })
    )
  )

export const make = (options: RecordedDeliveryOptions): RecordedDelivery => ({
  toRoute: (frame, route, trace) => deliverToRoute(options, frame, route, trace),
  toUsers: (frame, route, trace) => deliverToUsers(options, frame, route, trace)
})
