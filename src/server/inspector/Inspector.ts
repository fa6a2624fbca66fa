/**
 * The inspector: a page served by the gateway itself (`/admin`) to see and steer a running node —
 * overview, explore, live tail, publish console. This folder owns it whole: the admin API routes and
 * their guard (this module), what a request may carry (`AdminRequests`), who may use them
 * (`Session`), the overview sampler (`Overview`), the registry queries (`Explore`), the cluster view
 * (`Cluster`), the live tail hub (`Tail`) and the page (`Assets`, built from `page/`). It is off unless `GATEWAY_ADMIN_KEY` is set, and reaches the
 * rest of the gateway only through `Gateway`, `SubscriptionRegistry`, `GatewayMetrics` and
 * `GatewayConfig` (and, for the cluster view, the gateway's Redis client module).
 *
 * Every response carries a strict Content-Security-Policy (no inline script, nothing from another
 * origin); every call is rate-limited per client address and counted
 * (`filament_gateway_admin_requests_total{outcome}`); everything but the page's static assets and
 * the login needs a session cookie or the key as a Bearer token.
 */
import { HttpRouter, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { Duration, Effect, Either, Layer, Option, ParseResult, Schedule, Stream } from "effect"
import { toJsonManifest } from "../../protocol/Manifest.js"
import { GatewayConfig } from "../Config.js"
import { Gateway } from "../core/Gateway.js"
import { AdminRoutes } from "../edge/Http.js"
import { decodePublishRequest, jsonResponse as json, publishResponse } from "../edge/Publish.js"
import * as HttpLimits from "../edge/HttpLimits.js"
import { GatewayMetrics, type AdminRequestOutcome } from "../Metrics.js"
import { channelKey } from "../registry/Indexes.js"
import { SubscriptionRegistry } from "../registry/Subscriptions.js"
import {
  decodeLogin,
  decodeTarget,
  decodeUser,
  fieldErrors,
  readJson,
  refused,
  tailFilter
} from "./AdminRequests.js"
import * as Assets from "./Assets.js"
import * as Cluster from "./Cluster.js"
import * as Explore from "./Explore.js"
import * as Overview from "./Overview.js"
import * as Session from "./Session.js"
import * as Tail from "./Tail.js"

export const ADMIN_PATH = "/admin"

/** Sent with every inspector response: only this origin's own script, style and API. */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'"
].join("; ")

const SECURITY_HEADERS = {
  "content-security-policy": CONTENT_SECURITY_POLICY,
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store"
}

