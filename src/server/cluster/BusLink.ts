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
import { GatewayMetrics } from "../Metrics.js"
import type { Topic } from "../registry/Interest.js"
import type * as RedisClient from "../RedisClient.js"

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

export const RECONNECT_BASE_MILLIS = 50

export interface BusLink {
  readonly publisherConnected: () => boolean
  /** This node's interest in a topic began or ended (the registry's order); reconciled in the background. */
  readonly setInterest: (topic: Topic, interested: boolean) => void
  /** Until the wanted topic is active, refused, or no longer wanted (bounded by `timeout`). */
  readonly awaitActive: (topic: Topic) => Effect.Effect<void>
  /** Both connections up, every wanted topic subscribed again after a reconnect, none refused. */
  readonly healthy: () => boolean
}

export const make = (options: {
  readonly publisher: RedisClient.RedisClient
  readonly subscriber: RedisClient.RedisClient
  readonly dialect: Dialect
  /** Bound on waiting for a subscription. */
  readonly timeout: Duration.Duration
  readonly reconnectMaxMillis: number
}): Effect.Effect<BusLink, never, Scope.Scope | GatewayMetrics> =>
  Effect.gen(function* () {
    const { publisher, subscriber, dialect, reconnectMaxMillis } = options
    const metrics = yield* GatewayMetrics
    const clock = yield* Effect.clock

    /** Topics this node has local interest in, and those the subscriber connection holds now. */
    const wanted = new Set<Topic>()
    const active = new Set<Topic>()
    const changed = new Set<Topic>()
    const waiters = new Map<Topic, Deferred.Deferred<void>>()
    /** Wanted topics whose subscribe failed, with the consecutive failures (retried with backoff). */
    const failing = new Map<Topic, number>()
    const reconcile = yield* Queue.sliding<void>(1)
    let subscriberConnected = true
    let publisherConnected = true
    /** After a reconnect, until every wanted topic is subscribed again. */
    let restoring = false
    let downSince: number | undefined

    const releaseWaiters = (topic?: Topic) => {
      for (const [key, waiter] of waiters) {
        if (topic !== undefined && key !== topic) continue
        waiters.delete(key)
        Deferred.unsafeDone(waiter, Exit.void)
      }
    }

    const joined = () => subscriberConnected && publisherConnected && !restoring

    /** Counts the gap once the bus is whole again: both connections up, interest restored. */
    const onChange = () => {
      if (!joined()) {
        if (downSince === undefined) downSince = clock.unsafeCurrentTimeMillis()
      } else if (downSince !== undefined) {
        metrics.busReconnected((clock.unsafeCurrentTimeMillis() - downSince) / 1000)
        downSince = undefined
      }
    }

    subscriber.on("close", () => {
      if (!subscriberConnected) return
      subscriberConnected = false
      failing.clear() // the reconnect retries every topic
      // The subscriptions died with the connection: everything wanted is to be subscribed again.
      active.clear()
      for (const topic of wanted) changed.add(topic)
      releaseWaiters()
      onChange()
    })
    subscriber.on("ready", () => {
      if (subscriberConnected) return
      subscriberConnected = true
      restoring = true
      onChange()
      Queue.unsafeOffer(reconcile, undefined)
    })
    publisher.on("close", () => {
      if (!publisherConnected) return
      publisherConnected = false
      onChange()
    })
    publisher.on("ready", () => {
      if (publisherConnected) return
      publisherConnected = true
      onChange()
    })

    /** Brings the subscriber connection's topics in line with the wanted set (one pass over changes). */
    const syncSubscriptions = Effect.suspend(() => {
      if (!subscriberConnected) return Effect.void
      const add: Array<Topic> = []
      const remove: Array<Topic> = []
      for (const topic of changed) {
        if (wanted.has(topic) && !active.has(topic)) add.push(topic)
        else if (!wanted.has(topic) && active.has(topic)) remove.push(topic)
      }
      changed.clear()
      // One topic per command: sharded channels of one command must share a hash slot.
      const run = (command: Dialect["subscribe"] | Dialect["unsubscribe"], topic: Topic) =>
        Effect.tryPromise(() => subscriber[command](topic)).pipe(
          Effect.matchEffect({
            onFailure: (error) => {
              changed.add(topic) // retried on the next change, reconnect or backoff step
              if (command !== dialect.subscribe || !subscriberConnected || !wanted.has(topic)) {
                return Effect.void
              }
              // Refused while connected (an ACL, a moving slot): not ready, and the acks waiting
              // for it are released instead of waiting out the timeout; retried with backoff.
              const failures = (failing.get(topic) ?? 0) + 1
              failing.set(topic, failures)
              metrics.busSubscribeFailed()
              releaseWaiters(topic)
              const delay = Math.min(
                RECONNECT_BASE_MILLIS * 2 ** Math.min(failures - 1, 16),
                reconnectMaxMillis
              )
              return Effect.zipRight(
                Effect.logWarning(`gateway.bus.subscribe_failed topic=${topic} attempt=${failures}`, error),
                Effect.forkScoped(Effect.zipRight(Effect.sleep(delay), Queue.offer(reconcile, undefined)))
              )
            },
            onSuccess: () =>
              Effect.sync(() => {
                if (command === dialect.subscribe) {
                  active.add(topic)
                  failing.delete(topic)
                  releaseWaiters(topic)
                } else active.delete(topic)
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
            if (!restoring || !subscriberConnected) return
            // A failed command (the connection dropped meanwhile) left its topic in `changed`: the
            // next reconnect retries it, and health waits for that.
            if (changed.size > 0) return
            restoring = false
            onChange()
          })
        )
      )
    })
    yield* Effect.forkScoped(Effect.forever(Effect.zipRight(Queue.take(reconcile), syncSubscriptions)))

    return {
      publisherConnected: () => publisherConnected,
      setInterest: (topic, interested) => {
        if (interested) wanted.add(topic)
        else {
          wanted.delete(topic)
          failing.delete(topic)
          releaseWaiters(topic)
        }
        changed.add(topic)
        Queue.unsafeOffer(reconcile, undefined)
      },
      awaitActive: (topic) =>
        Effect.suspend(() => {
          if (!subscriberConnected || !wanted.has(topic) || active.has(topic) || failing.has(topic)) {
            return Effect.void
          }
          let waiter = waiters.get(topic)
          if (waiter === undefined) {
            waiter = Deferred.unsafeMake<void>(FiberId.none)
            waiters.set(topic, waiter)
          }
          return Deferred.await(waiter).pipe(Effect.timeout(options.timeout), Effect.ignore)
        }),
      healthy: () => joined() && failing.size === 0
    }
  })
