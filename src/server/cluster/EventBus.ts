/**
 * cluster/: what joins nodes into one gateway — the Redis bus (this module), the Redis client, and
 * the Redis-backed presence and voice projection (implementations of chat/'s services).
 *
 * EventBus: how a frame published on one node reaches the connections of the others. The gateway
 * always delivers to its own connections first; the bus only carries the already-built frame with
 * its routing key to the other nodes, which deliver it to their local recipients without encoding it
 * again.
 *
 * The Redis bus (`layerRedis`; the service and the one-node bus are in `core/Bus.ts`): pub/sub, sharded
 * `SSUBSCRIBE`/`SPUBLISH` on Redis >= 7; on a Redis Cluster each topic lives on the shard owning
 * its slot, and the outage handling below follows the cluster client's overall state). A node
 * subscribes only to the topics it has local interest in — one per guild with a local subscription,
 * one per locally connected user — so its bus traffic
 * follows its interest, not the cluster's size. Every message is HMAC-signed with the bus secret and
 * size-capped, and numbered per publisher so a captured message published again is dropped; whatever
 * fails a check is dropped and counted, so a foreign Redis client cannot put events into sockets
 * (the message format and its checks: `BusCodec.ts`).
 * Redis pub/sub is at-most-once: during an outage local delivery goes on, cross-node delivery stops,
 * the node reconnects with backoff, re-subscribes its interest and counts the gap. A topic Redis
 * refuses while connected is retried with backoff, the node unready meanwhile.
 */
import { randomBytes } from "node:crypto"
import { Deferred, Duration, Effect, Either, Exit, FiberId, Layer, Option, Queue, Redacted } from "effect"
import type { Scope } from "effect"
import { GatewayConfig, type GatewayConfigShape, type RedisEndpoint } from "../Config.js"
import { BusUnavailable } from "../Errors.js"
import { GatewayMetrics } from "../Metrics.js"
import { textFrame, type Frame } from "../core/Outbound.js"
import { withInterest, EventBus, type Delivery, type EventBusShape } from "../core/Bus.js"
import type { Topic, TopicInterest } from "../registry/Interest.js"
import { decodeMessage, encodeRoute, makeReplayGuard, routeOn, type Stamp } from "./BusCodec.js"
import * as RedisClient from "./RedisClient.js"

export interface RedisBusOptions {
  readonly endpoint: RedisEndpoint
  readonly secret: Redacted.Redacted<string>
  /** During a rotation: messages signed with this secret are accepted too (never used to sign). */
  readonly acceptSecret: Option.Option<Redacted.Redacted<string>>
  readonly maxMessageBytes: number
  readonly maxEventBytes: number
  /** Messages published longer ago than this (by the sender's clock) are dropped as stale. */
  readonly maxLag: Duration.Duration
  /** Cap of the reconnect backoff. */
  readonly reconnectMax: Duration.Duration
  /** Bound on connecting at startup and on waiting for a subscription. */
  readonly timeout: Duration.Duration
  /** Received frames awaiting local delivery; beyond it they are dropped (`backlog_full`). */
  readonly backlog: number
  /**
   * Redis Cluster: how often the subscriber reads the slot map again, so its topics follow a slot
   * whose master changed without a redirect or a dropped connection (a graceful failover).
   */
  readonly slotsRefresh: Duration.Duration
}

const RECONNECT_BASE_MILLIS = 50

/** Pub/sub command set: sharded on Redis >= 7 (a Redis Cluster spreads topics over shards). */
interface Dialect {
  readonly subscribe: "ssubscribe" | "subscribe"
  readonly unsubscribe: "sunsubscribe" | "unsubscribe"
  readonly publish: "spublish" | "publish"
  readonly message: "smessageBuffer" | "messageBuffer"
}
const SHARDED: Dialect = {
  subscribe: "ssubscribe",
  unsubscribe: "sunsubscribe",
  publish: "spublish",
  message: "smessageBuffer"
}
const CLASSIC: Dialect = {
  subscribe: "subscribe",
  unsubscribe: "unsubscribe",
  publish: "publish",
  message: "messageBuffer"
}

export const redisMajorVersion = (info: string): number => {
  const match = /^redis_version:(\d+)/m.exec(info)
  return match === null ? 0 : Number(match[1])
}

/** A Redis connection that fails commands at once while disconnected (no stale replay later). */
const connect = (options: RedisBusOptions, name: string, shardedSubscriber: boolean) =>
  RedisClient.make(options.endpoint, {
    connectionName: name,
    lazyConnect: true,
    offlineQueue: false,
    maxRetriesPerRequest: 0,
    connectTimeoutMillis: Duration.toMillis(options.timeout),
    reconnectDelay: (attempt) =>
      Math.min(RECONNECT_BASE_MILLIS * 2 ** Math.min(attempt, 16), Duration.toMillis(options.reconnectMax)),
    shardedSubscriber,
    ...(shardedSubscriber ? { slotsRefreshMillis: Duration.toMillis(options.slotsRefresh) } : {})
  })

