/**
 * Gateway: the public service. It owns the `ws` WebSocketServer (noServer, `maxPayload` = the
 * event cap, no compression) as a scoped resource, admits upgrades after the TokenVerifier,
 * runs the single heartbeat sweep, and is the publish path (`publish`, `publishToUsers`) for the
 * HTTP API and for a host app in-process. Closing its scope stops accepting, closes every socket
 * with 1001 `going_away` and lets writers flush for a bounded grace.
 */
import type { IncomingMessage } from "node:http"
import type { Socket } from "node:net"
import type { Duplex } from "node:stream"
import {
  Clock,
  Context,
  Duration,
  Effect,
  Either,
  FiberSet,
  Layer,
  Option,
  ParseResult,
  Queue,
  Schedule,
  Tracer
} from "effect"
import { WebSocket, WebSocketServer, type RawData, type ServerOptions } from "ws"
import type { Command } from "../../protocol/Commands.js"
import type { EventDefinition, PayloadOf } from "../../protocol/EventDefinition.js"
import { decodePayload } from "../../protocol/EventDefinition.js"
import { closeCodeFor } from "../../protocol/CloseCodes.js"
import { Ready } from "../../protocol/events/connection.js"
import { Manifest } from "../../protocol/Manifest.js"
import type { ChannelId, GuildId, UserId } from "../../protocol/Ids.js"
import { AccessPolicy } from "../chat/Access.js"
import * as Access from "../chat/Access.js"
import * as Auth from "../Auth.js"
import { TokenVerifier, type Principal } from "../Auth.js"
import { GatewayConfig } from "../Config.js"
import { Connection, type DisconnectReason, wsCloseReason, wsErrorReason } from "./Connection.js"
import * as Bus from "../cluster/EventBus.js"
import { Unauthorized, type OutboundError, type PublishError } from "../Errors.js"
import * as Fanout from "./Fanout.js"
import * as ChatFollowUps from "../chat/ChatFollowUps.js"
import * as ClusterPresence from "../cluster/ClusterPresence.js"
import * as ClusterVoice from "../cluster/ClusterVoice.js"
import { SubscriptionFollowUps, type Publisher } from "../registry/FollowUps.js"
import * as Ingress from "./Ingress.js"
import { MessageHandler } from "../chat/Messages.js"
import * as Messages from "../chat/Messages.js"
import { GatewayMetrics } from "../Metrics.js"
import * as Metrics from "../Metrics.js"
import * as Outbound from "./Outbound.js"
import { SubscriptionRegistry } from "../registry/Registry.js"
import * as Registry from "../registry/Registry.js"
import * as Tracing from "../Tracing.js"

export interface GatewayShape extends Publisher {
  /**
   * The `upgrade` listener for `GET /gateway/ws`: authenticates (401 `invalid_credentials`
   * before any upgrade), enforces the per-user connection cap (429), then upgrades.
   */
  readonly handleUpgrade: (request: IncomingMessage, socket: Duplex, head: Buffer) => void
  /** False once shutdown has begun (`/readyz`). */
  readonly isAccepting: () => boolean
  /** False while the cluster bus is down: cross-node delivery is interrupted (`/readyz`). */
  readonly busHealthy: () => boolean
  /** Open connections on this node. */
  readonly connectionCount: () => number
  /**
   * Sets (or with `undefined` removes) the one observer of this node's broadcasts — the inspector's,
   * called once per event after its delivery loop, never per delivery.
   */
  readonly setPublishTap: (tap: PublishTap | undefined) => void
  /**
   * Runs a command on a connection's behalf, in order with its own commands (the inspector's "drop
   * subscription"); false when the connection is closed or its command queue is full.
   */
  readonly runCommand: (connection: Connection, command: Command) => boolean
}

/** Observes one broadcast: its frame, route, how many local connections it was offered to, and whence. */
export type PublishTap = (
  frame: Outbound.Frame,
  route: Bus.Route,
  recipients: number,
  origin: "local" | "bus"
) => void

