/**
 * The composition root: which implementation serves each service the gateway core needs. The
 * state a cluster shares (presence, the voice projection, the event bus) is in memory on one node
 * and in Redis when `GATEWAY_REDIS_URL` is set; the rest (JWT verifier, claims access policy,
 * plain-text messages, tracing, metrics, the chat hooks over the subscription registry) is the same
 * either way. A host app composes its own from the same layers to replace any of them.
 */
import { Effect, Layer, Option } from "effect"
import * as Auth from "./Auth.js"
import * as Access from "./chat/Access.js"
import * as ChatFollowUps from "./chat/ChatFollowUps.js"
import * as Messages from "./chat/Messages.js"
import * as Presence from "./chat/Presence.js"
import * as Voice from "./chat/Voice.js"
import * as ClusterPresence from "./cluster/ClusterPresence.js"
import * as ClusterVoice from "./cluster/ClusterVoice.js"
import * as RedisBus from "./cluster/EventBus.js"
import { GatewayConfig, type GatewayConfigShape } from "./Config.js"
import * as Bus from "./core/Bus.js"
import * as Gateway from "./core/Gateway.js"
import * as Metrics from "./Metrics.js"
import * as Subscriptions from "./registry/Subscriptions.js"
import * as Tracing from "./Tracing.js"

/** One node: the chat hooks over in-memory presence and voice, the subscription registry, no bus. */
const layerStateInMemory = ChatFollowUps.layer.pipe(
  Layer.provideMerge(Layer.mergeAll(Presence.layerMemory, Voice.layerMemory, Subscriptions.layer)),
  Layer.provideMerge(Bus.layerMemory)
)

/**
 * A cluster: the chat hooks (with the dead-node reaper) over Redis presence and voice, the
 * subscription registry, and the Redis bus that follows the registry's interest.
 */
const layerStateInRedis = (redis: Option.Option.Value<GatewayConfigShape["redis"]>) =>
  ClusterPresence.layerReaper.pipe(
    Layer.provide(ChatFollowUps.layer),
    Layer.provideMerge(
      Layer.mergeAll(ClusterPresence.layerRedis(redis), ClusterVoice.layerRedis(redis), Subscriptions.layer)
    ),
    Layer.provideMerge(RedisBus.layerRedis(redis))
  )

/**
 * Every service `Gateway.layer` needs, in memory or in Redis as the configuration says; provide a
 * `GatewayConfig` (e.g. `Config.layer`).
 */
export const layerServices = Layer.mergeAll(
  Auth.layerJwt,
  Access.layerClaims,
  Messages.layerPlainText,
  Tracing.layer,
  Layer.unwrapEffect(
    Effect.map(GatewayConfig, (config) =>
      Option.match(config.redis, {
        onNone: () => layerStateInMemory,
        onSome: layerStateInRedis
      })
    )
  )
).pipe(Layer.provideMerge(Metrics.layer))

/** The gateway over `layerServices`; provide a `GatewayConfig` (e.g. `Config.layer`). */
export const layerGateway = Gateway.layer.pipe(Layer.provideMerge(layerServices))
