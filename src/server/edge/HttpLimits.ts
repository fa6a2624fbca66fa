/**
 * HTTP-layer limits of the standalone server (docs/OPERATIONS.md, Configuration): the request
 * timeout (408 for a request whose headers or body trickle in), the per-client-IP rate limit on
 * upgrades and publish calls (429), the per-client-IP cap on open gateway connections (429), and the
 * client IP itself — the peer address, or a forwarded header only when the peer is a trusted proxy.
 *
 * These run in the Node `http.Server` callbacks, before any routing or token check, so a refused
 * request costs no Effect work; their time comes from the Effect `Clock` the gateway runs with.
 */
import type { IncomingMessage, ServerResponse } from "node:http"
import { BlockList, isIP } from "node:net"
import type { Duplex } from "node:stream"
import type { Cidr } from "../Config.js"
import { refuseRaw } from "../core/UpgradeRequest.js"
import type { GatewayMetricsShape, HttpSurface } from "../Metrics.js"

/** An IPv4 peer on a dual-stack socket shows as `::ffff:a.b.c.d`; limits key on the IPv4 form. */
const normalizeIp = (address: string): string => {
  const mapped = address.startsWith("::ffff:") ? address.slice(7) : address
  return isIP(mapped) === 4 ? mapped : address.toLowerCase()
}

export interface HttpLimitsOptions {
  /** Upgrades plus publish calls one client IP may start per minute (token bucket); 0 = off. */
  readonly requestsPerMinute: number
  /** Open gateway connections (and upgrades in flight) per client IP; 0 = off. */
  readonly maxConnectionsPerIp: number
  readonly trustedProxies: ReadonlyArray<Cidr>
  readonly metrics: GatewayMetricsShape
  /** Current time in ms from the Effect `Clock`. */
  readonly now: () => number
}

export interface HttpLimits {
  /** The client IP of a request: the peer, or the forwarded address when the peer is trusted. */
  readonly clientIp: (request: IncomingMessage) => string
  /**
   * Admits an upgrade on the gateway path, or answers 429 and drops the socket. An admitted
   * upgrade holds one of its IP's connection slots until the TCP socket closes.
   */
  readonly admitUpgrade: (request: IncomingMessage, socket: Duplex) => boolean
  /** Admits a publish call, or answers 429. */
  readonly admitPublish: (request: IncomingMessage, response: ServerResponse) => boolean
  /** The `clientError` listener: 408 for a request that did not arrive within the timeout. */
  readonly onClientError: (error: Error & { readonly code?: string }, socket: Duplex) => void
  /** Marks the socket of a request that reached a handler, so a timeout on it names its surface. */
  readonly track: (request: IncomingMessage, surface: HttpSurface) => void
  /** IPs with an open connection, and IPs with a rate bucket not yet refilled (tests, soak). */
  readonly sizes: () => {
    readonly connectionIps: number
    readonly connections: number
    readonly rateBuckets: number
  }
}

interface Bucket {
  tokens: number
  updatedAt: number
}