export const makeRedis = (
  options: RedisBusOptions
): Effect.Effect<EventBusShape, BusUnavailable, Scope.Scope | GatewayMetrics> =>
  Effect.gen(function* () {
    const metrics = yield* GatewayMetrics
    const clock = yield* Effect.clock
    const secret = Buffer.from(Redacted.value(options.secret))
    const accepted = [
      secret,
      ...Option.toArray(options.acceptSecret).map((extra) => Buffer.from(Redacted.value(extra)))
    ]
    const node = randomBytes(16).toString("hex")
    const publisher = yield* connect(options, `filament-pub-${node}`, false)
    const subscriber = yield* connect(options, `filament-sub-${node}`, true)
    const deliveries = yield* Queue.dropping<Delivery>(options.backlog)
    const maxLagMillis = Duration.toMillis(options.maxLag)
    const reconnectMaxMillis = Duration.toMillis(options.reconnectMax)

    const fail = (error: unknown) =>
      new BusUnavailable({
        reason: "bus_unavailable",
        redis: RedisClient.describeEndpoint(options.endpoint),
        detail: error instanceof Error ? error.message : String(error)
      })
    yield* Effect.tryPromise({
      try: () => Promise.all([RedisClient.connect(publisher), RedisClient.connect(subscriber)]),
      catch: fail
    }).pipe(Effect.timeoutFail({ duration: options.timeout, onTimeout: () => fail("connect timed out") }))
    const info = yield* Effect.tryPromise({ try: () => publisher.info("server"), catch: fail })
    const dialect = redisMajorVersion(info) >= 7 ? SHARDED : CLASSIC

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

    const replayGuard = makeReplayGuard(maxLagMillis, clock.unsafeCurrentTimeMillis())
    const limits = { maxMessageBytes: options.maxMessageBytes, maxEventBytes: options.maxEventBytes }
    subscriber.on(dialect.message, (channel: Buffer, message: Buffer) => {
      const decoded = decodeMessage(accepted, message, limits)
      if (Either.isLeft(decoded)) return metrics.busDropped(decoded.left)
      const { envelope, header } = decoded.right
      if (header.node === node) return // our own publish, already delivered locally
      const now = clock.unsafeCurrentTimeMillis()
      if (Math.abs(now - header.at) > maxLagMillis) return metrics.busDropped("stale")
      const topic = channel.toString()
      const route = routeOn(topic, header)
      if (route === undefined) return metrics.busDropped("misrouted")
      if (replayGuard.replayed(topic, header, now)) return metrics.busDropped("replayed")
      const frame: Frame = {
        eventType: header.type,
        scope: header.scope,
        bytes: envelope.length,
        wire: textFrame(envelope)
      }
      if (!Queue.unsafeOffer(deliveries, { route, frame, publishedAt: header.at, trace: header.trace })) {
        return metrics.busDropped("backlog_full")
      }
      metrics.busReceived()
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

    const send = (topic: Topic, message: Buffer) => {
      publisher[dialect.publish](topic, message).then(
        () => metrics.busPublished(),
        () => metrics.busDropped("unavailable")
      )
    }

    let seq = 0
    /** Never decreases, so a receiver's replay mark ages out no earlier than the messages below it. */
    let lastAt = 0
    const bus: EventBusShape = {
      publish: (route, frame, trace) => {
        const envelope = frame.wire.subarray(frame.wire.length - frame.bytes)
        lastAt = Math.max(lastAt, clock.unsafeCurrentTimeMillis())
        const stamp: Stamp = {
          node,
          seq: seq++,
          at: lastAt,
          type: frame.eventType,
          ...(trace === undefined ? {} : { trace })
        }
        if (!publisherConnected) {
          metrics.busDropped("unavailable")
          return
        }
        encodeRoute(secret, stamp, route, envelope, send)
      },
      deliveries,
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
    return bus
  })

/** The Redis bus at `endpoint` (`GATEWAY_REDIS_URL`), which follows the registry's topic interest. */
export const layerRedis = (
  endpoint: Option.Option.Value<GatewayConfigShape["redis"]>
): Layer.Layer<EventBus | TopicInterest, BusUnavailable, GatewayConfig | GatewayMetrics> =>
  withInterest(
    Layer.scoped(
      EventBus,
      Effect.flatMap(GatewayConfig, (config) =>
        makeRedis({
          endpoint,
          secret: endpoint.busSecret,
          acceptSecret: endpoint.busAcceptSecret,
          maxMessageBytes: config.busMaxMessageBytes,
          maxEventBytes: config.maxEventBytes,
          maxLag: config.busMaxLag,
          reconnectMax: config.busReconnectMax,
          timeout: config.busTimeout,
          backlog: config.busBacklog,
          // The presence heartbeat's period: the bus follows a failover as fast as the state does.
          slotsRefresh: Duration.millis(Math.max(1, Math.floor(Duration.toMillis(config.nodeTtl) / 3)))
        })
      )
    )
  )
