/**
 * Fanout: hand one prebuilt frame to a set of connections in one synchronous loop — no fiber and no
 * Effect per delivery. A connection whose outbox is full is evicted on its own (1008); everyone
 * else keeps receiving in order. Metrics are recorded once per broadcast.
 */
import type { Connection } from "./Connection.js"
import type { GatewayMetricsShape } from "../Metrics.js"
import type { Frame } from "./Outbound.js"

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

/** `deliver` plus the per-broadcast metrics: emitted, dropped (`full_queue`, `closed`), duration. */
export const broadcast = (
  metrics: GatewayMetricsShape,
  frame: Frame,
  recipients: ReadonlyArray<Connection>
): FanoutResult => {
  const started = performance.now()
  const result = deliver(frame, recipients)
  metrics.fanoutDuration(frame.scope, (performance.now() - started) / 1000)
  metrics.emitted(frame.scope, frame.eventType, result.delivered)
  metrics.dropped(frame.scope, frame.eventType, "full_queue", result.evicted)
  metrics.dropped(frame.scope, frame.eventType, "closed", result.closed)
  return result
}
