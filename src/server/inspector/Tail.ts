/**
 * The live tail hub: viewers watching a guild, a channel or a user. The gateway's publish tap hands
 * every broadcast here once per event; with no viewer the tap is not even installed. For each
 * viewer whose filter matches, the event is sampled (at most `GATEWAY_ADMIN_TAIL_EVENTS_PER_SEC`,
 * the rest counted as skipped) and offered to the viewer's bounded queue (`GATEWAY_ADMIN_TAIL_QUEUE`,
 * dropping: a slow tab loses its own events and never holds up a fanout). Decoding and checking the
 * payload against the manifest happen later, on the viewer's own stream.
 */
import { HttpServerResponse } from "@effect/platform"
import { Duration, Effect, Either, HashMap, Option, ParseResult, Queue, Schedule, Stream } from "effect"
import type { Scope } from "effect"
import { decodePayload, type EventDefinition } from "../../protocol/EventDefinition.js"
import { Manifest } from "../../protocol/Manifest.js"
import type { ChannelId, GuildId, UserId } from "../../protocol/Ids.js"
import type { Route } from "../core/Bus.js"
import * as MemberList from "../registry/MemberList.js"
import type { Frame } from "../core/Outbound.js"
import type { RegistryState } from "../registry/Indexes.js"
import { channelKey, holdsGuild } from "../registry/Indexes.js"

export type TailFilter =
  | { readonly kind: "guild"; readonly guildId: GuildId; readonly channelId?: ChannelId }
  | { readonly kind: "user"; readonly userId: UserId }

interface Tapped {
  readonly frame: Frame
  readonly route: Route
  readonly recipients: number
  readonly origin: "local" | "bus"
  readonly at: number
  /** The viewer's skipped and dropped counts when this event was offered. */
  readonly skipped: number
  readonly dropped: number
}

interface Viewer {
  readonly filter: TailFilter
  readonly queue: Queue.Queue<Tapped>
  tokens: number
  refilledAt: number
  skipped: number
  dropped: number
}

/** One event as the page shows it. */
export interface TailEvent {
  readonly t: string
  readonly scope: string
  readonly route: Route
  readonly origin: "local" | "bus"
  readonly at: number
  /** Envelope size in bytes (as sent). */
  readonly bytes: number
  readonly recipients: number
  readonly payload: unknown
  /** Whether the payload passes its manifest schema strictly; the first error if not. */
  readonly valid: boolean
  readonly error?: string
  /** Events this viewer was not sent before this one: over its sampling rate, or its queue full. */
  readonly skipped: number
  readonly dropped: number
}

export interface TailOptions {
  readonly maxViewers: number
  readonly eventsPerSecond: number
  readonly queue: number
  /** Current time in ms from the Effect `Clock`. */
  readonly now: () => number
  /** The registry's current state, synchronously (a user filter follows the user's subscriptions). */
  readonly registryState: () => RegistryState
  /** Called when the hub goes from no viewer to one, or back. */
  readonly onActivity: () => void
}

export interface TailHub {
  readonly viewers: () => number
  /**
   * Opens a viewer in the current scope (closed with it), or `undefined` when `maxViewers` are open.
   * Its events are taken with `take`.
   */
  readonly open: (
    filter: TailFilter
  ) => Effect.Effect<{ readonly take: Effect.Effect<TailEvent> } | undefined, never, Scope.Scope>
  /** The publish tap's per-event call. */
  readonly offer: (frame: Frame, route: Route, recipients: number, origin: "local" | "bus") => void
}

const userReceives = (state: RegistryState, userId: UserId, route: Route): boolean => {
  if (route.scope === "user") return route.userIds.includes(userId)
  const members = HashMap.get(state.users, userId)
  if (Option.isNone(members)) return false
  const key = route.scope === "channel" ? channelKey(route.guildId, route.channelId) : undefined
  for (const connection of MemberList.toArray(members.value)) {
    const entry = HashMap.get(state.connections, connection.id)
    if (Option.isNone(entry)) continue
    if (key !== undefined ? entry.value.channels.has(key) : holdsGuild(entry.value.channels, route.guildId))
      return true
  }
  return false
}

