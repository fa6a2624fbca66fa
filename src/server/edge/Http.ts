/**
 * edge/: the HTTP edge — the routes and the standalone server (this module), the publish API's
 * request and response (`Publish`) and the HTTP-layer limits in front of them (`HttpLimits`). It reaches the gateway through `Gateway` only.
 *
 * HTTP surface. The routes (`POST /v1/publish`, `GET /metrics`, `/healthz`, `/readyz`) are an
 * `@effect/platform` router, exported as an `HttpApp` a host can mount. In a `GATEWAY_WORKERS`
 * worker, `main` also provides `WorkerGroup`, and `/metrics` and `/readyz` answer for every worker. The standalone server owns
 * the Node `http.Server` as a scoped resource: `request` goes to `NodeHttpServer.makeHandler`, and
 * `upgrade` — exactly one party may handle it — goes to the Gateway for `/gateway/ws`.
 */
import { timingSafeEqual } from "node:crypto"
import { createServer, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import { getSystemErrorMap } from "node:util"
import { HttpIncomingMessage, HttpRouter, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { Context, Duration, Effect, Either, Layer, Option, Redacted } from "effect"
import { MAX_JSON_DEPTH, nestsDeeperThan } from "../../protocol/Envelope.js"
import { bearerToken } from "../Auth.js"
import { GatewayConfig } from "../Config.js"
import { ListenFailed } from "../Errors.js"
import { Gateway } from "../core/Gateway.js"
import * as HttpLimits from "./HttpLimits.js"
import { decodePublishRequest, jsonResponse, publishResponse } from "./Publish.js"
import { GatewayMetrics, PROMETHEUS_CONTENT_TYPE, renderSnapshot } from "../Metrics.js"
import { groupStatus, readinessOf, WorkerGroup } from "../Workers.js"

export const GATEWAY_PATH = "/gateway/ws"
const PUBLISH_PATH = "/v1/publish"

const keyMatches = (presented: string, expected: Redacted.Redacted<string>): boolean => {
  const a = Buffer.from(presented)
  const b = Buffer.from(Redacted.value(expected))
  return a.length === b.length && timingSafeEqual(a, b)
}

const publish = Effect.gen(function* () {
  const request = yield* HttpServerRequest.HttpServerRequest
  const config = yield* GatewayConfig
  const gateway = yield* Gateway
  const metrics = yield* GatewayMetrics
  const presented = bearerToken(request.headers["authorization"])
  const accepted =
    presented !== undefined &&
    (keyMatches(presented, config.publishKey) ||
      Option.exists(config.publishPreviousKey, (previous) => keyMatches(presented, previous)))
  if (!accepted) {
    metrics.authFailure("unauthorized")
    return jsonResponse(401, { error: "invalid_credentials" })
  }
  const mediaType = (request.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase()
  if (mediaType !== "application/json") return jsonResponse(415, { error: "unsupported_media_type" })
  // A body must declare its length (Node holds it to that), so the cap is decided before reading:
  // refusing a body midway (chunked) would have to reset the connection instead of answering 413.
  const length = request.headers["content-length"]
  if (length === undefined && request.headers["transfer-encoding"] !== undefined) {
    metrics.httpRejected("publish", "length_required")
    return jsonResponse(411, { error: "length_required" })
  }
  const declared = Number(length ?? "0")
  if (declared > config.maxPublishBodyBytes) {
    metrics.httpRejected("publish", "body_too_large")
    return jsonResponse(413, { error: "payload_too_large" })
  }
  const text = yield* Effect.either(
    HttpIncomingMessage.withMaxBodySize(request.text, Option.some(config.maxPublishBodyBytes))
  )
  // The declared length is within the cap; a body that never completes is the request timeout's
  // (already answered 408 and counted).
  if (Either.isLeft(text))
    return jsonResponse(400, { error: "invalid_event", detail: "the request body could not be read" })
  // Bounded before parsing, as on ingress: decoding and the rejection message then do bounded work.
  if (nestsDeeperThan(text.right, MAX_JSON_DEPTH))
    return jsonResponse(400, {
      error: "invalid_event",
      detail: `body nests deeper than ${MAX_JSON_DEPTH} levels`
    })
  let json: unknown
  try {
    json = JSON.parse(text.right)
  } catch {
    return jsonResponse(400, { error: "invalid_event", detail: "body is not JSON" })
  }
  const decoded = decodePublishRequest(json, config.maxPublishUsers)
  if (Either.isLeft(decoded)) {
    const { detail, issues } = decoded.left
    return jsonResponse(400, { error: "invalid_event", detail, ...(issues === undefined ? {} : { issues }) })
  }
  return yield* publishResponse(gateway, decoded.right)
})

/** The gateway's HTTP routes as an `HttpApp` (the WebSocket upgrade itself is `Gateway.handleUpgrade`). */
export const httpApp = HttpRouter.empty.pipe(
  HttpRouter.post(PUBLISH_PATH, publish),
  HttpRouter.get(
    "/metrics",
    Effect.gen(function* () {
      const metrics = yield* GatewayMetrics
      const group = yield* Effect.serviceOption(WorkerGroup)
      if (Option.isNone(group))
        return HttpServerResponse.text(metrics.render(), { contentType: PROMETHEUS_CONTENT_TYPE })
      return yield* group.value.report.pipe(
        Effect.map((report) =>
          HttpServerResponse.text(renderSnapshot(report.metrics), { contentType: PROMETHEUS_CONTENT_TYPE })
        ),
        // Never this worker's share alone: that would read as counters going backwards.
        Effect.catchTag("WorkersUnavailable", (error) =>
          Effect.succeed(jsonResponse(503, { error: "workers_unavailable", reason: error.reason }))
        )
      )
    })
  ),
  HttpRouter.get("/healthz", Effect.succeed(jsonResponse(200, { status: "ok" }))),
  HttpRouter.get(
    "/readyz",
    Effect.gen(function* () {
      const gateway = yield* Gateway
      const group = yield* Effect.serviceOption(WorkerGroup)
      if (Option.isNone(group)) {
        const status = readinessOf(gateway)
        return jsonResponse(status === "ready" ? 200 : 503, { status })
      }
      return yield* group.value.report.pipe(
        Effect.map((report) => {
          const status = groupStatus(report)
          return jsonResponse(status === "ready" ? 200 : 503, { status, workers: report.workers })
        }),
        Effect.catchTag("WorkersUnavailable", (error) =>
          Effect.succeed(jsonResponse(503, { status: "workers_unavailable", reason: error.reason }))
        )
      )
    })
  ),
  // A plain GET on the WebSocket path: the original's framework answers 4xx without upgrade headers.
  HttpRouter.get(GATEWAY_PATH, Effect.succeed(jsonResponse(426, { error: "upgrade_required" })))
)

/**
 * Routes a host or the inspector mounts beside the gateway's own (the inspector's `/admin`, when
 * `GATEWAY_ADMIN_KEY` is set); optional: without the service nothing is added.
 */
export class AdminRoutes extends Context.Tag("filament/AdminRoutes")<
  AdminRoutes,
  HttpRouter.HttpRouter<never, never>
>() {}

export interface GatewayServerShape {
  readonly host: string
  readonly port: number
  /** The HTTP-layer limits' state (per-IP buckets and connection counts). */
  readonly limits: HttpLimits.HttpLimits
}

/** The listening standalone server (its bound address; port 0 resolves here). */
export class GatewayServer extends Context.Tag("filament/GatewayServer")<
  GatewayServer,
  GatewayServerShape
>() {}

/** "address already in use (EADDRINUSE)" rather than Node's "listen EADDRINUSE: … 127.0.0.1:8080". */
const systemErrorText = (error: NodeJS.ErrnoException) => {
  const known = error.errno === undefined ? undefined : getSystemErrorMap().get(error.errno)
  return known === undefined ? error.message : `${known[1]} (${known[0]})`
}

const listen = (server: Server, host: string, port: number, backlog: number) =>
  Effect.async<void, ListenFailed>((resume) => {
    const onError = (error: NodeJS.ErrnoException) =>
      resume(
        Effect.fail(
          new ListenFailed({
            reason: "listen_failed",
            address: `${host}:${port}`,
            detail: systemErrorText(error)
          })
        )
      )
    server.once("error", onError)
    server.listen({ port, host, backlog }, () => {
      server.off("error", onError)
      resume(Effect.void)
    })
  })

export const make = Effect.gen(function* () {
  const config = yield* GatewayConfig
  const gateway = yield* Gateway
  const metrics = yield* GatewayMetrics
  const clock = yield* Effect.clock
  const admin = yield* Effect.serviceOption(AdminRoutes)
  const handler = yield* NodeHttpServer.makeHandler(
    Option.match(admin, { onNone: () => httpApp, onSome: (routes) => HttpRouter.concat(httpApp, routes) })
  )
  const limits = HttpLimits.make({
    requestsPerMinute: config.rateLimitPerMinute,
    maxConnectionsPerIp: config.maxConnectionsPerIp,
    trustedProxies: config.trustedProxies,
    metrics,
    now: () => clock.unsafeCurrentTimeMillis()
  })
  const requestTimeout = Duration.toMillis(config.requestTimeout)
  const server = yield* Effect.acquireRelease(
    Effect.sync(() =>
      createServer({
        // Node's own 408 machinery: headers and body must both arrive within the timeout (checked
        // every quarter of it, at most every second); upgraded sockets are out of its reach.
        requestTimeout,
        headersTimeout: requestTimeout,
        connectionsCheckingInterval: Math.max(10, Math.min(1000, Math.floor(requestTimeout / 4)))
      })
    ),
    // Stop listening at once; upgraded sockets are the Gateway's to drain, idle HTTP ones go now.
    (server) =>
      Effect.sync(() => {
        server.close()
        server.closeAllConnections()
      })
  )
  server.on("request", (request, response) => {
    if (request.method === "POST" && request.url?.startsWith(PUBLISH_PATH) === true) {
      limits.track(request, "publish")
      if (!limits.admitPublish(request, response)) return
    }
    handler(request, response)
  })
  server.on("clientError", limits.onClientError)
  server.on("upgrade", (request, socket, head) => {
    const path = new URL(request.url ?? "/", "http://gateway.invalid").pathname
    if (path === GATEWAY_PATH) {
      if (!limits.admitUpgrade(request, socket)) return
      return gateway.handleUpgrade(request, socket, head)
    }
    socket.on("error", () => socket.destroy())
    socket.end("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
  })
  yield* listen(server, config.host, config.port, config.listenBacklog)
  const address = server.address() as AddressInfo
  return { host: address.address, port: address.port, limits }
})

/** The standalone HTTP + WebSocket server on `GATEWAY_HOST`:`GATEWAY_PORT`. */
export const layer: Layer.Layer<GatewayServer, ListenFailed, GatewayConfig | Gateway | GatewayMetrics> =
  Layer.scoped(GatewayServer, make)