/** Login and action bodies are tiny; the publish console's body has the publish API's cap. */
const SMALL_BODY_BYTES = 4096
const TOP_LIMIT_MAX = 100
const TAIL_KEEPALIVE = Duration.seconds(15)

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

  /**
   * Rate limit, then authentication (unless `open`), then the handler; counted by outcome, and the
   * security headers on whatever is answered.
   */
  const guarded = <R>(
    handler: Effect.Effect<HttpServerResponse.HttpServerResponse, never, R>,
    access: "session" | "open" = "session"
  ) =>
    Effect.gen(function* () {
      const request = yield* HttpServerRequest.HttpServerRequest
      const address = clientIp(NodeHttpServerRequest.toIncomingMessage(request))
      let outcome: AdminRequestOutcome
      let response: HttpServerResponse.HttpServerResponse
      if (!sessions.admit(address)) {
        outcome = "rate_limited"
        metrics.rateLimitHit("admin")
        response = json(429, { error: "rate_limited" })
      } else if (
        access === "session" &&
        !sessions.authenticated(request.headers["cookie"], request.headers["authorization"])
      ) {
        outcome = "unauthorized"
        response = json(401, { error: "invalid_credentials" })
      } else {
        response = yield* handler
        const status = response.status
        outcome =
          status < 400
            ? "ok"
            : status === 401
              ? "unauthorized"
              : status === 404
                ? "not_found"
                : status === 429
                  ? "too_many_viewers"
                  : status >= 500
                    ? "error"
                    : "invalid"
      }
      metrics.adminRequest(outcome)
      return HttpServerResponse.setHeaders(response, SECURITY_HEADERS)
    })

  const login = Effect.gen(function* () {
    const body = yield* readJson(SMALL_BODY_BYTES)
    const presented = decodeLogin(body)
    if (Either.isLeft(presented) || !sessions.keyMatches(presented.right.key)) {
      metrics.authFailure("unauthorized")
      return json(401, { error: "invalid_credentials" })
    }
    const { cookie } = sessions.open()
    return HttpServerResponse.setHeader(json(200, { status: "signed_in" }), "set-cookie", cookie)
  }).pipe(Effect.catchAll(refused))

  const logout = Effect.map(HttpServerRequest.HttpServerRequest, (request) =>
    HttpServerResponse.setHeader(
      json(200, { status: "signed_out" }),
      "set-cookie",
      sessions.close(sessions.sessionToken(request.headers["cookie"]))
    )
  )

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

  /** The connection named by the `:connectionId` path parameter, with the registry state it was found in. */
  const targetConnection = Effect.gen(function* () {
    const params = yield* HttpRouter.params
    const id = Number(params["connectionId"])
    const state = yield* registry.state
    const connection = Number.isSafeInteger(id) ? Explore.connectionById(state, id) : undefined
    return { connection, state }
  })

  const closeRoute = Effect.gen(function* () {
    const { connection } = yield* targetConnection
    if (connection === undefined || !connection.isOpen) return json(404, { error: "not_found" })
    connection.close("closed_by_admin")
    yield* Effect.logInfo("gateway.admin.connection_closed").pipe(
      Effect.annotateLogs({ user_id: connection.userId, connection_id: connection.id })
    )
    return json(200, { closed: connection.id, code: 4014, reason: "closed_by_admin" })
  })

  const dropRoute = Effect.gen(function* () {
    const body = yield* readJson(SMALL_BODY_BYTES)
    const target = decodeTarget(body)
    if (Either.isLeft(target))
      return json(400, {
        error: "invalid_body",
        detail: ParseResult.TreeFormatter.formatErrorSync(target.left)
      })
    const { channel_id, guild_id } = target.right
    const { connection, state } = yield* targetConnection
    const entry = connection === undefined ? undefined : Explore.subscriptionsOf(state, connection)
    if (connection === undefined || entry === undefined || !entry.has(channelKey(guild_id, channel_id)))
      return json(404, { error: "not_subscribed" })
    // The connection's own unsubscribe, in order with its commands: follow-ups run and it gets the ack.
    if (!gateway.runCommand(connection, { _tag: "unsubscribe", guild_id, channel_id }))
      return json(409, { error: "connection_busy" })
    yield* Effect.logInfo("gateway.admin.subscription_dropped").pipe(
      Effect.annotateLogs({ user_id: connection.userId, connection_id: connection.id, guild_id, channel_id })
    )
    return json(202, { connection: connection.id, guild_id, channel_id })
  }).pipe(Effect.catchAll(refused))

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
    const sse = (event: string, data: unknown) => `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`
    const events = Stream.unwrapScoped(
      Effect.map(hub.open(filter), (viewer) =>
        viewer === undefined
          ? Stream.make(sse("error", { error: "too_many_viewers" }))
          : Stream.concat(
              Stream.make(sse("ready", { filter, node: overview.node })),
              Stream.repeatEffect(Effect.map(viewer.take, (event) => sse("tail", event)))
            ).pipe(
              Stream.merge(
                Stream.fromSchedule(Schedule.spaced(TAIL_KEEPALIVE)).pipe(Stream.as(": keepalive\n\n"))
              )
            )
      )
    )
    return HttpServerResponse.stream(Stream.encodeText(events), {
      contentType: "text/event-stream",
      headers: { "x-accel-buffering": "no" }
    })
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