export class Gateway extends Context.Tag("filament/Gateway")<Gateway, GatewayShape>() {}

/** The connection of a socket the gateway attached (its listeners only exist after attach). */
const connectionOf = (socket: WebSocket): Connection => (socket as GatewaySocket).connection!

/**
 * ws refuses some frames itself (an oversized one from its header, before buffering it; protocol
 * errors; fragment floods; text that is not UTF-8) and closes with a bare code; this gives each such
 * close its documented code and reason (see `wsCloseReason`).
 */
class GatewaySocket extends WebSocket {
  /** Set on attach; lets one set of listener functions serve every socket (no closures per connection). */
  connection: Connection | undefined

  /**
   * A pong answers the heartbeat here, not through a fourth listener: that one would double the
   * listener table every socket carries (measured: 256 instead of 160 bytes per connection).
   */
  override emit(event: string | symbol, ...args: Array<unknown>): boolean {
    if (event === "pong" && this.connection !== undefined) this.connection.pingSentAt = undefined
    return super.emit(event, ...args)
  }

  override close(code?: number, data?: string | Buffer): void {
    const reason = data === undefined && code !== undefined ? wsCloseReason(code) : undefined
    if (reason !== undefined) return super.close(closeCodeFor(reason).code, reason)
    super.close(code, data)
  }
}

/** Bound on the decode issue a log line quotes. */
const MAX_DECODE_ISSUE_CHARS = 200

/**
 * The typed payload of a frame another node built, or the first decode issue: a node of another
 * version (a rolling deploy) may have encoded a payload this one's schema no longer accepts.
 */
const remotePayload = (event: EventDefinition, frame: Outbound.Frame): Either.Either<unknown, string> => {
  let envelope: { d?: unknown }
  try {
    envelope = JSON.parse(frame.wire.toString("utf8", frame.wire.length - frame.bytes)) as { d?: unknown }
  } catch (error) {
    return Either.left(String(error))
  }
  return Either.mapLeft(decodePayload(event, envelope.d, { strict: false }), (error) => {
    const [issue] = ParseResult.ArrayFormatter.formatErrorSync(error)
    return issue === undefined ? error.message : `${JSON.stringify(issue.path)}: ${issue.message}`
  })
}

/** The upgrading socket's `error` listener (shared: `this` is the socket). */
function destroyOnError(this: Duplex) {
  this.destroy()
}

/** Token from `?access_token=` (wins, even when empty) or `Authorization: Bearer`. */
export const accessToken = (request: IncomingMessage): string => {
  const url = new URL(request.url ?? "/", "http://gateway.invalid")
  const fromQuery = url.searchParams.get("access_token")
  if (fromQuery !== null) return fromQuery
  return Auth.bearerToken(request.headers.authorization) ?? ""
}

const STATUS_TEXT: Record<number, string> = {
  401: "Unauthorized",
  429: "Too Many Requests",
  503: "Service Unavailable"
}

