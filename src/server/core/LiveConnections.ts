/**
 * The node's live connections — those whose socket has not emitted `close` yet — and what happens
 * to them over time: the single heartbeat sweep (token expiry, pong deadline, pings, and the commands
 * that ran past their timeout: `Ingress.timeOutCommands`) and the drain
 * on shutdown (refuse new upgrades, close everyone with 1001, wait a bounded grace, drop the rest).
 */
import { Clock, Duration, Effect, Schedule } from "effect"
import type { GatewayConfigShape } from "../Config.js"
import type { Connection } from "./Connection.js"

export interface LiveConnections {
  /** False once drain has begun. */
  readonly isAccepting: () => boolean
  readonly size: () => number
  readonly add: (connection: Connection) => void
  /** The socket emitted `close`. */
  readonly closed: (connection: Connection) => void
  /** Runs the heartbeat sweep every `GATEWAY_HEARTBEAT_SWEEP_MS` (fork it in the gateway's scope). */
  readonly heartbeat: Effect.Effect<unknown>
  /** Stops accepting, closes every connection with 1001 and waits for them, at most the close grace. */
  readonly drain: Effect.Effect<void>
}

export const make = (
  config: Pick<GatewayConfigShape, "pingInterval" | "pongTimeout" | "heartbeatSweep" | "closeGrace">,
  /** Also run by every sweep, with its time. */
  sweepAlso: (now: number) => Effect.Effect<void>
): LiveConnections => {
  const live = new Set<Connection>()
  let onAllClosed: (() => void) | undefined
  let accepting = true
  const pingIntervalMillis = Duration.toMillis(config.pingInterval)
  const pongTimeoutMillis = Duration.toMillis(config.pongTimeout)

  /** One pass over every connection: token expiry (4010), pong deadline (4009), pings. */
  const sweep = Effect.flatMap(Clock.currentTimeMillis, (now) =>
    Effect.sync(() => {
      for (const connection of live) {
        if (!connection.isOpen) continue
        if (now >= connection.principal.expiresAt) connection.close("token_expired")
        else if (connection.pingSentAt !== undefined) {
          if (now - connection.pingSentAt >= pongTimeoutMillis) connection.close("heartbeat_timeout")
        } else if (now - connection.lastPingAt >= pingIntervalMillis) connection.ping(now)
      }
    }).pipe(Effect.zipRight(sweepAlso(now)))
  )

  const allClosed = Effect.async<void>((resume) => {
    if (live.size === 0) return resume(Effect.void)
    onAllClosed = () => resume(Effect.void)
  })

  return {
    isAccepting: () => accepting,
    size: () => live.size,
    add: (connection) => {
      live.add(connection)
    },
    closed: (connection) => {
      live.delete(connection)
      if (live.size === 0) onAllClosed?.()
    },
    heartbeat: Effect.repeat(
      sweep.pipe(Effect.catchAllDefect((defect) => Effect.logError("gateway.heartbeat.defect", defect))),
      Schedule.spaced(config.heartbeatSweep)
    ),
    // Writers flush while the close handshakes run; whoever is left after the grace is dropped.
    drain: Effect.gen(function* () {
      accepting = false
      for (const connection of live) connection.close("going_away")
      // Finalizers are uninterruptible: only an interruptible wait lets the grace timeout win.
      yield* Effect.timeout(Effect.interruptible(allClosed), config.closeGrace).pipe(Effect.ignore)
      for (const connection of live) connection.terminate()
      live.clear()
    })
  }
}
