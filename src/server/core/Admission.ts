/**
 * Admission: how an upgrade request becomes a connection — the token (bounded, then verified), the
 * per-user connection cap, the WebSocket handshake on the gateway's `ws` server (noServer,
 * `maxPayload` = the event cap, no compression), `attach`, `ready`, registration — and the one
 * cleanup path when the connection ends. A refused upgrade gets a plain JSON HTTP error.
 */
import type { IncomingMessage } from "node:http"
import type { Socket } from "node:net"
import type { Duplex } from "node:stream"
import { Duration, Effect } from "effect"
import type { Clock, Scope } from "effect"
import { WebSocket, WebSocketServer, type RawData, type ServerOptions } from "ws"
import { closeCodeFor } from "../../protocol/CloseCodes.js"
import { Ready } from "../../protocol/events/connection.js"
import type { UserId } from "../../protocol/Ids.js"
import { userStream } from "../../protocol/Streams.js"
import type { Principal, TokenVerifierShape } from "../Auth.js"
import type { GatewayConfigShape } from "../Config.js"
import { Unauthorized } from "../Errors.js"
import type { GatewayMetricsShape } from "../Metrics.js"
import type { SubscriptionRegistryShape } from "../registry/Subscriptions.js"
import {
  Connection,
  corkUntilNextTick,
  type DisconnectReason,
  wsCloseReason,
  wsErrorReason
} from "./Connection.js"
import type { Ingress } from "./Ingress.js"
import { ConnectionRecovery, type Recovery } from "./Recovery.js"
import type { LiveConnections } from "./LiveConnections.js"
import type { Frame } from "./Outbound.js"
import {
  accessToken,
  recoveryRequest,
  refuseRaw,
  upgradeQuery,
  type RecoveryRequest
} from "./UpgradeRequest.js"
import type { GatewayHooksShape, Publisher } from "./Seams.js"

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

/** The upgrading socket's `error` listener (shared: `this` is the socket). */
function destroyOnError(this: Duplex) {
  this.destroy()
}

export interface AdmissionOptions {
  readonly config: GatewayConfigShape
  readonly metrics: GatewayMetricsShape
  readonly registry: SubscriptionRegistryShape
  readonly verifier: TokenVerifierShape
  readonly hooks: GatewayHooksShape
  readonly publisher: Publisher
  readonly ingress: Ingress
  readonly recovery: Recovery
  readonly live: LiveConnections
  readonly clock: Clock.Clock
  /** Forks a short-lived effect, owned by the gateway's scope. */
  readonly run: (effect: Effect.Effect<void>) => void
}

/**
 * Attach: a handshaken socket becomes a connection (its listeners, its count, the live set); and the
 * one cleanup path when a registered connection ends: leave every index in one update, then the hooks.
 */
const makeAttach = (options: AdmissionOptions) => {
  const { config, metrics, registry, hooks, publisher, ingress, live, clock, run } = options
  const limits = {
    outboundQueue: config.outboundQueue,
    socketHighWaterBytes: config.socketHighWaterBytes,
    ingressEventsPerWindow: config.ingressEventsPerWindow,
    ingressWindowMillis: Duration.toMillis(config.ingressWindow)
  }
  let nextConnectionId = 1

  const cleanup = (connection: Connection, reason: DisconnectReason) =>
    Effect.gen(function* () {
      const outcome = yield* registry.unregister(connection)
      if (outcome.removed) yield* hooks.disconnected({ ...outcome, connection, reason }, publisher)
    }).pipe(Effect.catchAllCause((cause) => Effect.logError("gateway.disconnect.cleanup_failed", cause)))

  const onDisconnect = (
    connection: Connection,
    reason: DisconnectReason,
    discarded: ReadonlyArray<Frame>
  ) => {
    for (const frame of discarded) metrics.dropped(frame.scope, frame.eventType, "closed", frame.events)
    metrics.disconnect(reason)
    metrics.connectionsChanged(-1)
    if (connection.registered) run(cleanup(connection, reason))
  }

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
    live.closed(connection)
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
  return { attach, cleanup }
}

/** The gateway's `ws` server: noServer (admission hands it each upgrade), closed with the scope. */
const webSocketServer = (config: GatewayConfigShape) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const serverOptions: ServerOptions<typeof GatewaySocket> & { readonly closeTimeout: number } = {
        WebSocket: GatewaySocket,
        noServer: true,
        maxPayload: config.maxEventBytes,
        perMessageDeflate: false,
        clientTracking: false,
        // ws 8.23 option, not yet in @types/ws: how long a close handshake may take.
        closeTimeout: Duration.toMillis(config.closeGrace)
      }
      return new WebSocketServer(serverOptions)
    }),
    (server) => Effect.sync(() => server.close())
  )