/** Answers an upgrade request with a plain JSON error and drops the socket: no upgrade. */
const refuseUpgrade = (socket: Duplex, status: number, error: string) => {
  const body = JSON.stringify({ error })
  if (socket.writable) {
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? "Error"}\r\n` +
        "Content-Type: application/json\r\n" +
        `Content-Length: ${Buffer.byteLength(body)}\r\n` +
        "Connection: close\r\n\r\n" +
        body
    )
  }
  socket.destroy()
}

export const make = Effect.gen(function* () {
  const config = yield* GatewayConfig
  const metrics = yield* GatewayMetrics
  const registry = yield* SubscriptionRegistry
  const verifier = yield* TokenVerifier
  const followUps = yield* SubscriptionFollowUps
  const bus = yield* Bus.EventBus
  const access = yield* AccessPolicy
  const messages = yield* MessageHandler
  const tracing = yield* Tracing.Tracing
  const clock = yield* Effect.clock
  const run = yield* FiberSet.makeRuntime<never, void, never>()

  const maxBytes = config.maxEventBytes
  const limits = {
    outboundQueue: config.outboundQueue,
    socketHighWaterBytes: config.socketHighWaterBytes,
    ingressEventsPerWindow: config.ingressEventsPerWindow,
    ingressWindowMillis: Duration.toMillis(config.ingressWindow)
  }
  /** Connections whose socket has not emitted `close` yet (heartbeat sweep and shutdown). */
  const live = new Set<Connection>()
  let onAllClosed: (() => void) | undefined
  let accepting = true
  let nextConnectionId = 1
  // Undefined unless an inspector is looking: a publish then pays one comparison.
  let publishTap: PublishTap | undefined

  /** An unbuildable frame is counted and logged, never delivered, never thrown. */
  const buildFailed = (event: EventDefinition, error: OutboundError) =>
    Effect.zipRight(
      Effect.sync(() => metrics.dropped(event.scope, event.type, error.reason)),
      Effect.logWarning(`gateway.${event.scope}_fanout.${error.reason}`).pipe(
        Effect.annotateLogs({
          event_type: event.type,
          detail: "detail" in error ? error.detail : error.bytes
        }),
        Effect.zipRight(Effect.fail(error))
      )
    )

  /** Encodes once. A built frame is returned as is (an `Either` is an Effect): nothing to allocate. */
  const build = <E extends EventDefinition>(
    event: E,
    payload: PayloadOf<E>
  ): Effect.Effect<Outbound.Frame, OutboundError> => {
    const encoded = Outbound.encode(event, payload, maxBytes)
    return Either.isRight(encoded) ? encoded : buildFailed(event, encoded.left)
  }

  /** Who receives a route's frame on this node: an index lookup (a user route: one per user). */
  const recipientsOf = (route: Bus.Route): Effect.Effect<ReadonlyArray<Connection>> => {
    if (route.scope === "channel") return registry.channelMembers(route.guildId, route.channelId)
    if (route.scope === "guild") return registry.guildMembers(route.guildId)
    if (route.userIds.length === 1) return registry.userMembers(route.userIds[0]!)
    // A connection belongs to one user and the ids are distinct: the lists are disjoint, one loop serves all.
    return Effect.map(
      Effect.forEach(route.userIds, (userId) => registry.userMembers(userId)),
      (lists) => lists.flat()
    )
  }

  /** Every channel / guild event carries its routing ids (the manifest's scope contract). */
  const routeOf = (event: EventDefinition, payload: unknown): Bus.Route => {
    const target = payload as { readonly guild_id: GuildId; readonly channel_id: ChannelId }
    return event.scope === "channel"
      ? { scope: "channel", guildId: target.guild_id, channelId: target.channel_id }
      : { scope: "guild", guildId: target.guild_id }
  }

  // The hot path of every broadcast: plain steps rather than a generator, so the fiber that runs it
  // does as little as it can (a host app runs one per event).
  const publishUntraced = (event: EventDefinition, payload: unknown, route: Bus.Route) =>
    Effect.suspend((): Effect.Effect<number, PublishError> => {
      const encoded = Outbound.encode(event, payload as never, maxBytes)
      if (Either.isLeft(encoded)) return buildFailed(event, encoded.left)
      const frame = encoded.right
      return Effect.zipRight(
        followUps.publishing(event, payload, publisher),
        Effect.flatMap(recipientsOf(route), (recipients) => {
          // Onto the bus first: other nodes send to their recipients while this one loops over its own.
          bus.publish(route, frame)
          const { delivered } = Fanout.broadcast(metrics, frame, recipients)
          if (publishTap !== undefined) publishTap(frame, route, recipients.length, "local")
          return Effect.as(followUps.published(event, payload, publisher), delivered)
        })
      )
    })

  /** The same steps, each a span; the bus hand-off carries its span to the nodes that deliver it. */
  const publishTraced = (event: EventDefinition, payload: unknown, route: Bus.Route) =>
    Effect.gen(function* () {
      const frame = yield* build(event, payload as never).pipe(Effect.withSpan("gateway.publish.build"))
      yield* followUps.publishing(event, payload, publisher)
      const recipients = yield* recipientsOf(route)
      yield* Effect.annotateCurrentSpan("filament.bytes", frame.bytes)
      yield* Effect.useSpan("gateway.publish.bus_handoff", { kind: "producer" }, (span) =>
        Effect.sync(() => bus.publish(route, frame, Tracing.traceparent(span)))
      )
      const { delivered } = yield* Effect.sync(() => Fanout.broadcast(metrics, frame, recipients)).pipe(
        Effect.withSpan("gateway.publish.fanout", {
          attributes: { "filament.recipients": recipients.length }
        })
      )
      if (publishTap !== undefined) publishTap(frame, route, recipients.length, "local")
      yield* followUps.published(event, payload, publisher)
      return delivered
    }).pipe(
      Effect.withSpan("gateway.publish", {
        attributes: { "filament.event_type": event.type, "filament.scope": event.scope }
      })
    )

  /** Traced when the caller is (a traced command) or when a new trace is sampled. */
  const publishRoute = tracing.enabled
    ? (event: EventDefinition, payload: unknown, route: Bus.Route) =>
        Effect.flatMap(Effect.serviceOption(Tracer.ParentSpan), (parent) =>
          Option.isSome(parent) || tracing.sampleRoot()
            ? publishTraced(event, payload, route)
            : publishUntraced(event, payload, route)
        )
    : publishUntraced

  const publisher: Publisher = {
    publish: (event, payload) => publishRoute(event, payload, routeOf(event, payload)),
    publishToUsers: (event, payload, userIds) =>
      publishRoute(event, payload, { scope: "user", userIds: [...new Set(userIds)] }),
    send: (connection, event, payload) =>
      Effect.map(build(event, payload), (frame) => {
        const result = connection.deliver(frame)
        if (result === "sent" || result === "queued") metrics.emitted("connection", event.type, 1)
        else metrics.dropped("connection", event.type, result === "evicted" ? "full_queue" : "closed")
        return result
      })
  }

  const ingress = Ingress.make({
    maxEventBytes: maxBytes,
    maxPendingCommands: config.maxPendingCommands,
    commandTimeout: config.commandTimeout,
    metrics,
    registry,
    access,
    messages,
    followUps,
    publisher,
    tracing,
    now: () => clock.unsafeCurrentTimeMillis(),
    run: (effect) => run(effect)
  })

  /** The one cleanup path: leave every index in one update, then the follow-ups. */
  const cleanup = (connection: Connection, reason: DisconnectReason) =>
    Effect.gen(function* () {
      const outcome = yield* registry.unregister(connection)
      if (outcome.removed) yield* followUps.disconnected({ ...outcome, connection, reason }, publisher)
    }).pipe(Effect.catchAllCause((cause) => Effect.logError("gateway.disconnect.cleanup_failed", cause)))

  const onDisconnect = (
    connection: Connection,
    reason: DisconnectReason,
    discarded: ReadonlyArray<Outbound.Frame>
  ) => {
    for (const frame of discarded) metrics.dropped(frame.scope, frame.eventType, "closed")
    metrics.disconnect(reason)
    metrics.connectionsChanged(-1)
    if (connection.registered) run(cleanup(connection, reason))
  }

  const wss = yield* Effect.acquireRelease(
    Effect.sync(() => {
      const options: ServerOptions<typeof GatewaySocket> & { readonly closeTimeout: number } = {
        WebSocket: GatewaySocket,
        noServer: true,
        maxPayload: maxBytes,
        perMessageDeflate: false,
        clientTracking: false,
        // ws 8.23 option, not yet in @types/ws: how long a close handshake may take.
        closeTimeout: Duration.toMillis(config.closeGrace)
      }
      return new WebSocketServer(options)
    }),
    (server) => Effect.sync(() => server.close())
  )

  // Shared by every socket: ws calls them with `this` = the socket.
  function onMessage(this: WebSocket, data: RawData, isBinary: boolean) {
    const connection = connectionOf(this)
    // A bug must cost this connection (1011), never the process that serves all the others.
    try {
      ingress.onFrame(connection, data, isBinary)
    } catch (defect) {
      connection.close("internal_error")
      run(Effect.logError("gateway.frame.defect", defect))
    }
  }
  function onError(this: WebSocket, error: Error & { code?: string }) {
    // ws has already sent the close for a frame it refused itself (GatewaySocket.close, above).
    const reason = wsErrorReason(error.code)
    if (reason === "invalid_envelope") metrics.parseRejected("invalid_envelope")
    connectionOf(this).closedByPeer(reason)
  }
  function onClose(this: WebSocket, code: number) {
    const connection = connectionOf(this)
    connection.closedByPeer(code === 1006 ? "connection_closed" : "client_close")
    live.delete(connection)
    if (live.size === 0) onAllClosed?.()
  }

  const attach = (socket: GatewaySocket, transport: Socket, principal: Principal): Connection => {
    const connection = new Connection(
      nextConnectionId++,
      principal,
      socket,
      transport,
      limits,
      clock.unsafeCurrentTimeMillis(),
      onDisconnect
    )
    socket.connection = connection
    metrics.connectionsChanged(1)
    live.add(connection)
    socket.on("message", onMessage)
    socket.on("error", onError)
    socket.on("close", onClose)
    return connection
  }

  /** Upgrades past the per-user cap check and not yet registered, per user. */
  const upgrading = new Map<UserId, number>()

  /** Drain has begun: the upgrade is refused, whichever step of admission it had reached. */
  const refuseDraining = (socket: Duplex) => {
    metrics.connectionRejected("shutting_down")
    refuseUpgrade(socket, 503, "shutting_down")
  }

  const upgrade = (request: IncomingMessage, socket: Duplex, head: Buffer) =>
    Effect.gen(function* () {
      const token = accessToken(request)
      // Bounded before any verifier sees it: a huge token costs nothing but this comparison.
      const verified = yield* Effect.either(
        token.length > config.maxTokenBytes
          ? new Unauthorized({ reason: "invalid_token", detail: "token over GATEWAY_MAX_TOKEN_BYTES" })
          : // Still running when the gateway's scope ends (drain is over): the socket is answered, not leaked.
            Effect.onInterrupt(verifier.verify(token), () => Effect.sync(() => refuseDraining(socket)))
      )
      if (verified._tag === "Left") {
        metrics.authFailure("unauthorized")
        yield* Effect.logDebug(`gateway.auth.rejected: ${verified.left.reason}`)
        return refuseUpgrade(socket, 401, "invalid_credentials")
      }
      const principal = verified.right
      const { userId } = principal
      const existing = yield* registry.userMembers(userId)
      const inFlight = upgrading.get(userId) ?? 0
      if (existing.length + inFlight >= config.maxConnectionsPerUser) {
        metrics.connectionRejected("too_many_connections")
        return refuseUpgrade(socket, 429, "too_many_connections")
      }
      // Held until the connection is registered (or lost): simultaneous upgrades count against the cap.
      upgrading.set(userId, inFlight + 1)
      yield* Effect.ensuring(
        establish(request, socket, head, principal),
        Effect.sync(() => {
          const left = upgrading.get(userId)! - 1
          if (left === 0) upgrading.delete(userId)
          else upgrading.set(userId, left)
        })
      )
    }).pipe(
      Effect.catchAllCause((cause) =>
        Effect.zipRight(
          Effect.sync(() => socket.destroy()),
          Effect.logError("gateway.upgrade.failed", cause)
        )
      )
    )

  /** An admitted upgrade: the WebSocket handshake, `ready`, then the registry. */
  const establish = (request: IncomingMessage, socket: Duplex, head: Buffer, principal: Principal) =>
    Effect.gen(function* () {
      const connection = yield* Effect.async<Connection | undefined>((resume) => {
        // Drain may have begun while the token was verified. ws completes the handshake and calls back
        // synchronously, so nothing can begin draining between this check and `attach`.
        if (!accepting) {
          refuseDraining(socket)
          return resume(Effect.succeed(undefined))
        }
        // ws drops a socket that closed meanwhile without calling back.
        const closedFirst = () => resume(Effect.succeed(undefined))
        socket.once("close", closedFirst)
        wss.handleUpgrade(request, socket, head, (ws) => {
          // Not kept for the connection's lifetime: it would retain this finished fiber.
          socket.off("close", closedFirst)
          // ws handles the socket's errors from here on; ours would stay registered for its lifetime.
          socket.off("error", destroyOnError)
          resume(Effect.succeed(attach(ws, socket as Socket, principal)))
        })
      })
      if (connection === undefined) return
      // `ready` is the first text frame: it is written before any command can run.
      yield* publisher
        .send(connection, Ready, { user_id: principal.userId })
        .pipe(Effect.catchAll(() => Effect.sync(() => connection.close("internal_error"))))
      yield* registry.register(connection)
      const open = yield* Effect.sync(() => {
        connection.registered = true
        return connection.isOpen
      })
      if (open) ingress.resume(connection)
      else yield* cleanup(connection, connection.disconnectReason ?? "connection_closed")
    })

  const pingIntervalMillis = Duration.toMillis(config.pingInterval)
  const pongTimeoutMillis = Duration.toMillis(config.pongTimeout)

  /** One pass over every connection: token expiry (4010), pong deadline (4009), pings. */
  const sweep = Effect.flatMap(Clock.currentTimeMillis, (now) =>
    Effect.sync(() => {
      for (const connection of live) {
        if (!connection.isOpen) continue
        if (now >= connection.principal.expiresAt) connection.close("token_expired")
        else if (connection.pingSentAt !== undefined) {
          if (now - connection.pingSentAt >= pongTimeoutMillis) connection.close("heartbeat_timeout")
        } else if (now - connection.lastPingAt >= pingIntervalMillis) connection.ping(now)
      }
    })
  )
  yield* Effect.forkScoped(
    Effect.repeat(
      sweep.pipe(Effect.catchAllDefect((defect) => Effect.logError("gateway.heartbeat.defect", defect))),
      Schedule.spaced(config.heartbeatSweep)
    )
  )
  // The follow-ups' own background work (the voice expiry sweep) lives as long as the gateway.
  yield* Effect.forkScoped(followUps.start(publisher))

  /** Another node's frame to this node's recipients: already built, so only the lookup and the loop. */
  const deliverRemote = ({ frame, publishedAt, route }: Bus.Delivery) =>
    Effect.gen(function* () {
      metrics.busLag(Math.max(0, clock.unsafeCurrentTimeMillis() - publishedAt) / 1000)
      const recipients = yield* recipientsOf(route)
      Fanout.broadcast(metrics, frame, recipients)
      if (publishTap !== undefined) publishTap(frame, route, recipients.length, "bus")
      // The after-delivery follow-ups (revocation) act on this node's connections too; the
      // before-delivery ones (projections, dual emit) ran once, on the publishing node.
      // Only the events a follow-up acts on are decoded again.
      if (!followUps.publishedEvents.has(frame.eventType)) return
      const event = Manifest.lookup(frame.eventType)
      if (event === undefined) return
      const payload = remotePayload(event, frame)
      if (Either.isRight(payload)) return yield* followUps.published(event, payload.right, publisher)
      // Its follow-up (revocation) did not run on this node: worth an alert, not a crash.
      metrics.busUndecodable(frame.eventType)
      yield* Effect.logWarning(
        `gateway.bus_delivery.undecodable event_type=${frame.eventType}: ${payload.left.slice(0, MAX_DECODE_ISSUE_CHARS)}`
      )
    })
  /** A traced publish is continued here: this node's delivery is a span of the publisher's trace. */
  const deliverRemoteTraced = (delivery: Bus.Delivery) =>
    Option.match(delivery.trace === undefined ? Option.none() : Tracing.parentOf(delivery.trace), {
      onNone: () => deliverRemote(delivery),
      onSome: (parent) =>
        Effect.withSpan(deliverRemote(delivery), "gateway.remote_delivery", {
          parent,
          kind: "consumer",
          attributes: {
            "filament.event_type": delivery.frame.eventType,
            "filament.scope": delivery.route.scope
          }
        })
    })
  // One fiber per node delivers the bus's frames in arrival order (per publisher: publish order).
  yield* Effect.forkScoped(
    Effect.forever(
      Effect.flatMap(Queue.take(bus.deliveries), tracing.enabled ? deliverRemoteTraced : deliverRemote).pipe(
        Effect.catchAllDefect((defect) => Effect.logError("gateway.bus_delivery.defect", defect))
      )
    )
  )

  const allClosed = Effect.async<void>((resume) => {
    if (live.size === 0) return resume(Effect.void)
    onAllClosed = () => resume(Effect.void)
  })

  // Drain on scope close: refuse new upgrades, close everyone with 1001, wait a bounded grace for the
  // close handshakes (writers flush meanwhile), then drop whoever is left.
  yield* Effect.addFinalizer(() =>
    Effect.gen(function* () {
      accepting = false
      for (const connection of live) connection.close("going_away")
      // Finalizers are uninterruptible: only an interruptible wait lets the grace timeout win.
      yield* Effect.timeout(Effect.interruptible(allClosed), config.closeGrace).pipe(Effect.ignore)
      for (const connection of live) connection.terminate()
      live.clear()
    })
  )

  const gateway: GatewayShape = {
    ...publisher,
    handleUpgrade: (request, socket, head) => {
      // Checked before forking: once the gateway's scope has ended there is no fiber left to answer it.
      if (!accepting) return refuseDraining(socket)
      // Until ws owns the socket, a reset must not become an unhandled 'error'.
      socket.on("error", destroyOnError)
      run(upgrade(request, socket, head))
    },
    isAccepting: () => accepting,
    busHealthy: bus.healthy,
    connectionCount: () => live.size,
    setPublishTap: (tap) => {
      publishTap = tap
    },
    runCommand: (connection, command) => {
      if (!connection.isOpen) return false
      const pending = (connection.pendingCommands ??= [])
      if (pending.length >= config.maxPendingCommands) return false
      pending.push(command)
      ingress.resume(connection)
      return true
    }
  }
  return gateway
})

/**
 * The gateway with its services. Needs `GatewayConfig`, `GatewayMetrics`, `SubscriptionRegistry`,
 * `TokenVerifier`, `AccessPolicy`, `MessageHandler` and `SubscriptionFollowUps`; `layerDefaults`
 * provides all but the config.
 */
export const layer = Layer.scoped(Gateway, make)

/**
 * The default services: JWT verifier, claims policy, plain-text messages, and the chat follow-ups
 * (presence, voice snapshots, revocation, dual emit) over in-memory `Presence` / `VoiceParticipants`.
 */
export const layerDefaults = Layer.mergeAll(
  Auth.layerJwt,
  Access.layerClaims,
  Messages.layerPlainText,
  Tracing.layer,
  ClusterPresence.layerFollowUps.pipe(
    Layer.provide(ChatFollowUps.layer),
    // Presence and voice are in Redis (with the dead-node reaper above) when GATEWAY_REDIS_URL is set.
    Layer.provideMerge(Layer.mergeAll(ClusterPresence.layer, ClusterVoice.layer, Registry.layer)),
    // The bus follows the registry's interest: built from the config (Redis or in-memory).
    Layer.provideMerge(Bus.layer)
  )
).pipe(Layer.provideMerge(Metrics.layer))

/** Gateway + default services; provide a `GatewayConfig` (e.g. `Config.layer`). */
export const layerDefault = layer.pipe(Layer.provideMerge(layerDefaults))
