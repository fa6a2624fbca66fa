/**
 * Ingress: a client frame becomes a typed command, synchronously, inside the `ws` `message`
 * callback — rate window, `decodeCommand`, and on failure the metric and the close code. Accepted
 * commands of a connection run in arrival order as one short-lived effect per burst, started
 * synchronously, so a slow AccessPolicy or MessageHandler call delays only that connection; the
 * commands waiting behind it are bounded, and the heartbeat sweep bounds each command in time.
 * What each command does: `CommandHandlers.ts`.
 */
import { Duration, Effect } from "effect"
import type { Fiber } from "effect"
import type { RawData } from "ws"
import { decodeCommand, type Command } from "../../protocol/Commands.js"
import { makeExecuteCommand, type CommandOptions } from "./CommandHandlers.js"
import { corkUntilNextTick, type Connection } from "./Connection.js"

export interface IngressOptions extends CommandOptions {
  readonly maxEventBytes: number
  /** Commands a connection may have waiting behind the running one; one more closes it. */
  readonly maxPendingCommands: number
  /** How long one command may run before it is interrupted and its connection closed (4012). */
  readonly commandTimeout: Duration.Duration
  /** Current time in ms from the Effect `Clock` the gateway runs with. */
  readonly now: () => number
  /** Forks a short-lived effect, owned by the gateway's scope; it starts running at once. */
  readonly run: (effect: Effect.Effect<void>) => Fiber.RuntimeFiber<void>
}

export interface Ingress {
  /** The `ws` `message` listener of a connection. */
  readonly onFrame: (connection: Connection, data: RawData, isBinary: boolean) => void
  /** Starts executing commands that arrived before the connection was registered. */
  readonly resume: (connection: Connection) => void
  /**
   * Interrupts each command that has run `commandTimeout` or longer by `now` and closes its
   * connection (4012); the heartbeat sweep runs it, so a timeout fires within one sweep period.
   */
  readonly timeOutCommands: (now: number) => Effect.Effect<void>
}

const fatalUtf8 = new TextDecoder("utf-8", { fatal: true })

const frameText = (data: RawData, isBinary: boolean): string | undefined => {
  const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data)
  // ws has validated text frames; binary frames are parsed as JSON text like the original does.
  if (!isBinary) return bytes.toString("utf8")
  try {
    return fatalUtf8.decode(bytes)
  } catch {
    return undefined
  }
}

export const make = (options: IngressOptions): Ingress => {
  const { metrics } = options

  const executeCommand = makeExecuteCommand(options)
  const commandTimeoutMillis = Duration.toMillis(options.commandTimeout)
  /** The bursts that had to wait (a host call), by connection: the only ones a timeout can catch. */
  const waiting = new Map<Connection, Fiber.RuntimeFiber<void>>()

  /** The connection's next command, now running; `undefined` (and the burst over) when none is left. */
  const takeNext = (connection: Connection) => {
    const next = connection.isOpen ? connection.pendingCommands?.shift() : undefined
    if (next === undefined) {
      connection.pendingCommands = undefined
      connection.runningCommand = undefined
      if (waiting.size > 0) waiting.delete(connection)
    } else {
      connection.runningCommand = next
      connection.commandStartedAt = options.now()
    }
    return next
  }

  /** Runs `command`, then the connection's queued commands in order until none is left. */
  const drain = (connection: Connection, command: Command): Effect.Effect<void> =>
    Effect.flatMap(executeCommand(connection, command), () => {
      const next = takeNext(connection)
      return next === undefined ? Effect.void : drain(connection, next)
    })

  /**
   * Starts the burst: its fiber runs at once, inside this `ws` callback, as far as it can without
   * waiting; only a burst that has to wait (a host call) is kept, for `timeOutCommands`.
   */
  const schedule = (connection: Connection) => {
    if (connection.runningCommand !== undefined || !connection.registered) return
    const first = takeNext(connection)
    if (first === undefined) return
    const fiber = options.run(drain(connection, first))
    if (connection.runningCommand !== undefined) waiting.set(connection, fiber)
  }

  const timeOut = (connection: Connection, fiber: Fiber.RuntimeFiber<void>) =>
    Effect.fiberIdWith((sweeper) =>
      Effect.sync(() => {
        waiting.delete(connection)
        // Not awaited: an uninterruptible host call must not stall the sweep every connection needs.
        fiber.unsafeInterruptAsFork(sweeper)
        connection.close("command_timeout")
      })
    ).pipe(
      Effect.zipRight(Effect.logWarning("gateway.command.timeout")),
      Effect.annotateLogs({
        user_id: connection.userId,
        command: connection.runningCommand?._tag,
        timeout_ms: commandTimeoutMillis
      })
    )

  const timeOutCommands = (now: number): Effect.Effect<void> =>
    Effect.suspend(() => {
      if (waiting.size === 0) return Effect.void
      const expired: Array<Effect.Effect<void>> = []
      for (const [connection, fiber] of waiting) {
        if (now - connection.commandStartedAt >= commandTimeoutMillis)
          expired.push(timeOut(connection, fiber))
      }
      return Effect.all(expired, { discard: true })
    })

  return {
    onFrame: (connection, data, isBinary) => {
      if (!connection.isOpen) return
      if (!connection.admitFrame(options.now())) {
        metrics.rateLimitHit("ingress")
        connection.close("ingress_rate_limited")
        return
      }
      const text = frameText(data, isBinary)
      if (text === undefined) {
        metrics.parseRejected("invalid_envelope")
        connection.close("invalid_envelope")
        return
      }
      const decoded = decodeCommand(text, options.maxEventBytes)
      if (decoded._tag === "Right") {
        const pending = (connection.pendingCommands ??= [])
        // The rate window does not bound this queue: behind a hanging command it would grow every window.
        if (pending.length >= options.maxPendingCommands) {
          connection.close("command_queue_full")
          options.run(
            Effect.logWarning("gateway.command.queue_full").pipe(
              Effect.annotateLogs({ user_id: connection.userId, pending: pending.length })
            )
          )
          return
        }
        pending.push(decoded.right)
        // The answers of the commands in this read (acks, syncs) leave in one write.
        corkUntilNextTick(connection.transport)
        schedule(connection)
        return
      }
      const rejection = decoded.left
      switch (rejection.reason) {
        case "event_too_large":
          break
        case "unknown_event":
          metrics.unknownReceived(rejection.eventType ?? "")
          break
        default:
          metrics.parseRejected(rejection.reason)
      }
      connection.close(rejection.reason)
    },
    resume: schedule,
    timeOutCommands
  }
}