/** The `upgrade` listener for `GET /gateway/ws`; its `ws` server lives as long as the scope. */
export const make = (
  options: AdmissionOptions
): Effect.Effect<(request: IncomingMessage, socket: Duplex, head: Buffer) => void, never, Scope.Scope> =>
  Effect.gen(function* () {
    const { config, metrics, registry, verifier, publisher, ingress, live, run } = options
    const recovery = options.recovery
    const wss = yield* webSocketServer(config)
    const { attach, cleanup } = makeAttach(options)

    /** Upgrades past the per-user cap check and not yet registered, per user. */
    const upgrading = new Map<UserId, number>()

    /** Drain has begun: the upgrade is refused, whichever step of admission it had reached. */
    const refuseDraining = (socket: Duplex) => {
      metrics.connectionRejected("shutting_down")
      refuseRaw(socket, 503, "shutting_down")
    }

    const upgrade = (request: IncomingMessage, socket: Duplex, head: Buffer) =>
      Effect.gen(function* () {
        const query = upgradeQuery(request)
        const asked = recoveryRequest(query)
        if (asked._tag === "Invalid") {
          metrics.connectionRejected("invalid_recovery")
          return refuseRaw(socket, 400, "invalid_recovery")
        }
        const token = accessToken(request, query)
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
          return refuseRaw(socket, 401, "invalid_credentials")
        }
        const principal = verified.right
        const { userId } = principal
        const existing = yield* registry.userMembers(userId)
        const inFlight = upgrading.get(userId) ?? 0
        if (existing.length + inFlight >= config.maxConnectionsPerUser) {
          metrics.connectionRejected("too_many_connections")
          return refuseRaw(socket, 429, "too_many_connections")
        }
        // Held until the connection is registered (or lost): simultaneous upgrades count against the cap.
        upgrading.set(userId, inFlight + 1)
        yield* Effect.ensuring(
          establish(request, socket, head, principal, asked),
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
    const establish = (
      request: IncomingMessage,
      socket: Duplex,
      head: Buffer,
      principal: Principal,
      asked: RecoveryRequest
    ) =>
      Effect.gen(function* () {
        // Not `Effect.async`: its resume, though called back synchronously, continues this fiber only
        // on the scheduler's next turn (after the 101 had left on its own): one hop per upgrade.
        const connection = yield* Effect.sync(() => {
          // Drain may have begun while the token was verified. ws completes the handshake and calls back
          // synchronously (no `verifyClient`), so nothing can begin draining between this check and `attach`.
          if (!live.isAccepting()) {
            refuseDraining(socket)
            return undefined
          }
          // The 101 response and `ready` (written right after, in this tick) leave in one write.
          corkUntilNextTick(socket as Socket)
          let attached: Connection | undefined
          // Without a call back ws has refused the request (400) or dropped a socket already closing.
          wss.handleUpgrade(request, socket, head, (ws) => {
            // ws handles the socket's errors from here on; ours would stay registered for its lifetime.
            socket.off("error", destroyOnError)
            attached = attach(ws, socket as Socket, principal)
          })
          return attached
        })
        if (connection === undefined) return
        // `ready` is the first text frame: it is written before any command can run.
        yield* publisher
          .send(connection, Ready, { user_id: principal.userId })
          .pipe(Effect.catchAll(() => Effect.sync(() => connection.close("internal_error"))))
        if (asked._tag === "OptedIn") {
          const state = new ConnectionRecovery(asked.userSince, config.outboundQueue)
          connection.recovery = state
          // Held from before the registry routes user events here until the user stream's answer is out.
          state.hold(userStream(principal.userId))
        }
        yield* registry.register(connection)
        const open = yield* Effect.sync(() => {
          connection.registered = true
          return connection.isOpen
        })
        if (open && connection.recovery !== undefined) {
          yield* recovery.recoverUser(connection, connection.recovery)
        }
        if (open) ingress.resume(connection)
        else yield* cleanup(connection, connection.disconnectReason ?? "connection_closed")
      })

    return (request: IncomingMessage, socket: Duplex, head: Buffer) => {
      // Checked before forking: once the gateway's scope has ended there is no fiber left to answer it.
      if (!live.isAccepting()) return refuseDraining(socket)
      // Until ws owns the socket, a reset must not become an unhandled 'error'.
      socket.on("error", destroyOnError)
      run(upgrade(request, socket, head))
    }
  })
