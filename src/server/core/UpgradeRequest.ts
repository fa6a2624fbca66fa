/**
 * What an upgrade request carries before it becomes a connection — its access token and what it asks
 * of missed-event recovery — and how a refused one is answered: a plain JSON HTTP error on the raw
 * socket (used by admission and by the HTTP edge's limits).
 */
import type { IncomingMessage } from "node:http"
import type { Duplex } from "node:stream"
import {
  parsePosition,
  RECOVERY_PARAM,
  RECOVERY_PARAM_VALUE,
  USER_SINCE_PARAM,
  type StreamPosition
} from "../../protocol/Streams.js"
import { bearerToken } from "../Auth.js"

/**
 * The query of an upgrade's request-target, parsed once per upgrade: the `URLSearchParams` a `URL`
 * would give, without building a `URL` (measured: 1.4 µs, where the two `URL`s it replaces took 5.3).
 */
export const upgradeQuery = (request: IncomingMessage): URLSearchParams => {
  const target = request.url ?? "/"
  const start = target.indexOf("?")
  if (start < 0) return new URLSearchParams()
  const fragment = target.indexOf("#", start)
  return new URLSearchParams(target.slice(start + 1, fragment < 0 ? undefined : fragment))
}

/** Token from `?access_token=` (wins, even when empty) or `Authorization: Bearer`. */
export const accessToken = (request: IncomingMessage, query: URLSearchParams): string => {
  const fromQuery = query.get("access_token")
  if (fromQuery !== null) return fromQuery
  return bearerToken(request.headers.authorization) ?? ""
}

/**
 * What the upgrade asks of missed-event recovery: `recovery=1` opts in (any other value is refused),
 * with `user_since=<epoch>:<offset>` (refused when malformed; ignored without the opt-in).
 */
export type RecoveryRequest =
  | { readonly _tag: "Legacy" }
  | { readonly _tag: "OptedIn"; readonly userSince: StreamPosition | undefined }
  | { readonly _tag: "Invalid" }

export const recoveryRequest = (query: URLSearchParams): RecoveryRequest => {
  const optIn = query.get(RECOVERY_PARAM)
  if (optIn === null) return { _tag: "Legacy" }
  if (optIn !== RECOVERY_PARAM_VALUE) return { _tag: "Invalid" }
  const since = query.get(USER_SINCE_PARAM)
  if (since === null) return { _tag: "OptedIn", userSince: undefined }
  const userSince = parsePosition(since)
  return userSince === undefined ? { _tag: "Invalid" } : { _tag: "OptedIn", userSince }
}

const STATUS_TEXT: Record<number, string> = {
  400: "Bad Request",
  401: "Unauthorized",
  408: "Request Timeout",
  413: "Payload Too Large",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  503: "Service Unavailable"
}

/**
 * A complete JSON error response on a raw socket, then close: a refused upgrade (here and in the
 * HTTP edge's limits) and an HTTP client error.
 */
export const refuseRaw = (socket: Duplex, status: number, error: string): void => {
  const body = JSON.stringify({ error })
  if (socket.writable) {
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? "Error"}\r\n` +
        "Content-Type: application/json\r\n" +
        `Content-Length: ${Buffer.byteLength(body)}\r\n` +
        "Connection: close\r\n\r\n" +
        body
    )
  }
  socket.destroy()
}
