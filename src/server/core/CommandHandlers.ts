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
import type { ChannelId, GuildId } from "../../protocol/Ids.js"
import { MessageCreate } from "../../protocol/events/message.js"
import { MessageRejected, type OutboundError } from "../Errors.js"
import type { GatewayMetricsShape } from "../Metrics.js"
import type { SubscribeOutcome } from "../registry/Indexes.js"
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

type Acked = Extract<SubscribeOutcome, { readonly _tag: "Subscribed" }>

/** What each command does: fails only when the command's ack cannot be built. */
const makeExecute = (
  options: CommandOptions
): ((connection: Connection, command: Command) => Effect.Effect<void, OutboundError>) => {
  const { access, hooks, metrics, publisher, registry } = options

  /** A subscribe refused after decoding: counted and logged, the connection kept. */
  const refused = (
    connection: Connection,
    reason: "forbidden" | "revoked" | "subscription_limit",
    guildId: GuildId,
    channelId: ChannelId
  ): Effect.Effect<undefined> => {
    metrics.subscribeRejected(reason)
    return Effect.logWarning(
      `gateway.subscribe.rejected: ${reason === "forbidden" ? "forbidden_channel" : reason}`
    ).pipe(
      Effect.annotateLogs({ user_id: connection.userId, guild_id: guildId, channel_id: channelId }),
      Effect.as(undefined)
    )
  }

  /**
   * The subscribe as every connection gets it: its outcome when it was authorized and acked. Plain
   * `flatMap`s, no generator (~0.5 µs per step): this runs for every subscribe of a connect storm.
   */
  const subscribeAcked = (
    connection: Connection,
    command: SubscribeCommand
  ): Effect.Effect<Acked | undefined, OutboundError> => {
    const { channel_id: channelId, guild_id: guildId } = command
    return Effect.flatMap(access.canSubscribe(connection.principal, guildId, channelId), (allowed) =>
      allowed
        ? Effect.flatMap(registry.subscribe(connection, guildId, channelId), (outcome) => {
            switch (outcome._tag) {
              case "NotConnected":
                return Effect.succeed(undefined)
              case "Revoked":
                return refused(connection, "revoked", guildId, channelId)
              case "SubscriptionLimit":
                return refused(connection, "subscription_limit", guildId, channelId)
            }
            const change = { connection, guildId, channelId, outcome }
            return hooks
              .beforeAck(change, publisher)
              .pipe(
                Effect.zipRight(
                  publisher.send(connection, Subscribed, { guild_id: guildId, channel_id: channelId })
                ),
                Effect.zipRight(hooks.afterAck(change, publisher)),
                Effect.as(outcome)
              )
          })
        : refused(connection, "forbidden", guildId, channelId)
    )
  }

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
    Effect.catchAllCause(traced(connection, command), (cause) => {
      connection.close("internal_error")
      // A failure is the ack's build failure (an `OutboundError`), already counted and logged once
      // by the build; anything else is a defect.
      return Cause.isFailType(cause)
        ? Effect.void
        : Effect.logError("gateway.command.defect", Cause.pretty(cause)).pipe(
            Effect.annotateLogs({ user_id: connection.userId, command: command._tag })
          )
    })

  return executeCommand
}
