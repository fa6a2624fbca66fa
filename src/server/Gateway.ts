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
import { Clock, Context, Duration, Effect, Either, FiberSet, Layer, Queue, Schedule } from "effect"
import { WebSocket, WebSocketServer, type RawData, type ServerOptions } from "ws"
import type { Command } from "../protocol/Commands.js"
import type { EventDefinition, PayloadOf } from "../protocol/EventDefinition.js"
import { decodePayload } from "../protocol/EventDefinition.js"
import { Ready } from "../protocol/events/connection.js"
import { Manifest } from "../protocol/Manifest.js"
import type { ChannelId, GuildId, UserId } from "../protocol/Ids.js"
import { AccessPolicy } from "./Access.js"
import * as Access from "./Access.js"
import * as Auth from "./Auth.js"
import { TokenVerifier, type Principal } from "./Auth.js"
import { GatewayConfig } from "./Config.js"
import { Connection, type DisconnectReason } from "./Connection.js"
import * as Bus from "./EventBus.js"
import { Unauthorized, type OutboundError, type PublishError } from "./Errors.js"
import * as Fanout from "./Fanout.js"
import * as ChatFollowUps from "./ChatFollowUps.js"
import * as ClusterPresence from "./ClusterPresence.js"
import * as ClusterVoice from "./ClusterVoice.js"
import { SubscriptionFollowUps, type Publisher } from "./FollowUps.js"
import * as Ingress from "./Ingress.js"
import { MessageHandler } from "./Messages.js"
import * as Messages from "./Messages.js"
import { GatewayMetrics } from "./Metrics.js"
import * as Metrics from "./Metrics.js"
import * as Outbound from "./Outbound.js"
import { SubscriptionRegistry } from "./Registry.js"
import * as Registry from "./Registry.js"

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

const WS_ERR_UNSUPPORTED_MESSAGE_LENGTH = "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH"
const WS_ERR_INVALID_UTF8 = "WS_ERR_INVALID_UTF8"

/** The connection of a socket the gateway attached (its listeners only exist after attach). */
const connectionOf = (socket: WebSocket): Connection => (socket as GatewaySocket).connection!

/**
 * ws refuses an oversized frame itself (from the frame header, before buffering it) and closes
 * with a bare 1009; this gives that close the documented reason. A text frame that is not UTF-8
 * (ws: bare 1007) is not JSON text: it closes like every other such frame, 4001 `invalid_envelope`.
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
    if (data === undefined && code === 1009) return super.close(code, "event_too_large")
    if (data === undefined && code === 1007) return super.close(4001, "invalid_envelope")
    super.close(code, data)
  }
}

/** The typed payload of a frame another node built (it was encoded from a valid payload there). */
const remotePayload = (event: EventDefinition, frame: Outbound.Frame): unknown => {
  const envelope = JSON.parse(frame.wire.toString("utf8", frame.wire.length - frame.bytes)) as { d: unknown }
  const payload = decodePayload(event, envelope.d, { strict: false })
  return Either.isRight(payload) ? payload.right : undefined
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
  const header = request.headers.authorization
  return header !== undefined && header.startsWith("Bearer ") ? header.slice("Bearer ".length) : ""
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

  const publisher: Publisher = {
    // The hot path of every broadcast: plain steps rather than a generator, so the fiber that runs it
    // does as little as it can (a host app runs one per event).
    publish: (event, payload) =>
      Effect.suspend((): Effect.Effect<number, PublishError> => {
        const encoded = Outbound.encode(event, payload, maxBytes)
        if (Either.isLeft(encoded)) return buildFailed(event, encoded.left)
        const frame = encoded.right
        // Every channel / guild event carries its routing ids (the manifest's scope contract).
        const target = payload as unknown as { readonly guild_id: GuildId; readonly channel_id: ChannelId }
        const recipients =
          event.scope === "channel"
            ? registry.channelMembers(target.guild_id, target.channel_id)
            : registry.guildMembers(target.guild_id)
        return Effect.zipRight(
          followUps.publishing(event, payload, publisher),
          Effect.flatMap(recipients, (recipients) => {
            const route: Bus.Route =
              event.scope === "channel"
                ? { scope: "channel", guildId: target.guild_id, channelId: target.channel_id }
                : { scope: "guild", guildId: target.guild_id }
            // Onto the bus first: other nodes send to their recipients while this one loops over its own.
            bus.publish(route, frame)
            const { delivered } = Fanout.broadcast(metrics, frame, recipients)
            if (publishTap !== undefined) publishTap(frame, route, recipients.length, "local")
            return Effect.as(followUps.published(event, payload, publisher), delivered)
          })
        )
      }),
    publishToUsers: (event, payload, userIds) =>
      Effect.gen(function* () {
        const frame = yield* build(event, payload)
        yield* followUps.publishing(event, payload, publisher)
        // A connection belongs to one user: the users' member lists are disjoint, one loop serves all.
        const recipients: Array<Connection> = []
        const users = new Set(userIds)
        for (const userId of users) recipients.push(...(yield* registry.userMembers(userId)))
        const route: Bus.Route = { scope: "user", userIds: [...users] }
        bus.publish(route, frame)
        const { delivered } = Fanout.broadcast(metrics, frame, recipients)
        if (publishTap !== undefined) publishTap(frame, route, recipients.length, "local")
        yield* followUps.published(event, payload, publisher)
        return delivered
      }),
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
    // ws has already answered an oversized frame (1009) or a non-UTF-8 text frame (4001, above).
    if (error.code === WS_ERR_INVALID_UTF8) {
      metrics.parseRejected("invalid_envelope")
      connectionOf(this).closedByPeer("invalid_envelope")
      return
    }
    connectionOf(this).closedByPeer(
      error.code === WS_ERR_UNSUPPORTED_MESSAGE_LENGTH ? "event_too_large" : "socket_error"
    )
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
      const recipients =
        route.scope === "channel"
          ? yield* registry.channelMembers(route.guildId, route.channelId)
          : route.scope === "guild"
            ? yield* registry.guildMembers(route.guildId)
            : yield* registry.userMembers(route.userIds[0]!)
      Fanout.broadcast(metrics, frame, recipients)
      if (publishTap !== undefined) publishTap(frame, route, recipients.length, "bus")
      // The after-delivery follow-ups (revocation) act on this node's connections too; the
      // before-delivery ones (projections, dual emit) ran once, on the publishing node.
      const event = Manifest.lookup(frame.eventType)
      const payload = event === undefined ? undefined : remotePayload(event, frame)
      if (event !== undefined && payload !== undefined) yield* followUps.published(event, payload, publisher)
    })
  // One fiber per node delivers the bus's frames in arrival order (per publisher: publish order).
  yield* Effect.forkScoped(
    Effect.forever(
      Effect.flatMap(Queue.take(bus.deliveries), deliverRemote).pipe(
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
