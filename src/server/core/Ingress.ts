/**
 * Ingress: a client frame becomes a typed command, synchronously, inside the `ws` `message`
 * callback — rate window, `decodeCommand`, and on failure the metric and the close code. Accepted
 * commands of a connection run in arrival order as one short-lived effect per burst, so a slow
 * AccessPolicy or MessageHandler call delays only that connection; the commands waiting behind it
 * are bounded, and each command is bounded in time.
 */
import { Cause, Duration, Effect } from "effect"
import type { RawData } from "ws"
import type {
  Command,
  MessageCreateCommand,
  SubscribeCommand,
  UnsubscribeCommand
} from "../../protocol/Commands.js"
import { decodeCommand } from "../../protocol/Commands.js"
import { Subscribed, Unsubscribed } from "../../protocol/events/connection.js"
import { MessageCreate } from "../../protocol/events/message.js"
import type { AccessPolicyShape, MessageHandlerShape, Publisher, GatewayHooksShape } from "./Seams.js"
import { CommandTimeout, MessageRejected, type OutboundError } from "../Errors.js"
import type { Connection } from "./Connection.js"
import type { GatewayMetricsShape } from "../Metrics.js"
import type { SubscriptionRegistryShape } from "../registry/Subscriptions.js"
import type { TracingShape } from "../Tracing.js"

export interface IngressOptions {
  readonly maxEventBytes: number
  /** Commands a connection may have waiting behind the running one; one more closes it. */
  readonly maxPendingCommands: number
  /** How long one command may run before the connection is closed. */
  readonly commandTimeout: Duration.Duration
  readonly metrics: GatewayMetricsShape
  readonly registry: SubscriptionRegistryShape
  readonly access: AccessPolicyShape
  readonly messages: MessageHandlerShape
  readonly hooks: GatewayHooksShape
  readonly publisher: Publisher
  readonly tracing: TracingShape
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
  const { access, hooks, metrics, publisher, registry } = options

  const subscribe = (connection: Connection, command: SubscribeCommand) =>
    Effect.gen(function* () {
      const { channel_id: channelId, guild_id: guildId } = command
      const allowed = yield* access.canSubscribe(connection.principal, guildId, channelId)
      if (!allowed) {
        metrics.subscribeRejected("forbidden")
        return yield* Effect.logWarning("gateway.subscribe.rejected: forbidden_channel").pipe(
          Effect.annotateLogs({ user_id: connection.userId, guild_id: guildId, channel_id: channelId })
        )
      }
      const outcome = yield* registry.subscribe(connection, guildId, channelId)
      if (outcome._tag === "NotConnected") return
      if (outcome._tag === "Revoked") {
        metrics.subscribeRejected("revoked")
        return yield* Effect.logWarning("gateway.subscribe.rejected: revoked").pipe(
          Effect.annotateLogs({ user_id: connection.userId, guild_id: guildId, channel_id: channelId })
        )
      }
      if (outcome._tag === "SubscriptionLimit") {
        metrics.subscribeRejected("subscription_limit")
        return yield* Effect.logWarning("gateway.subscribe.rejected: subscription_limit").pipe(
          Effect.annotateLogs({ user_id: connection.userId, guild_id: guildId, channel_id: channelId })
        )
      }
      const change = { connection, guildId, channelId, outcome }
      yield* hooks.beforeAck(change, publisher)
      yield* publisher.send(connection, Subscribed, { guild_id: guildId, channel_id: channelId })
      yield* hooks.afterAck(change, publisher)
    })

  const unsubscribe = (connection: Connection, command: UnsubscribeCommand) =>
    Effect.gen(function* () {
      const { channel_id: channelId, guild_id: guildId } = command
      const outcome = yield* registry.unsubscribe(connection, guildId, channelId)
      yield* hooks.unsubscribed({ connection, guildId, channelId, outcome }, publisher)
      yield* publisher.send(connection, Unsubscribed, { guild_id: guildId, channel_id: channelId })
    })

