/**
 * cluster/: what joins nodes into one gateway — the Redis bus (this module, its codec and its link),
 * and the Redis-backed presence and voice projection (implementations of chat/'s services).
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
 * refuses while connected is retried with backoff, the node unready meanwhile (the connections'
 * state and the subscriber's topics: `BusLink.ts`).
 */
import { randomBytes } from "node:crypto"
import { Duration, Effect, Either, Layer, Option, Queue, Redacted } from "effect"
import type { Scope } from "effect"
import { GatewayConfig, type GatewayConfigShape, type RedisEndpoint } from "../Config.js"
import { BusUnavailable } from "../Errors.js"
import { GatewayMetrics } from "../Metrics.js"
import { textFrame, type Frame } from "../core/Outbound.js"
import { withInterest, EventBus, type Delivery, type EventBusShape } from "../core/Bus.js"
import { guildTopic, userTopic, type Topic, type TopicInterest } from "../registry/Interest.js"
import {
  decodeMessage,
  encodeRoute,
  makeReplayGuard,
  POSITIONED_PREFIX,
  positionedSuffix,
  routeOn,
  type Stamp
} from "./BusCodec.js"
import * as RedisClient from "../RedisClient.js"
import * as BusLink from "./BusLink.js"

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

/** A Redis connection that fails commands at once while disconnected (no stale replay later). */
const connect = (options: RedisBusOptions, name: string, shardedSubscriber: boolean) =>
  RedisClient.make(options.endpoint, {
    connectionName: name,
    lazyConnect: true,
    offlineQueue: false,
    maxRetriesPerRequest: 0,
    connectTimeoutMillis: Duration.toMillis(options.timeout),
    reconnectDelay: (attempt) => RedisClient.backoffMillis(attempt, Duration.toMillis(options.reconnectMax)),
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
    const dialect = RedisClient.redisMajorVersion(info) >= 7 ? BusLink.SHARDED : BusLink.CLASSIC

    const link = yield* BusLink.make({
      publisher,
      subscriber,
      dialect,
      timeout: options.timeout,
      reconnectMaxMillis: Duration.toMillis(options.reconnectMax)
    })

    const replayGuard = makeReplayGuard(maxLagMillis, clock.unsafeCurrentTimeMillis())
    const limits = { maxMessageBytes: options.maxMessageBytes, maxEventBytes: options.maxEventBytes }
    subscriber.on(dialect.message, (channel: Buffer, message: Buffer) => {
      const decoded = decodeMessage(accepted, message, limits)
      if (Either.isLeft(decoded)) return metrics.busDropped(decoded.left)
      const { envelope, header, position } = decoded.right
      if (header.node === node) return // our own publish, already delivered locally
      // Our own recorded event: delivered locally too, but where Redis put it among the others.
      const own = header.node === recorder
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
      const delivery: Delivery = { route, frame, publishedAt: header.at, trace: header.trace, position, own }
      if (!Queue.unsafeOffer(deliveries, delivery)) {
        return metrics.busDropped("backlog_full")
      }
      if (!own) metrics.busReceived()
    })

    const send = (topic: Topic, message: Buffer) => {
      publisher[dialect.publish](topic, message).then(
        () => metrics.busPublished(),
        () => metrics.busDropped("unavailable")
      )
    }

    let seq = 0
    /**
     * Recorded events reach Redis over the history's connection, not the publisher's: they are
     * numbered under an origin of their own, so each origin's messages arrive in sequence order (the
     * replay guard's assumption). A node's recorded and unrecorded events are not ordered between them.
     */
    const recorder = randomBytes(16).toString("hex")
    let recordedSeq = 0
    /** Never decreases, so a receiver's replay mark ages out no earlier than the messages below it. */
    let lastAt = 0
    const stampOf = (origin: string, number: number, frame: Frame, trace: string | undefined): Stamp => {
      lastAt = Math.max(lastAt, clock.unsafeCurrentTimeMillis())
      return {
        node: origin,
        seq: number,
        at: lastAt,
        type: frame.eventType,
        ...(trace === undefined ? {} : { trace }),
        ...(origin === recorder ? { recorded: true as const } : {})
      }
    }
    const envelopeOf = (frame: Frame) => frame.wire.subarray(frame.wire.length - frame.bytes)
    const bus: EventBusShape = {
      publish: (route, frame, trace) => {
        const stamp = stampOf(node, seq++, frame, trace)
        if (!link.publisherConnected()) {
          metrics.busDropped("unavailable")
          return
        }
        encodeRoute(secret, stamp, route, envelopeOf(frame), send)
      },
      recorded: (route, frame, trace) => {
        return {
          // One stream's event: one topic (a user route here names one user).
          channel: route.scope === "user" ? userTopic(route.userIds[0]!) : guildTopic(route.guildId),
          parts: () => {
            let message: Buffer | undefined
            const stamp = stampOf(recorder, recordedSeq++, frame, trace)
            encodeRoute(secret, stamp, route, envelopeOf(frame), (_, signed) => {
              message = signed
            })
            return [POSITIONED_PREFIX, positionedSuffix(message!)]
          }
        }
      },
      deliveries,
      setInterest: link.setInterest,
      awaitActive: link.awaitActive,
      healthy: link.healthy
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
