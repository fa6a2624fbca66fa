/**
 * With the history in Redis, a recorded event reaches this node on two paths: this node's own
 * publishes when Redis answers their append (the history's connection), other nodes' from the bus
 * (the subscriber's connection). Two sockets keep no order between them, yet an opted-in client
 * must see a stream's offsets in order (its SDK drops an offset at or below the last as a
 * duplicate). The bus brings this node's own recorded messages back too, in the order Redis ran the
 * appends, so the opted-in recipients of an own publish get it there, from the one delivery fiber,
 * between the other nodes' events of the stream exactly where Redis put it; legacy connections get
 * it at once, as before. The publisher leaves the opted-in recipients it looked up here (before its
 * `published` hooks, such as a revocation, change them); the fiber, at the marker, waits until the
 * publisher is done with that append (bounded by the append's own timeout) and takes them. What a
 * marker never claims (it was dropped: stale, backlog full, the subscriber down — the same losses as
 * another node's event) is forgotten after `GATEWAY_BUS_MAX_LAG_SECS`, when the marker would be stale.
 */
import { Deferred, Effect } from "effect"
import type { Clock } from "effect"
import type { Position } from "../recovery/History.js"
import type { Connection } from "./Connection.js"

interface Appending {
  /** This node's appends to the stream issued and not yet done with. */
  count: number
  /** The position of the last one done with. */
  last: Position | undefined
}

export interface LocalOrder {
  /** An append of `stream` is about to be issued. */
  readonly appending: (stream: string) => void
  /**
   * That append is done with (`position` undefined: it failed); `optedIn`: its opted-in recipients,
   * which get the event at its marker.
   */
  readonly appended: (
    stream: string,
    position: Position | undefined,
    optedIn: ReadonlyArray<Connection> | undefined
  ) => void
  /** At this node's own marker: waits until the publisher is done with it, then its opted-in recipients. */
  readonly atOwnMarker: (stream: string, position: Position) => Effect.Effect<ReadonlyArray<Connection>>
}

const keyOf = (stream: string, { epoch, offset }: Position) => `${stream}\n${epoch}\n${offset}`

export const make = (clock: Clock.Clock, maxLagMillis: number): LocalOrder => {
  // Only the streams with appends in flight: bounded by the publishes waiting on Redis.
  const inFlight = new Map<string, Appending>()
  // In insertion order, so the oldest are forgotten first.
  const unclaimed = new Map<string, { readonly recipients: ReadonlyArray<Connection>; readonly at: number }>()
  let waiting:
    | { readonly stream: string; readonly position: Position; readonly done: Deferred.Deferred<void> }
    | undefined

  const isDone = (stream: string, position: Position): boolean => {
    const entry = inFlight.get(stream)
    if (entry === undefined) return true
    const last = entry.last
    return last !== undefined && (last.epoch !== position.epoch || last.offset >= position.offset)
  }

  const claim = (stream: string, position: Position): ReadonlyArray<Connection> => {
    const key = keyOf(stream, position)
    const entry = unclaimed.get(key)
    if (entry === undefined) return []
    unclaimed.delete(key)
    return entry.recipients
  }

  return {
    appending: (stream) => {
      const entry = inFlight.get(stream)
      if (entry === undefined) inFlight.set(stream, { count: 1, last: undefined })
      else entry.count++
    },
    appended: (stream, position, optedIn) => {
      const now = clock.unsafeCurrentTimeMillis()
      for (const [key, entry] of unclaimed) {
        if (now - entry.at <= maxLagMillis) break
        unclaimed.delete(key)
      }
      if (position !== undefined && optedIn !== undefined && optedIn.length > 0)
        unclaimed.set(keyOf(stream, position), { recipients: optedIn, at: now })
      const entry = inFlight.get(stream)
      if (entry === undefined) return
      if (--entry.count === 0) inFlight.delete(stream)
      else if (position !== undefined) entry.last = position
      if (waiting !== undefined && waiting.stream === stream && isDone(stream, waiting.position)) {
        Deferred.unsafeDone(waiting.done, Effect.void)
        waiting = undefined
      }
    },
    atOwnMarker: (stream, position) =>
      Effect.suspend(() => {
        if (isDone(stream, position)) return Effect.succeed(claim(stream, position))
        return Effect.flatMap(Deferred.make<void>(), (done) => {
          waiting = { stream, position, done }
          return Effect.as(Deferred.await(done), undefined).pipe(Effect.map(() => claim(stream, position)))
        })
      })
  }
}