const matches = (filter: TailFilter, route: Route, state: () => RegistryState): boolean => {
  if (filter.kind === "user") return userReceives(state(), filter.userId, route)
  if (route.scope === "user" || route.guildId !== filter.guildId) return false
  // A channel's subscribers receive the guild's guild-scoped events too.
  return route.scope === "guild" || filter.channelId === undefined || route.channelId === filter.channelId
}

/** The envelope of a built frame, decoded and checked against the manifest. */
const describe = (item: Tapped): TailEvent => {
  const text = item.frame.wire.toString("utf8", item.frame.wire.length - item.frame.bytes)
  const envelope = JSON.parse(text) as { readonly t: string; readonly d: unknown }
  const event: EventDefinition | undefined = Manifest.lookup(envelope.t)
  const checked =
    event === undefined
      ? Either.left(`"${envelope.t}" is not in the manifest`)
      : Either.mapLeft(decodePayload(event, envelope.d, { strict: true }), (error) =>
          ParseResult.TreeFormatter.formatErrorSync(error)
        )
  return {
    t: envelope.t,
    scope: item.frame.scope,
    route: item.route,
    origin: item.origin,
    at: item.at,
    bytes: item.frame.bytes,
    recipients: item.recipients,
    payload: envelope.d,
    valid: Either.isRight(checked),
    ...(Either.isLeft(checked) ? { error: checked.left } : {}),
    skipped: item.skipped,
    dropped: item.dropped
  }
}

export const make = (options: TailOptions): TailHub => {
  const viewers = new Set<Viewer>()
  const capacity = options.eventsPerSecond
  return {
    viewers: () => viewers.size,
    open: (filter) =>
      Effect.acquireRelease(
        Effect.gen(function* () {
          if (viewers.size >= options.maxViewers) return undefined
          const viewer: Viewer = {
            filter,
            queue: yield* Queue.dropping<Tapped>(options.queue),
            tokens: capacity,
            refilledAt: options.now(),
            skipped: 0,
            dropped: 0
          }
          viewers.add(viewer)
          if (viewers.size === 1) options.onActivity()
          return viewer
        }),
        (viewer) =>
          viewer === undefined
            ? Effect.void
            : Effect.zipRight(
                Queue.shutdown(viewer.queue),
                Effect.sync(() => {
                  viewers.delete(viewer)
                  if (viewers.size === 0) options.onActivity()
                })
              )
      ).pipe(
        Effect.map((viewer) =>
          viewer === undefined ? undefined : { take: Effect.map(Queue.take(viewer.queue), describe) }
        )
      ),
    offer: (frame, route, recipients, origin) => {
      const at = options.now()
      for (const viewer of viewers) {
        if (!matches(viewer.filter, route, options.registryState)) continue
        viewer.tokens = Math.min(capacity, viewer.tokens + ((at - viewer.refilledAt) * capacity) / 1000)
        viewer.refilledAt = at
        if (viewer.tokens < 1) {
          viewer.skipped++
          continue
        }
        viewer.tokens -= 1
        const item = {
          frame,
          route,
          recipients,
          origin,
          at,
          skipped: viewer.skipped,
          dropped: viewer.dropped
        }
        if (!Queue.unsafeOffer(viewer.queue, item)) viewer.dropped++
      }
    }
  }
}

const TAIL_KEEPALIVE = Duration.seconds(15)

/**
 * A viewer's tail as server-sent events: `ready` with the filter, then a `tail` event per sampled
 * event (a comment every 15 s keeps proxies from closing it), or one `error` when the viewers are
 * at their cap by the time the stream starts. The viewer's queue ends with the response.
 */
export const eventStream = (hub: TailHub, filter: TailFilter, node: string) => {
  const sse = (event: string, data: unknown) => `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`
  const events = Stream.unwrapScoped(
    Effect.map(hub.open(filter), (viewer) =>
      viewer === undefined
        ? Stream.make(sse("error", { error: "too_many_viewers" }))
        : Stream.concat(
            Stream.make(sse("ready", { filter, node })),
            Stream.repeatEffect(Effect.map(viewer.take, (event) => sse("tail", event)))
          ).pipe(
            Stream.merge(
              Stream.fromSchedule(Schedule.spaced(TAIL_KEEPALIVE)).pipe(Stream.as(": keepalive\n\n"))
            )
          )
    )
  )
  return HttpServerResponse.stream(Stream.encodeText(events), {
    contentType: "text/event-stream",
    headers: { "x-accel-buffering": "no" }
  })
}