export const make = (options: HttpLimitsOptions): HttpLimits => {
  const { metrics, now } = options
  const trusted = new BlockList()
  for (const cidr of options.trustedProxies) trusted.addSubnet(cidr.address, cidr.prefix, cidr.family)
  const hasTrusted = options.trustedProxies.length > 0
  const surfaces = new WeakMap<Duplex, HttpSurface>()

  const isTrusted = (ip: string) => {
    if (!hasTrusted) return false
    const family = isIP(ip) === 4 ? "ipv4" : "ipv6"
    return trusted.check(ip, family)
  }

  const header = (request: IncomingMessage, name: string): string | undefined => {
    const value = request.headers[name]
    return Array.isArray(value) ? value[0] : value
  }

  const clientIp = (request: IncomingMessage): string => {
    const peer = normalizeIp(request.socket.remoteAddress ?? "")
    if (!isTrusted(peer)) return peer
    const cf = header(request, "cf-connecting-ip")?.trim()
    if (cf !== undefined && isIP(cf) !== 0) return normalizeIp(cf)
    const forwarded = header(request, "x-forwarded-for")?.split(",")[0]?.trim()
    if (forwarded !== undefined && isIP(forwarded) !== 0) return normalizeIp(forwarded)
    return peer
  }

  // Token bucket per IP: capacity = the per-minute budget, refilled continuously. A full bucket is
  // the same as none, so buckets are forgotten once refilled (pruned when the map has doubled).
  const buckets = new Map<string, Bucket>()
  const capacity = options.requestsPerMinute
  const refillPerMs = capacity / 60_000
  let pruneAt = 1024

  const prune = (time: number) => {
    for (const [ip, bucket] of buckets) {
      if (bucket.tokens + (time - bucket.updatedAt) * refillPerMs >= capacity) buckets.delete(ip)
    }
    pruneAt = Math.max(1024, buckets.size * 2)
  }

  const takeToken = (ip: string): boolean => {
    if (capacity === 0) return true
    const time = now()
    const bucket = buckets.get(ip)
    if (bucket === undefined) {
      if (buckets.size >= pruneAt) prune(time)
      buckets.set(ip, { tokens: capacity - 1, updatedAt: time })
      return true
    }
    bucket.tokens = Math.min(capacity, bucket.tokens + Math.max(0, time - bucket.updatedAt) * refillPerMs)
    bucket.updatedAt = time
    if (bucket.tokens < 1) return false
    bucket.tokens -= 1
    return true
  }

  const open = new Map<string, number>()
  const release = (ip: string) => {
    const count = open.get(ip) ?? 0
    if (count <= 1) open.delete(ip)
    else open.set(ip, count - 1)
  }

  return {
    clientIp,
    admitUpgrade: (request, socket) => {
      const ip = clientIp(request)
      if (!takeToken(ip)) {
        metrics.httpRejected("upgrade", "rate_limited")
        metrics.rateLimitHit("upgrade")
        refuseRaw(socket, 429, "rate_limited")
        return false
      }
      if (options.maxConnectionsPerIp > 0) {
        const count = open.get(ip) ?? 0
        if (count >= options.maxConnectionsPerIp) {
          metrics.httpRejected("upgrade", "ip_connection_limit")
          refuseRaw(socket, 429, "too_many_connections_from_ip")
          return false
        }
        open.set(ip, count + 1)
        socket.once("close", () => release(ip))
      }
      return true
    },
    admitPublish: (request, response) => {
      if (takeToken(clientIp(request))) return true
      metrics.httpRejected("publish", "rate_limited")
      metrics.rateLimitHit("publish")
      response.writeHead(429, { "content-type": "application/json", connection: "close" })
      response.end(JSON.stringify({ error: "rate_limited" }))
      return false
    },
    onClientError: (error, socket) => {
      // What Node does without a listener, plus the counter; a response already begun is just cut.
      const written = (socket as Duplex & { readonly bytesWritten?: number }).bytesWritten ?? 0
      if (error.code === "ERR_HTTP_REQUEST_TIMEOUT") {
        metrics.httpRejected(surfaces.get(socket) ?? "other", "request_timeout")
        if (written === 0) return refuseRaw(socket, 408, "request_timeout")
      } else if (written === 0 && error.code !== "ECONNRESET") {
        return refuseRaw(
          socket,
          error.code === "HPE_HEADER_OVERFLOW" ? 431 : 400,
          error.code === "HPE_HEADER_OVERFLOW" ? "headers_too_large" : "bad_request"
        )
      }
      socket.destroy()
    },
    track: (request, surface) => {
      surfaces.set(request.socket, surface)
    },
    sizes: () => {
      if (buckets.size > 0) prune(now())
      let connections = 0
      for (const count of open.values()) connections += count
      return { connectionIps: open.size, connections, rateBuckets: buckets.size }
    }
  }
}
