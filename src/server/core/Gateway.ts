/**
 * The connection core: sockets become connections (`Admission`), frames become commands
 * (`Ingress`), events become frames encoded once and delivered (`Broadcast`, `Outbound`, `Fanout`),
 * and the live connections are swept and drained (`LiveConnections`). What the core calls but does
 * not implement — hooks, access, messages, the event bus — is a service tag here (`Seams`, `Bus`);
 * `chat/` and `cluster/` implement them and the composition root (`../Layers.ts`) picks them.
 *
 * Gateway: the public service. It admits upgrades, runs the single heartbeat sweep and the remote
 * delivery fiber, and is the publish path (`publish`, `publishToUsers`) for the HTTP API and for a
 * host app in-process. Closing its scope stops accepting, closes every socket with 1001
 * `going_away` and lets writers flush for a bounded grace.
 */
import type { IncomingMessage } from "node:http"
import type { Duplex } from "node:stream"
import { Context, Effect, FiberSet, Layer } from "effect"
import type { Command } from "../../protocol/Commands.js"
import { TokenVerifier } from "../Auth.js"
import { GatewayConfig } from "../Config.js"
import { GatewayMetrics } from "../Metrics.js"
import { History } from "../recovery/History.js"
import { SubscriptionRegistry } from "../registry/Subscriptions.js"
import { Tracing } from "../Tracing.js"
import * as Admission from "./Admission.js"
import * as Broadcast from "./Broadcast.js"
import { EventBus } from "./Bus.js"
import type { Connection } from "./Connection.js"
import * as Ingress from "./Ingress.js"
import * as LiveConnections from "./LiveConnections.js"
import * as Recovery from "./Recovery.js"
import { AccessPolicy, GatewayHooks, MessageHandler, type Publisher } from "./Seams.js"

export type { PublishTap } from "./Broadcast.js"

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
  readonly setPublishTap: (tap: Broadcast.PublishTap | undefined) => void
  /**
   * Runs a command on a connection's behalf, in order with its own commands (the inspector's "drop
   * subscription"); false when the connection is closed or its command queue is full.
   */
  readonly runCommand: (connection: Connection, command: Command) => boolean
}

export class Gateway extends Context.Tag("filament/Gateway")<Gateway, GatewayShape>() {}

export const make = Effect.gen(function* () {
  const config = yield* GatewayConfig
  const metrics = yield* GatewayMetrics
  const registry = yield* SubscriptionRegistry
  const verifier = yield* TokenVerifier
  const hooks = yield* GatewayHooks
  const bus = yield* EventBus
  const access = yield* AccessPolicy
  const messages = yield* MessageHandler
  const tracing = yield* Tracing
  const history = yield* History
  const clock = yield* Effect.clock
  const run = yield* FiberSet.makeRuntime<never, void, never>()

  const broadcast = Broadcast.make({
    maxEventBytes: config.maxEventBytes,
    metrics,
    registry,
    hooks,
    bus,
    tracing,
    clock,
    history,
    busMaxLag: config.busMaxLag
  })
  const { publisher } = broadcast
  const recovery = Recovery.make({
    history,
    metrics,
    publisher,
    maxReplay: config.recoveryMaxReplay
  })
  const ingress = Ingress.make({
    maxEventBytes: config.maxEventBytes,
    maxPendingCommands: config.maxPendingCommands,
    commandTimeout: config.commandTimeout,
    metrics,
    registry,
    access,
    messages,
    hooks,
    publisher,
    recovery,
    tracing,
    now: () => clock.unsafeCurrentTimeMillis(),
    run: (effect) => run(effect)
  })
  const live = LiveConnections.make(config, ingress.timeOutCommands)
  const handleUpgrade = yield* Admission.make({
    config,
    metrics,
    registry,
    verifier,
    hooks,
    publisher,
    ingress,
    recovery,
    live,
    clock,
    run
  })

  yield* Effect.forkScoped(live.heartbeat)
  // The hooks' own background work (the voice expiry sweep, the presence reaper) lives as long as the gateway.
  yield* Effect.forkScoped(hooks.start(publisher))
  yield* Effect.forkScoped(broadcast.deliverRemote)
  // Drain on scope close (before the `ws` server, acquired above, closes).
  yield* Effect.addFinalizer(() => live.drain)

  const gateway: GatewayShape = {
    ...publisher,
    handleUpgrade,
    isAccepting: live.isAccepting,
    busHealthy: bus.healthy,
    connectionCount: live.size,
    setPublishTap: broadcast.setTap,
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
 * The gateway. Needs `GatewayConfig`, `GatewayMetrics`, `SubscriptionRegistry`, `TokenVerifier`,
 * `AccessPolicy`, `MessageHandler`, `GatewayHooks`, `EventBus` and `Tracing`; the composition root
 * (`Layers.layerServices`) provides all but the config.
 */
export const layer = Layer.scoped(Gateway, make)
