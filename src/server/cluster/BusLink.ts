/**
 * The Redis bus's link to the other nodes: its two connections' state and the subscriber's topics.
 *
 * The registry reports this node's interest as topics (`setInterest`); one reconcile fiber brings
 * the subscriber connection's topics (`active`) in line with the wanted ones, one command per topic.
 * A topic Redis refuses while connected is `failing`: the node is unready, the acks waiting for it
 * are released, and it is retried with backoff. A dropped subscriber loses every subscription, so
 * on its return every wanted topic is subscribed again (`restoring`). The link is whole when both
 * connections are up and nothing is being restored; the time it was not is counted as the gap
 * (`busReconnected`), measured on the gateway's `Clock`.
 */
import { Deferred, Effect, Exit, FiberId, Queue } from "effect"
import type { Scope, Duration } from "effect"
import { GatewayMetrics, type GatewayMetricsShape } from "../Metrics.js"
import type { Topic } from "../registry/Interest.js"
import * as RedisClient from "../RedisClient.js"

/** Pub/sub command set: sharded on Redis >= 7 (a Redis Cluster spreads topics over shards). */
export interface Dialect {
  readonly subscribe: "ssubscribe" | "subscribe"
  readonly unsubscribe: "sunsubscribe" | "unsubscribe"
  readonly publish: "spublish" | "publish"
  readonly message: "smessageBuffer" | "messageBuffer"
}
export const SHARDED: Dialect = {
  subscribe: "ssubscribe",
  unsubscribe: "sunsubscribe",
  publish: "spublish",
  message: "smessageBuffer"
}
export const CLASSIC: Dialect = {
  subscribe: "subscribe",
  unsubscribe: "unsubscribe",
  publish: "publish",
  message: "messageBuffer"
}

export interface BusLink {
  readonly publisherConnected: () => boolean
  /** This node's interest in a topic began or ended (the registry's order); reconciled in the background. */
  readonly setInterest: (topic: Topic, interested: boolean) => void
  /** Until the wanted topic is active, refused, or no longer wanted (bounded by `timeout`). */
  readonly awaitActive: (topic: Topic) => Effect.Effect<void>
  /** Both connections up, every wanted topic subscribed again after a reconnect, none refused. */
  readonly healthy: () => boolean
}

interface LinkOptions {
  readonly publisher: RedisClient.RedisClient
  readonly subscriber: RedisClient.RedisClient
  readonly dialect: Dialect
  /** Bound on waiting for a subscription. */
  readonly timeout: Duration.Duration
  readonly reconnectMaxMillis: number
}

/** The link's state: changed by the connections' events, by `setInterest` and by the reconcile fiber. */
interface LinkState {
  /** Topics this node has local interest in, and those the subscriber connection holds now. */
  readonly wanted: Set<Topic>
  readonly active: Set<Topic>
  readonly changed: Set<Topic>
  readonly waiters: Map<Topic, Deferred.Deferred<void>>
  /** Wanted topics whose subscribe failed, with the consecutive failures (retried with backoff). */
  readonly failing: Map<Topic, number>
  readonly reconcile: Queue.Queue<void>
  subscriberConnected: boolean
  publisherConnected: boolean
  /** After a reconnect, until every wanted topic is subscribed again. */
  restoring: boolean
  /** Counts the gap once the bus is whole again: both connections up, interest restored. */
  readonly onChange: () => void
}

const releaseWaiters = (state: LinkState, topic?: Topic) => {
  for (const [key, waiter] of state.waiters) {
    if (topic !== undefined && key !== topic) continue
    state.waiters.delete(key)
    Deferred.unsafeDone(waiter, Exit.void)
  }
}

const joined = (state: LinkState) => state.subscriberConnected && state.publisherConnected && !state.restoring

/** Follows both connections: a dropped subscriber lost every subscription, its return restores them. */
const watchConnections = (state: LinkState, { publisher, subscriber }: LinkOptions) => {
  subscriber.on("close", () => {
    if (!state.subscriberConnected) return
    state.subscriberConnected = false
    state.failing.clear() // the reconnect retries every topic
    // The subscriptions died with the connection: everything wanted is to be subscribed again.
    state.active.clear()
    for (const topic of state.wanted) state.changed.add(topic)
    releaseWaiters(state)
    state.onChange()
  })
  subscriber.on("ready", () => {
    if (state.subscriberConnected) return
    state.subscriberConnected = true
    state.restoring = true
    state.onChange()
    Queue.unsafeOffer(state.reconcile, undefined)
  })
  publisher.on("close", () => {
    if (!state.publisherConnected) return
    state.publisherConnected = false
    state.onChange()
  })
  publisher.on("ready", () => {
    if (state.publisherConnected) return
    state.publisherConnected = true
    state.onChange()
  })
}

