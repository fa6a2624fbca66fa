/**
 * Ingress: a client frame becomes a typed command, synchronously, inside the `ws` `message`
 * callback — rate window, `decodeCommand`, and on failure the metric and the close code. Accepted
 * commands of a connection run in arrival order as one short-lived effect per burst, so a slow
 * AccessPolicy or MessageHandler call delays only that connection; the commands waiting behind it
 * are bounded, and each command is bounded in time. What each command does: `CommandHandlers.ts`.
 */
import { Effect } from "effect"
import type { RawData } from "ws"
import { decodeCommand } from "../../protocol/Commands.js"
import { makeExecuteCommand, type CommandOptions } from "./CommandHandlers.js"
import type { Connection } from "./Connection.js"

export interface IngressOptions extends CommandOptions {
  readonly maxEventBytes: number
  /** Commands a connection may have waiting behind the running one; one more closes it. */
  readonly maxPendingCommands: number
  /** Current time in ms from the Effect `Clock` the gateway runs with. */
  readonly now: () => number
  /** Forks a short-lived effect, owned by the gateway's scope. */
  readonly run: (effect: Effect.Effect<void>) => void
}

export interface Ingress {
  /** The `ws` `message` listener of a connection. */
  readonly onFrame: (connection: Connection, data: RawData, isBinary: boolean) => void
  /** Starts executing commands that arrived before the connection was registered. */
  readonly resume: (connection: Connection) => void
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

  const takeNext = (connection: Connection) =>
    Effect.sync(() => {
      const next = connection.isOpen ? connection.pendingCommands?.shift() : undefined
      if (next === undefined) {
        connection.pendingCommands = undefined
        connection.commandsRunning = false
      }
      return next
    })

  /** Runs the connection's queued commands in order until none is left; then the fiber ends. */
  const drain = (connection: Connection): Effect.Effect<void> =>
    Effect.gen(function* () {
      for (;;) {
        const command = yield* takeNext(connection)
        if (command === undefined) return
        yield* executeCommand(connection, command)
      }
    })

  const schedule = (connection: Connection) => {
    if (connection.commandsRunning || !connection.registered || connection.pendingCommands === undefined)
      return
    connection.commandsRunning = true
    options.run(drain(connection))
  }

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
    resume: schedule
  }
}
