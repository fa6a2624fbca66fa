/**
 * The inspector: a page served by the gateway itself (`/admin`) to see and steer a running node —
 * overview, explore, live tail, publish console. This folder owns it whole: the admin API routes
 * (this module), who gets an answer (`Guard`: rate limit, authentication, outcome count, security
 * headers), what a request may carry (`AdminRequests`), who may use them (`Session`), the actions on
 * one connection (`Actions`), the overview sampler (`Overview`), the registry queries (`Explore`),
 * the cluster view (`Cluster`), the live tail hub (`Tail`) and the page (`Assets`, built from
 * `page/`). It is off unless `GATEWAY_ADMIN_KEY` is set, and reaches the rest of the gateway only
 * through `Gateway`, `SubscriptionRegistry`, `GatewayMetrics` and `GatewayConfig` (and, for the
 * cluster view, the root's `RedisClient`).
 */
import { HttpRouter, HttpServerRequest } from "@effect/platform"
import { Duration, Effect, Either, Layer, Option } from "effect"
import { toJsonManifest } from "../../protocol/Manifest.js"
import { GatewayConfig } from "../Config.js"
import { Gateway } from "../core/Gateway.js"
import { AdminRoutes } from "../edge/Http.js"
import { decodePublishRequest, jsonResponse as json, publishResponse } from "../edge/Publish.js"
import * as HttpLimits from "../edge/HttpLimits.js"
import { GatewayMetrics } from "../Metrics.js"
import { SubscriptionRegistry } from "../registry/Subscriptions.js"
import { decodeUser, fieldErrors, readJson, refused, tailFilter } from "./AdminRequests.js"
import * as Actions from "./Actions.js"
import * as Assets from "./Assets.js"
import * as Cluster from "./Cluster.js"
import * as Explore from "./Explore.js"
import * as Guard from "./Guard.js"
import * as Overview from "./Overview.js"
import * as Session from "./Session.js"
import * as Tail from "./Tail.js"

export const ADMIN_PATH = "/admin"

const TOP_LIMIT_MAX = 100

/** The events the publish console offers: the manifest's, minus connection-scoped ones. */
const PUBLISHABLE = toJsonManifest().events.filter((event) => event.scope !== "connection")