/** Brings the subscriber connection's topics in line with the wanted set (one pass over changes). */
const syncSubscriptions = (
  state: LinkState,
  { dialect, reconnectMaxMillis, subscriber }: LinkOptions,
  metrics: GatewayMetricsShape
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.suspend(() => {
    if (!state.subscriberConnected) return Effect.void
    const add: Array<Topic> = []
    const remove: Array<Topic> = []
    for (const topic of state.changed) {
      if (state.wanted.has(topic) && !state.active.has(topic)) add.push(topic)
      else if (!state.wanted.has(topic) && state.active.has(topic)) remove.push(topic)
    }
    state.changed.clear()
    // One topic per command: sharded channels of one command must share a hash slot.
    const run = (command: Dialect["subscribe"] | Dialect["unsubscribe"], topic: Topic) =>
      Effect.tryPromise(() => subscriber[command](topic)).pipe(
        Effect.matchEffect({
          onFailure: (error) => {
            state.changed.add(topic) // retried on the next change, reconnect or backoff step
            if (command !== dialect.subscribe || !state.subscriberConnected || !state.wanted.has(topic)) {
              return Effect.void
            }
            // Refused while connected (an ACL, a moving slot): not ready, and the acks waiting
            // for it are released instead of waiting out the timeout; retried with backoff.
            const failures = (state.failing.get(topic) ?? 0) + 1
            state.failing.set(topic, failures)
            metrics.busSubscribeFailed()
            releaseWaiters(state, topic)
            const delay = RedisClient.backoffMillis(failures - 1, reconnectMaxMillis)
            return Effect.zipRight(
              Effect.logWarning(`gateway.bus.subscribe_failed topic=${topic} attempt=${failures}`, error),
              Effect.forkScoped(Effect.zipRight(Effect.sleep(delay), Queue.offer(state.reconcile, undefined)))
            )
          },
          onSuccess: () =>
            Effect.sync(() => {
              if (command === dialect.subscribe) {
                state.active.add(topic)
                state.failing.delete(topic)
                releaseWaiters(state, topic)
              } else state.active.delete(topic)
            })
        })
      )
    return Effect.all(
      [
        ...add.map((topic) => run(dialect.subscribe, topic)),
        ...remove.map((topic) => run(dialect.unsubscribe, topic))
      ],
      { concurrency: "unbounded", discard: true }
    ).pipe(
      Effect.zipRight(
        Effect.sync(() => {
          if (!state.restoring || !state.subscriberConnected) return
          // A failed command (the connection dropped meanwhile) left its topic in `changed`: the
          // next reconnect retries it, and health waits for that.
          if (state.changed.size > 0) return
          state.restoring = false
          state.onChange()
        })
      )
    )
  })

export const make = (options: LinkOptions): Effect.Effect<BusLink, never, Scope.Scope | GatewayMetrics> =>
  Effect.gen(function* () {
    const metrics = yield* GatewayMetrics
    const clock = yield* Effect.clock
    let downSince: number | undefined
    const state: LinkState = {
      wanted: new Set(),
      active: new Set(),
      changed: new Set(),
      waiters: new Map(),
      failing: new Map(),
      reconcile: yield* Queue.sliding<void>(1),
      subscriberConnected: true,
      publisherConnected: true,
      restoring: false,
      onChange: () => {
        if (!joined(state)) {
          if (downSince === undefined) downSince = clock.unsafeCurrentTimeMillis()
        } else if (downSince !== undefined) {
          metrics.busReconnected((clock.unsafeCurrentTimeMillis() - downSince) / 1000)
          downSince = undefined
        }
      }
    }
    watchConnections(state, options)
    yield* Effect.forkScoped(
      Effect.forever(Effect.zipRight(Queue.take(state.reconcile), syncSubscriptions(state, options, metrics)))
    )

    return {
      publisherConnected: () => state.publisherConnected,
      setInterest: (topic, interested) => {
        if (interested) state.wanted.add(topic)
        else {
          state.wanted.delete(topic)
          state.failing.delete(topic)
          releaseWaiters(state, topic)
        }
        state.changed.add(topic)
        Queue.unsafeOffer(state.reconcile, undefined)
      },
      awaitActive: (topic) =>
        Effect.suspend(() => {
          const { active, failing, subscriberConnected, wanted } = state
          if (!subscriberConnected || !wanted.has(topic) || active.has(topic) || failing.has(topic)) {
            return Effect.void
          }
          let waiter = state.waiters.get(topic)
          if (waiter === undefined) {
            waiter = Deferred.unsafeMake<void>(FiberId.none)
            state.waiters.set(topic, waiter)
          }
          return Deferred.await(waiter).pipe(Effect.timeout(options.timeout), Effect.ignore)
        }),
      healthy: () => joined(state) && state.failing.size === 0
    }
  })
