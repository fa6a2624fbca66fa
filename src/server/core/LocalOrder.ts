/**
 * With the history in Redis, a recorded event reaches this node's connections on two paths: this
 * node's own publishes after their append's reply (the history's connection), other nodes' from the
 * bus (the subscriber's connection). Two sockets keep no order between them, yet an opted-in client
 * must see a stream's offsets in order (its SDK drops an offset at or below the last as a duplicate).
 * The bus brings this node's own recorded messages back too, in the order Redis ran the appends:
 * taking one from the queue, the remote delivery waits until this node's local delivery of that
 * publish is done, so every stream reaches this node's connections in offset order. The wait is
 * bounded by the append's own timeout (the local delivery follows its reply or its failure).
 */
import { Deferred, Effect } from "effect"
import type { Position } from "../recovery/History.js"

interface Appending {
  /** This node's appends to the stream issued and not yet delivered locally. */
  count: number
  /** The position of the last one delivered locally. */
  last: Position | undefined
}

export interface LocalOrder {
  /** An append of `stream` is about to be issued. */
  readonly appending: (stream: string) => void
  /** That append's local delivery is done (`position` undefined: it failed, nothing positioned). */
  readonly delivered: (stream: string, position: Position | undefined) => void
  /** Waits until this node's own publish at `position` of `stream` has been delivered locally. */
  readonly awaitOwn: (stream: string, position: Position) => Effect.Effect<void>
}

export const make = (): LocalOrder => {
  // Only the streams with appends in flight: bounded by the publishes waiting on Redis.
  const inFlight = new Map<string, Appending>()
  let waiting:
    | { readonly stream: string; readonly position: Position; readonly done: Deferred.Deferred<void> }
    | undefined

  const isDone = (stream: string, position: Position): boolean => {
    const entry = inFlight.get(stream)
    if (entry === undefined) return true
    const last = entry.last
    return last !== undefined && (last.epoch !== position.epoch || last.offset >= position.offset)
  }

  return {
    appending: (stream) => {
      const entry = inFlight.get(stream)
      if (entry === undefined) inFlight.set(stream, { count: 1, last: undefined })
      else entry.count++
    },
    delivered: (stream, position) => {
      const entry = inFlight.get(stream)
      if (entry === undefined) return
      if (--entry.count === 0) inFlight.delete(stream)
      else if (position !== undefined) entry.last = position
      if (waiting !== undefined && waiting.stream === stream && isDone(stream, waiting.position)) {
        Deferred.unsafeDone(waiting.done, Effect.void)
        waiting = undefined
      }
    },
    awaitOwn: (stream, position) =>
      Effect.suspend(() => {
        if (isDone(stream, position)) return Effect.void
        return Effect.flatMap(Deferred.make<void>(), (done) => {
          waiting = { stream, position, done }
          return Deferred.await(done)
        })
      })
  }
}
