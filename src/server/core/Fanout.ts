/**
 * Fanout: hand one prebuilt frame to a set of connections in one synchronous loop — no fiber and no
 * Effect per delivery. A connection whose outbox is full is evicted on its own (1008); everyone
 * else keeps receiving in order. Metrics are recorded once per broadcast.
 */
import type { Connection } from "./Connection.js"
import type { GatewayMetricsShape } from "../Metrics.js"
import { withPosition, type FramePosition, type Frame } from "./Outbound.js"

export interface FanoutResult {
  /** Written to the socket or queued in the outbox. */
  readonly delivered: number
  /** Outbox was full: the connection is now closing with `slow_consumer`. */
  readonly evicted: number
  /** The connection was already closing. */
  readonly closed: number
}

/** The bare delivery loop (benchmarks call this directly). */
export const deliver = (frame: Frame, recipients: ReadonlyArray<Connection>): FanoutResult => {
  let delivered = 0
  let evicted = 0
  let closed = 0
  for (let i = 0; i < recipients.length; i++) {
    const result = recipients[i]!.deliver(frame)
    if (result === "sent" || result === "queued") delivered++
    else if (result === "evicted") evicted++
    else closed++
  }
  return { delivered, evicted, closed }
}

/**
 * A recoverable event's loop: a legacy connection gets `frame` as `deliver` gives it (one flag check
 * more); an opted-in one the positioned variant, built once, on the first such recipient.
 */
export const deliverPositioned = (
  frame: Frame,
  position: FramePosition,
  recipients: ReadonlyArray<Connection>
): FanoutResult => {
  let delivered = 0
  let evicted = 0
  let closed = 0
  let positioned: Frame | undefined
  for (let i = 0; i < recipients.length; i++) {
    const connection = recipients[i]!
    const recovery = connection.recovery
    const result =
      recovery === undefined
        ? connection.deliver(frame)
        : recovery.deliver(
            connection,
            position.stream,
            position.offset,
            (positioned ??= withPosition(frame, position))
          )
    if (result === "sent" || result === "queued") delivered++
    else if (result === "evicted") evicted++
    else closed++
  }
  return { delivered, evicted, closed }
}

/** The per-broadcast metrics of a loop that started at `started` (`performance.now()`), per event. */
export const record = (
  metrics: GatewayMetricsShape,
  frame: Frame,
  result: FanoutResult,
  started: number
): void => {
  metrics.fanoutDuration(frame.scope, (performance.now() - started) / 1000)
  // A batch's recipient received (or lost) each of its events.
  const events = frame.events ?? 1
  metrics.emitted(frame.scope, frame.eventType, result.delivered * events)
  metrics.dropped(frame.scope, frame.eventType, "full_queue", result.evicted * events)
  metrics.dropped(frame.scope, frame.eventType, "closed", result.closed * events)
}

/**
 * `deliver` (or, with a position, `deliverPositioned`) plus the per-broadcast metrics: emitted,
 * dropped (`full_queue`, `closed`), duration.
 */
export const broadcast = (
  metrics: GatewayMetricsShape,
  frame: Frame,
  recipients: ReadonlyArray<Connection>,
  position?: FramePosition
): FanoutResult => {
  const started = performance.now()
  const result =
    position === undefined ? deliver(frame, recipients) : deliverPositioned(frame, position, recipients)
  record(metrics, frame, result, started)
  return result
}

/**
 * A recoverable event's loop on its publishing node when opted-in connections get it later, at its
 * marker (`LocalOrder`): legacy connections get `frame` now; the opted-in ones are returned (an array
 * only when there is one).
 */
export const deliverLegacy = (
  frame: Frame,
  recipients: ReadonlyArray<Connection>
): FanoutResult & { readonly optedIn: ReadonlyArray<Connection> | undefined } => {
  let delivered = 0
  let evicted = 0
  let closed = 0
  let optedIn: Array<Connection> | undefined
  for (let i = 0; i < recipients.length; i++) {
    const connection = recipients[i]!
    if (connection.recovery !== undefined) {
      ;(optedIn ??= []).push(connection)
      continue
    }
    const result = connection.deliver(frame)
    if (result === "sent" || result === "queued") delivered++
    else if (result === "evicted") evicted++
    else closed++
  }
  return { delivered, evicted, closed, optedIn }
}
