/**
 * HTTP surface. The routes (`POST /v1/publish`, `GET /metrics`, `/healthz`, `/readyz`) are an
 * `@effect/platform` router, exported as an `HttpApp` a host can mount. The standalone server owns
 * the Node `http.Server` as a scoped resource: `request` goes to `NodeHttpServer.makeHandler`, and
 * `upgrade` — exactly one party may handle it — goes to the Gateway for `/gateway/ws`.
 */
import { timingSafeEqual } from "node:crypto"
import { createServer, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import { HttpIncomingMessage, HttpRouter, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { Context, Duration, Effect, Either, Layer, Option, ParseResult, Redacted, Schema } from "effect"
import { decodePayload, type EventDefinition } from "../protocol/EventDefinition.js"
import { PresenceSync, PresenceUpdate } from "../protocol/events/presence.js"
import { VoiceParticipantSync } from "../protocol/events/voice.js"
import { ingress, UserId } from "../protocol/Ids.js"
import { Manifest } from "../protocol/Manifest.js"
import { GatewayConfig } from "./Config.js"
import { PublishRejected } from "./Errors.js"
import type { RoutedEvent, UserEvent } from "./FollowUps.js"
import { Gateway } from "./Gateway.js"
import * as HttpLimits from "./HttpLimits.js"
import { GatewayMetrics, PROMETHEUS_CONTENT_TYPE } from "./Metrics.js"

export const GATEWAY_PATH = "/gateway/ws"
const PUBLISH_PATH = "/v1/publish"

const PublishBody = Schema.Struct({
  t: Schema.String,
  d: Schema.Unknown,
  users: Schema.optional(Schema.Array(Schema.Unknown))
})
const decodeBody = Schema.decodeUnknownEither(PublishBody, { onExcessProperty: "error" })
const decodeUserId = Schema.decodeUnknownEither(ingress(UserId))

export type PublishRequest =
  | { readonly _tag: "Routed"; readonly event: RoutedEvent; readonly payload: unknown }
  | {
      readonly _tag: "Users"
      readonly event: UserEvent
      readonly payload: unknown
      readonly users: ReadonlyArray<UserId>
    }

/**
 * Presence and the subscribe snapshots are the gateway's own state: a published copy would contradict
 * what the gateway tells its clients.
 */
const GATEWAY_OWNED: ReadonlySet<string> = new Set([
  PresenceSync.type,
  PresenceUpdate.type,
  VoiceParticipantSync.type
])

const invalid = (detail: string) => Either.left(new PublishRejected({ reason: "invalid_event", detail }))

/**
 * Validates a publish body: a known, non-connection event type, a payload that passes its schema
 * strictly, and `users` exactly when the event is user-scoped.
 */
export const decodePublishRequest = (
  json: unknown,
  maxUsers: number
): Either.Either<PublishRequest, PublishRejected> => {
  const body = decodeBody(json)
  if (Either.isLeft(body)) return invalid(ParseResult.TreeFormatter.formatErrorSync(body.left))
  const { d, t, users } = body.right
  const event: EventDefinition | undefined = Manifest.lookup(t)
  if (event === undefined) return invalid(`unknown event type "${t}"`)
  if (event.scope === "connection") return invalid(`"${t}" is connection-scoped and cannot be published`)
  if (GATEWAY_OWNED.has(t)) return invalid(`"${t}" is produced by the gateway itself and cannot be published`)
  const payload = decodePayload(event, d, { strict: true })
  if (Either.isLeft(payload)) return invalid(ParseResult.TreeFormatter.formatErrorSync(payload.left))
  if (event.scope !== "user") {
    if (users !== undefined)
      return invalid(`"users" is only for user-scoped events, "${t}" is ${event.scope}-scoped`)
    return Either.right({ _tag: "Routed", event: event as RoutedEvent, payload: payload.right })
  }
  if (users === undefined || users.length === 0) return invalid(`"${t}" is user-scoped: "users" is required`)
  if (users.length > maxUsers) return invalid(`"users" has ${users.length} entries, over ${maxUsers}`)
  const ids: Array<UserId> = []
  for (const user of users) {
    const id = decodeUserId(user)
    if (Either.isLeft(id)) return invalid(`"users" contains a value that is not a user ULID`)
    ids.push(id.right)
  }
  return Either.right({ _tag: "Users", event: event as UserEvent, payload: payload.right, users: ids })
}

const keyMatches = (presented: string, expected: Redacted.Redacted<string>): boolean => {
  const a = Buffer.from(presented)
  const b = Buffer.from(Redacted.value(expected))
  return a.length === b.length && timingSafeEqual(a, b)
}

const jsonResponse = (status: number, body: unknown) => HttpServerResponse.unsafeJson(body, { status })

const publish = Effect.gen(function* () {
  const request = yield* HttpServerRequest.HttpServerRequest
  const config = yield* GatewayConfig
  const gateway = yield* Gateway
  const metrics = yield* GatewayMetrics
  const authorization = request.headers["authorization"] ?? ""
  const presented = authorization.startsWith("Bearer ") ? authorization.slice(7) : undefined
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
  let json: unknown
  try {
    json = JSON.parse(text.right)
  } catch {
    return jsonResponse(400, { error: "invalid_event", detail: "body is not JSON" })
  }
  const decoded = decodePublishRequest(json, config.maxPublishUsers)
  if (Either.isLeft(decoded))
    return jsonResponse(400, { error: "invalid_event", detail: decoded.left.detail })
  const target = decoded.right
  const published =
    target._tag === "Routed"
      ? gateway.publish(target.event, target.payload)
      : gateway.publishToUsers(target.event, target.payload, target.users)
  return yield* published.pipe(
    Effect.map((recipients) => jsonResponse(202, { recipients })),
    Effect.catchTags({
      OversizedOutbound: (error) =>
        Effect.succeed(
          jsonResponse(413, { error: "event_too_large", bytes: error.bytes, max_bytes: error.maxBytes })
        ),
      SerializeError: (error) =>
        Effect.succeed(jsonResponse(500, { error: "serialize_error", detail: error.detail })),
      PublishRefused: (error) =>
        Effect.succeed(jsonResponse(409, { error: error.reason, limit: error.limit, detail: error.detail }))
    })
  )
})

/** The gateway's HTTP routes as an `HttpApp` (the WebSocket upgrade itself is `Gateway.handleUpgrade`). */
export const httpApp = HttpRouter.empty.pipe(
  HttpRouter.post(PUBLISH_PATH, publish),
  HttpRouter.get(
    "/metrics",
    Effect.map(GatewayMetrics, (metrics) =>
      HttpServerResponse.text(metrics.render(), { contentType: PROMETHEUS_CONTENT_TYPE })
    )
  ),
  HttpRouter.get("/healthz", Effect.succeed(jsonResponse(200, { status: "ok" }))),
  HttpRouter.get(
    "/readyz",
    Effect.map(Gateway, (gateway) =>
      !gateway.isAccepting()
        ? jsonResponse(503, { status: "draining" })
        : gateway.busHealthy()
          ? jsonResponse(200, { status: "ready" })
          : // Partitioned from the cluster: its clients would miss other nodes' events.
            jsonResponse(503, { status: "bus_unavailable" })
    )
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

const listen = (server: Server, host: string, port: number) =>
  Effect.async<void, Error>((resume) => {
    const onError = (error: Error) => resume(Effect.fail(error))
    server.once("error", onError)
    server.listen(port, host, () => {
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
  yield* listen(server, config.host, config.port)
  const address = server.address() as AddressInfo
  return { host: address.address, port: address.port, limits }
})

/** The standalone HTTP + WebSocket server on `GATEWAY_HOST`:`GATEWAY_PORT`. */
export const layer: Layer.Layer<GatewayServer, Error, GatewayConfig | Gateway | GatewayMetrics> =
  Layer.scoped(GatewayServer, make)