export const make = Effect.gen(function* () {
  const config = yield* GatewayConfig
  const gateway = yield* Gateway
  const registry = yield* SubscriptionRegistry
  const metrics = yield* GatewayMetrics
  const clock = yield* Effect.clock
  const adminKey = Option.getOrUndefined(config.adminKey)
  if (adminKey === undefined) return HttpRouter.empty
  const now = () => clock.unsafeCurrentTimeMillis()

  // Only its client-IP rule is used: the gateway's own (a forwarded address from trusted proxies only).
  const { clientIp } = HttpLimits.make({
    requestsPerMinute: 0,
    maxConnectionsPerIp: 0,
    trustedProxies: config.trustedProxies,
    metrics,
    now
  })
  const sessions = Session.make({
    key: adminKey,
    requestsPerMinute: config.adminRequestsPerMinute,
    sessionTtlMillis: Duration.toMillis(config.adminSessionTtl),
    maxSessions: config.adminMaxSessions,
    now
  })

  // One tap serves both observers; it is installed only while one of them is active.
  const tap: Parameters<typeof gateway.setPublishTap>[0] = (frame, route, recipients, origin) => {
    if (origin === "local" && overview.active()) overview.countPublish(frame.eventType)
    if (hub.viewers() > 0) hub.offer(frame, route, recipients, origin)
  }
  const refreshTap = () => gateway.setPublishTap(overview.active() || hub.viewers() > 0 ? tap : undefined)
  const overview: Overview.Overview = yield* Overview.make(refreshTap)
  const cluster = yield* Cluster.make(overview)
  const hub = Tail.make({
    maxViewers: config.adminMaxTailViewers,
    eventsPerSecond: config.adminTailEventsPerSecond,
    queue: config.adminTailQueue,
    now,
    registryState: () => Effect.runSync(registry.state),
    onActivity: refreshTap
  })
  yield* Effect.addFinalizer(() => Effect.sync(() => gateway.setPublishTap(undefined)))
  const { guarded, login, logout } = Guard.make({ sessions, clientIp, metrics })
  const { closeRoute, dropRoute } = Actions.make(gateway, registry)

  const overviewRoute = Effect.gen(function* () {
    const request = yield* HttpServerRequest.HttpServerRequest
    const since = Number(new URL(request.url, "http://admin.invalid").searchParams.get("since") ?? "0")
    overview.viewed("here")
    const snapshot = yield* overview.snapshot(Number.isFinite(since) ? since : 0)
    const peers = yield* cluster.peers
    return json(200, {
      ...snapshot,
      peers,
      cluster: cluster.enabled ? { periodSeconds: Cluster.PERIOD_SECONDS, samples: cluster.samples() } : null
    })
  })

  const topRoute = Effect.gen(function* () {
    const request = yield* HttpServerRequest.HttpServerRequest
    const asked = Number(new URL(request.url, "http://admin.invalid").searchParams.get("limit") ?? "20")
    const limit = Number.isInteger(asked) && asked > 0 ? Math.min(asked, TOP_LIMIT_MAX) : 20
    return json(200, Explore.top(yield* registry.state, limit))
  })

  const userRoute = Effect.gen(function* () {
    const params = yield* HttpRouter.params
    const user = decodeUser(params["userId"])
    if (Either.isLeft(user)) return json(400, { error: "invalid_user_id" })
    const connections = Explore.userConnections(yield* registry.state, user.right, now(), overview.node)
    return json(200, { user_id: user.right, node: overview.node, connections })
  })

  const publishRoute = Effect.gen(function* () {
    const body = yield* readJson(config.maxPublishBodyBytes)
    const decoded = decodePublishRequest(body, config.maxPublishUsers)
    if (Either.isLeft(decoded))
      return json(400, { error: "invalid_event", detail: decoded.left.detail, fields: fieldErrors(body) })
    return yield* publishResponse(gateway, decoded.right)
  }).pipe(Effect.catchAll(refused))

  const tailRoute = Effect.gen(function* () {
    const request = yield* HttpServerRequest.HttpServerRequest
    const query = new URL(request.url, "http://admin.invalid").searchParams
    const filter = tailFilter(query)
    if (filter === undefined) return json(400, { error: "invalid_filter" })
    // Checked again when the stream starts; this answers the common case with a status.
    if (hub.viewers() >= config.adminMaxTailViewers) return json(429, { error: "too_many_viewers" })
    return Tail.eventStream(hub, filter, overview.node)
  })

  const manifestRoute = Effect.succeed(json(200, { events: PUBLISHABLE }))

  return HttpRouter.empty.pipe(
    HttpRouter.get(ADMIN_PATH, guarded(Effect.succeed(Assets.page), "open")),
    HttpRouter.get(`${ADMIN_PATH}/app.js`, guarded(Effect.succeed(Assets.script), "open")),
    HttpRouter.get(`${ADMIN_PATH}/app.css`, guarded(Effect.succeed(Assets.style), "open")),
    HttpRouter.post(`${ADMIN_PATH}/api/session`, guarded(login, "open")),
    HttpRouter.del(`${ADMIN_PATH}/api/session`, guarded(logout)),
    HttpRouter.get(`${ADMIN_PATH}/api/overview`, guarded(overviewRoute)),
    HttpRouter.get(`${ADMIN_PATH}/api/top`, guarded(topRoute)),
    HttpRouter.get(`${ADMIN_PATH}/api/users/:userId`, guarded(userRoute)),
    HttpRouter.post(`${ADMIN_PATH}/api/connections/:connectionId/close`, guarded(closeRoute)),
    HttpRouter.post(`${ADMIN_PATH}/api/connections/:connectionId/unsubscribe`, guarded(dropRoute)),
    HttpRouter.get(`${ADMIN_PATH}/api/manifest`, guarded(manifestRoute)),
    HttpRouter.post(`${ADMIN_PATH}/api/publish`, guarded(publishRoute)),
    HttpRouter.get(`${ADMIN_PATH}/api/tail`, guarded(tailRoute))
  )
})

/**
 * The inspector's routes as the `AdminRoutes` the HTTP server mounts: empty unless
 * `GATEWAY_ADMIN_KEY` is set. Scoped: the sampler fiber and the publish tap end with it.
 */
export const layer: Layer.Layer<
  AdminRoutes,
  never,
  Gateway | SubscriptionRegistry | GatewayMetrics | GatewayConfig
> = Layer.scoped(AdminRoutes, make)
