/**
 * What each client command does, once ingress has decoded it and its turn has come: `subscribe`
 * (access, registry, the hooks around the ack), `unsubscribe`, and `message_create` (access, the
 * `MessageHandler`, then the publish path) — a sampled one traced, and a command that cannot be
 * answered ending its connection. The heartbeat sweep bounds each in time (`LiveConnections`).
 */
import { Cause, Effect } from "effect"
import type {
  Command,
  MessageCreateCommand,
  SubscribeCommand,
  UnsubscribeCommand
} from "../../protocol/Commands.js"
import { Subscribed, Unsubscribed } from "../../protocol/events/connection.js"
import { MessageCreate } from "../../protocol/events/message.js"
import { MessageRejected, type OutboundError } from "../Errors.js"
import type { GatewayMetricsShape } from "../Metrics.js"
import type { SubscriptionRegistryShape } from "../registry/Subscriptions.js"
import type { TracingShape } from "../Tracing.js"
import type { Connection } from "./Connection.js"
import type { Recovery } from "./Recovery.js"
import type { AccessPolicyShape, GatewayHooksShape, MessageHandlerShape, Publisher } from "./Seams.js"

export interface CommandOptions {
  readonly tracing: TracingShape
  readonly metrics: GatewayMetricsShape
  readonly registry: SubscriptionRegistryShape
  readonly access: AccessPolicyShape
  readonly messages: MessageHandlerShape
  readonly hooks: GatewayHooksShape
  readonly publisher: Publisher
  /** Missed-event recovery for the connections that opted in. */
  readonly recovery: Recovery
}

/** What each command does: fails only when the command's ack cannot be built. */
const makeExecute = (
  options: CommandOptions
): ((connection: Connection, command: Command) => Effect.Effect<void, OutboundError>) => {
  const { access, hooks, metrics, publisher, registry } = options

  /** The subscribe as every connection gets it: its outcome when it was authorized and acked. */
  const subscribeAcked = (connection: Connection, command: SubscribeCommand) =>
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
      return outcome
    })

  /**
   * On an opted-in connection the channel and guild streams are held from before the registry can
   * route them here; an acked subscribe then replays (`since`) and answers `recovery`, any other
   * ends the hold with nothing replayed.
   */
  const subscribe = (connection: Connection, command: SubscribeCommand) => {
    const state = connection.recovery
    if (state === undefined) return Effect.asVoid(subscribeAcked(connection, command))
    const { channel_id: channelId, guild_id: guildId } = command
    options.recovery.holdSubscribe(state, guildId, channelId)
    return subscribeAcked(connection, command).pipe(
      Effect.flatMap((outcome) =>
        outcome === undefined
          ? Effect.void
          : options.recovery.recoverSubscribe(
              connection,
              state,
              { guild_id: guildId, channel_id: channelId },
              command.since,
              outcome.connectionJoinedGuild
            )
      ),
      // Whatever is still held (refused, failed, or interrupted by the command timeout) goes out live.
      Effect.ensuring(
        Effect.sync(() => options.recovery.releaseSubscribe(connection, state, guildId, channelId))
      )
    )
  }

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

  return execute
}

/** Runs one command of a connection; every way it can fail has its outcome (see `executeCommand`). */
export const makeExecuteCommand = (
  options: CommandOptions
): ((connection: Connection, command: Command) => Effect.Effect<void>) => {
  const execute = makeExecute(options)

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
   * One command, with an outcome for each way it can fail. A command that cannot be answered ends
   * its connection: the client would otherwise wait for an ack that never comes.
   */
  const executeCommand = (connection: Connection, command: Command): Effect.Effect<void> =>
    traced(connection, command).pipe(
      Effect.catchTags({
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

  return executeCommand
}
