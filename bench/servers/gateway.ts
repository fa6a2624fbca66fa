/**
 * The gateway as a server under test: the same layers `src/server/main.ts` composes (config from the
 * `GATEWAY_*` environment, default services, the HTTP + WebSocket server), plus the bench control
 * plane. Events go through the public in-process API, `Gateway.publish(MessageCreate, payload)`, one
 * Effect per event, as a host app would call it. Clients authenticate with real HS256 tokens and
 * subscribe over the wire; nothing inside the gateway is bypassed or stubbed.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Effect, Layer, Runtime } from "effect"
import type { PayloadOf } from "../../src/protocol/EventDefinition.js"
import { MessageCreate } from "../../src/protocol/events/message.js"
import * as Config from "../../src/server/Config.js"
import * as Composition from "../../src/server/Composition.js"
import * as Gateway from "../../src/server/core/Gateway.js"
import * as Http from "../../src/server/edge/Http.js"
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
  let lastDelivered = 0
  yield* Effect.sync(() =>
    startControl({
      name: "gateway",
      wsPort: port,
      publish: (seq) => {
        lastDelivered = runSync(gateway.publish(MessageCreate, payload(seq)))
      },
      info: () => ({ connections: gateway.connectionCount(), lastDelivered })
    })
  )
  return yield* Effect.never
})

NodeRuntime.runMain(program.pipe(Effect.provide(GatewayLive)))
