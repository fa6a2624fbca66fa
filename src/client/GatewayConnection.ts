/**
 * The Effect API of the gateway connection: a connection owned by a `Scope`, with a `Stream` of
 * decoded events and a `Stream` of recovery verdicts. It runs the callback client of `GatewayClient` with Effect's `Clock` (backoff
 * sleeps, so `TestClock` drives them) and `Random` (jitter).
 */
import {
  Effect,
  Exit,
  FiberId,
  FiberSet,
  Mailbox,
  PubSub,
  Runtime,
  Stream,
  SubscriptionRef,
  Take
} from "effect"
import type { Scope } from "effect"
import type { ClientEvent } from "./Decode.js"
import type { CompatibilityCounterKey } from "./Dispatch.js"
import { GatewayClientError, make } from "./GatewayClient.js"
import type {
  ChannelRef,
  GatewayClientOptions,
  RecoveryVerdict,
  Timer,
  TokenRequest
} from "./GatewayClient.js"

export interface GatewayConnectionOptions extends Omit<
  GatewayClientOptions,
  "accessToken" | "timer" | "random" | "onEvent" | "onOpenChange"
> {
  /** Run before every (re)connect; a failure is reported and retried with backoff. */
  readonly accessToken: (request: TokenRequest) => Effect.Effect<string, unknown>
  /**
   * Decoded events buffered for the stream's consumer. A consumer that falls this far behind fails
   * the stream with `event_buffer_full` rather than silently missing events.
   */
  readonly bufferSize?: number
}

export const DEFAULT_EVENT_BUFFER = 4_096

export interface GatewayConnection {
  /** Decoded events; ends when the connection closes for good, fails when retries are exhausted. */
  readonly events: Stream.Stream<ClientEvent, GatewayClientError>
  /**
   * One verdict per stream at every (re)connect (with recovery on, the default): `recovered: false`
   * means refetch that stream's state. Each run of the stream gets the verdicts from its start on
   * (run it before subscribing, e.g. forked right after `connect`); nothing is kept while nobody
   * runs it. A run that falls `bufferSize` verdicts behind fails like `events` (`event_buffer_full`);
   * it ends and fails with the connection.
   */
  readonly recoveries: Stream.Stream<RecoveryVerdict, GatewayClientError>
  /** The open state and its changes. */
  readonly open: SubscriptionRef.SubscriptionRef<boolean>
  readonly subscribe: (guildId: string, channelId: string) => Effect.Effect<void, GatewayClientError>
  readonly unsubscribe: (guildId: string, channelId: string) => Effect.Effect<void, GatewayClientError>
  readonly setSubscribedChannels: (channels: Iterable<ChannelRef>) => Effect.Effect<void, GatewayClientError>
  readonly sendMessage: (
    guildId: string,
    channelId: string,
    content: string,
    attachmentIds?: ReadonlyArray<string>
  ) => Effect.Effect<boolean, GatewayClientError>
  readonly compatibilityCounters: Effect.Effect<ReadonlyMap<CompatibilityCounterKey, number>>
}

/** Runs a client call; its typed errors fail the effect, anything else is a defect. */
const attempt = <A>(f: () => A): Effect.Effect<A, GatewayClientError> =>
  Effect.suspend(() => {
    try {
      return Effect.succeed(f())
    } catch (error) {
      return error instanceof GatewayClientError ? Effect.fail(error) : Effect.die(error)
    }
  })

/**
 * A connection owned by the current scope: closing the scope closes the socket (1000
 * `client_close`). Backoff sleeps use the Effect `Clock` (so `TestClock` drives them) and jitter
 * uses the `Random` service.
 */
export const connect = (
  options: GatewayConnectionOptions
): Effect.Effect<GatewayConnection, GatewayClientError, Scope.Scope> =>
  Effect.gen(function* () {
    const runtime = yield* Effect.runtime<never>()
    const runFork = yield* FiberSet.makeRuntime<never>()
    const random = yield* Effect.random
    const mailbox = yield* Mailbox.make<ClientEvent, GatewayClientError>({
      capacity: options.bufferSize ?? DEFAULT_EVENT_BUFFER,
      strategy: "dropping"
    })
    const verdicts = yield* Effect.acquireRelease(
      PubSub.dropping<Take.Take<RecoveryVerdict, GatewayClientError>>(
        options.bufferSize ?? DEFAULT_EVENT_BUFFER
      ),
      PubSub.shutdown
    )
    const open = yield* SubscriptionRef.make(false)
    const runSync = Runtime.runSync(runtime)
    /**
     * `false` only when a running `recoveries` stream is full; nothing is kept while nobody runs one.
     * Once the scope closed the PubSub is shut down (its streams interrupted) and nothing is published.
     */
    const publish = (take: Take.Take<RecoveryVerdict, GatewayClientError>): boolean =>
      runSync(PubSub.isShutdown(verdicts)) || runSync(PubSub.publish(verdicts, take))
    const end = (exit: Exit.Exit<void, GatewayClientError>) => {
      mailbox.unsafeDone(exit)
      publish(Exit.isSuccess(exit) ? Take.end : Take.failCause(exit.cause))
    }
    const fellBehind = () => {
      client.close()
      end(
        Exit.fail(
          new GatewayClientError({
            reason: "event_buffer_full",
            detail: `consumer fell ${options.bufferSize ?? DEFAULT_EVENT_BUFFER} events behind`
          })
        )
      )
    }

    const timer: Timer = {
      schedule: (callback, delayMs) => {
        const fiber = runFork(Effect.andThen(Effect.sleep(delayMs), Effect.sync(callback)))
        return () => fiber.unsafeInterruptAsFork(FiberId.none)
      }
    }

    const client = yield* Effect.acquireRelease(
      attempt(() =>
        make({
          ...options,
          accessToken: (request) => Runtime.runPromise(runtime)(options.accessToken(request)),
          timer,
          random: () => runSync(random.next),
          onEvent: (event) => {
            if (!mailbox.unsafeOffer(event)) fellBehind()
          },
          onRecovery: (verdict) => {
            options.onRecovery?.(verdict)
            if (!publish(Take.of(verdict))) fellBehind()
          },
          onOpenChange: (isOpen) => runSync(SubscriptionRef.set(open, isOpen)),
          onClose: (close) => {
            options.onClose?.(close)
            if (close.reconnect) return
            end(
              close.code === 1000
                ? Exit.void
                : Exit.fail(
                    new GatewayClientError({
                      reason: "retries_exhausted",
                      detail: `closed with ${close.code} ${close.reason}`
                    })
                  )
            )
          }
        })
      ),
      (client) => Effect.sync(() => client.close())
    )

    return {
      events: Mailbox.toStream(mailbox),
      recoveries: Stream.flattenTake(Stream.fromPubSub(verdicts)),
      open,
      subscribe: (guildId, channelId) => attempt(() => client.subscribe(guildId, channelId)),
      unsubscribe: (guildId, channelId) => attempt(() => client.unsubscribe(guildId, channelId)),
      setSubscribedChannels: (channels) => attempt(() => client.setSubscribedChannels(channels)),
      sendMessage: (guildId, channelId, content, attachmentIds) =>
        attempt(() => client.sendMessage(guildId, channelId, content, attachmentIds)),
      compatibilityCounters: Effect.sync(client.compatibilityCounters)
    } satisfies GatewayConnection
  })

/** The decoded events of a connection that lives exactly as long as the stream. */
export const events = (options: GatewayConnectionOptions): Stream.Stream<ClientEvent, GatewayClientError> =>
  Stream.unwrapScoped(Effect.map(connect(options), (connection) => connection.events))