  const messageCreate = (connection: Connection, command: MessageCreateCommand) =>
    access.canPost(connection.principal, command.guild_id, command.channel_id).pipe(
      Effect.flatMap((allowed) =>
        allowed
          ? options.messages.create(connection.principal, command)
          : new MessageRejected({
              reason: "forbidden",
              detail: "the AccessPolicy does not allow this channel"
            })
      ),
      Effect.flatMap((message) => publisher.publish(MessageCreate, message)),
      Effect.catchTags({
        MessageRejected: (rejection) =>
          Effect.sync(() => connection.close("message_rejected")).pipe(
            Effect.zipRight(
              Effect.logInfo(`gateway.message_create.rejected: ${rejection.reason}`).pipe(
                Effect.annotateLogs({ user_id: connection.userId, detail: rejection.detail })
              )
            )
          ),
        // Counted and logged by the publish path; the sender stays connected (as after a REST create).
        SerializeError: () => Effect.void,
        OversizedOutbound: () => Effect.void,
        // Only voice joins can be refused; a message never is.
        PublishRefused: () => Effect.void
      })
    )

  /** Fails only when the command's ack cannot be built: every other outcome is handled inside. */
  const execute = (connection: Connection, command: Command): Effect.Effect<void, OutboundError> => {
    switch (command._tag) {
      case "subscribe":
        return subscribe(connection, command)
      case "unsubscribe":
        return unsubscribe(connection, command)
      case "message_create":
        return messageCreate(connection, command)
    }
  }

  const takeNext = (connection: Connection) =>
    Effect.sync(() => {
      const next = connection.isOpen ? connection.pendingCommands?.shift() : undefined
      if (next === undefined) {
        connection.pendingCommands = undefined
        connection.commandsRunning = false
      }
      return next
    })

  const timeoutMillis = Duration.toMillis(options.commandTimeout)

  /** A sampled command is a span; the publish of a `message_create` becomes its child. */
  const traced = options.tracing.enabled
    ? (connection: Connection, command: Command) =>
        options.tracing.sampleRoot()
          ? Effect.withSpan(execute(connection, command), "gateway.command", {
              kind: "server",
              attributes: { "filament.command": command._tag, "filament.connection_id": connection.id }
            })
          : execute(connection, command)
    : execute

  /**
   * One command, bounded in time, with an outcome for each way it can fail. A command that cannot be
   * answered ends its connection: the client would otherwise wait for an ack that never comes.
   */
  const executeCommand = (connection: Connection, command: Command): Effect.Effect<void> =>
    traced(connection, command).pipe(
      Effect.timeoutFail({
        duration: options.commandTimeout,
        onTimeout: () =>
          new CommandTimeout({ reason: "command_timeout", command: command._tag, timeoutMillis })
      }),
      Effect.catchTags({
        // A hanging AccessPolicy or MessageHandler: the commands behind it would wait for ever.
        CommandTimeout: (timeout) =>
          Effect.zipRight(
            Effect.sync(() => connection.close(timeout.reason)),
            Effect.logWarning("gateway.command.timeout").pipe(
              Effect.annotateLogs({
                user_id: connection.userId,
                command: timeout.command,
                timeout_ms: timeout.timeoutMillis
              })
            )
          ),
        // The ack's build failure is already counted and logged (once) by the build.
        SerializeError: () => Effect.sync(() => connection.close("internal_error")),
        OversizedOutbound: () => Effect.sync(() => connection.close("internal_error"))
      }),
      Effect.catchAllCause((cause) =>
        Effect.sync(() => connection.close("internal_error")).pipe(
          Effect.zipRight(
            Effect.logError("gateway.command.defect", Cause.pretty(cause)).pipe(
              Effect.annotateLogs({ user_id: connection.userId, command: command._tag })
            )
          )
        )
      )
    )

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
