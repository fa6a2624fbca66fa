/**
 * The gateway as a server under test: the same layers `src/server/main.ts` composes (config from the
 * `GATEWAY_*` environment, default services, the HTTP + WebSocket server), plus the bench control
 * plane. Events go through the public in-process API, `Gateway.publish(MessageCreate, payload)`, one
 * Effect per event, as a host app would call it. Clients authenticate with real HS256 tokens and
 * subscribe over the wire; nothing inside the gateway is bypassed or stubbed. With
 * `BENCH_RECOVERY_SHAPE` set, publish number `seq` is the recovery benchmark's (RecoveryLayout.ts:
 * channel, guild and user events over many streams) instead of the hot channel's `message_create`.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Effect, Layer, Runtime } from "effect"
import type { PayloadOf } from "../../src/protocol/EventDefinition.js"
import { MessageCreate } from "../../src/protocol/events/message.js"
import { ProfileAvatarUpdate } from "../../src/protocol/events/profile.js"
import { WorkspaceUpdate } from "../../src/protocol/events/workspace.js"
import type { UserId } from "../../src/protocol/Ids.js"
import * as Config from "../../src/server/Config.js"
import * as Composition from "../../src/server/Composition.js"
import * as Gateway from "../../src/server/core/Gateway.js"
import * as Http from "../../src/server/edge/Http.js"
import { RECOVERY_SHAPE_ENV, recoveryPublish, type RecoveryShape } from "../RecoveryLayout.js"
import { messageSnapshot } from "../Workload.js"
import { startControl } from "./Control.js"

const GatewayLive = Http.layer.pipe(
  Layer.provideMerge(Composition.layerGateway),
  Layer.provideMerge(Config.layer)
)

const program = Effect.gen(function* () {
  const gateway = yield* Gateway.Gateway
  const { port } = yield* Http.GatewayServer
  const runSync = Runtime.runSync(yield* Effect.runtime<never>())
  // The snapshot's ids are canonical ULIDs; the brands exist only at compile time.
  const payload = (seq: number) => messageSnapshot(seq) as unknown as PayloadOf<typeof MessageCreate>
  const recoveryShape = process.env[RECOVERY_SHAPE_ENV]
  const publishRecovery = (shape: RecoveryShape) => (seq: number) => {
    const next = recoveryPublish(shape, seq)
    switch (next.scope) {
      case "channel":
        return gateway.publish(MessageCreate, next.payload as unknown as PayloadOf<typeof MessageCreate>)
      case "guild":
        return gateway.publish(WorkspaceUpdate, next.payload as unknown as PayloadOf<typeof WorkspaceUpdate>)
      case "user":
        return gateway.publishToUsers(
          ProfileAvatarUpdate,
          next.payload as unknown as PayloadOf<typeof ProfileAvatarUpdate>,
          next.users as ReadonlyArray<UserId>
        )
    }
  }
  const publishEvent =
    recoveryShape === undefined
      ? (seq: number) => gateway.publish(MessageCreate, payload(seq))
      : publishRecovery(JSON.parse(recoveryShape) as RecoveryShape)
  let lastDelivered = 0
  yield* Effect.sync(() =>
    startControl({
      name: "gateway",
      wsPort: port,
      publish: (seq) => {
        lastDelivered = runSync(publishEvent(seq))
      },
      info: () => ({ connections: gateway.connectionCount(), lastDelivered })
    })
  )
  return yield* Effect.never
})

NodeRuntime.runMain(program.pipe(Effect.provide(GatewayLive)))
