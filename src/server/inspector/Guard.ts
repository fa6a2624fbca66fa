/**
 * Who gets an answer from the inspector: every call is rate-limited per client address, everything
 * but the page's static assets and the login needs a session cookie or the key as a Bearer token
 * (signing in and out opens and closes a session), every call is counted by outcome
 * (`filament_gateway_admin_requests_total{outcome}`), and every response carries a strict
 * Content-Security-Policy (no inline script, nothing from another origin).
 */
import { HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { Effect, Either } from "effect"
import { jsonResponse as json } from "../edge/Publish.js"
import type * as HttpLimits from "../edge/HttpLimits.js"
import type { AdminRequestOutcome, GatewayMetricsShape } from "../Metrics.js"
import { decodeLogin, readJson, refused, SMALL_BODY_BYTES } from "./AdminRequests.js"
import type * as Session from "./Session.js"

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

/**
 * Rate limit, then authentication (unless `open`), then the handler; counted by outcome, and the
 * security headers on whatever is answered.
 */
export const make = (options: {
  readonly sessions: Session.AdminSessions
  readonly clientIp: HttpLimits.HttpLimits["clientIp"]
  readonly metrics: GatewayMetricsShape
}) => {
  const { sessions, clientIp, metrics } = options
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

  return { guarded, login, logout }
}
