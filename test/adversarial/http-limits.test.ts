/**
 * HTTP-layer limits, as the original's security-limits suite (reference §6.2, §9.2): body cap → 413,
 * slowloris headers / body / a silent peer → 408 within the request timeout, per-client-IP rate
 * limit on upgrades and publish calls → 429 (forwarded client IP believed only from trusted
 * proxies), and the per-IP cap on open connections. Each asserts status, body and counter delta.
 */
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Duration, Effect, Either, Redacted, TestClock } from "effect"
import * as Config from "../../src/server/Config.js"
import { newId, PUBLISH_KEY, publishHttp, startGateway, type Harness } from "../server/harness.js"
import { rawExchange, trickle } from "./support.js"
import { eventually } from "../deadline.js"

const REJECTED = "filament_gateway_http_rejected_total"

const channelCreate = (guildId: string, channelId: string) => ({
  t: "channel_create",
  d: { guild_id: guildId, channel: { channel_id: channelId, name: "general", kind: "text" } }
})

const rejected = (harness: Harness, surface: string, reason: string) =>
  harness.metric(REJECTED, { surface, reason })

/** A publish through fetch with extra headers (forwarded-for tests). */
const publishFrom = (harness: Harness, headers: Record<string, string>) =>
  harness.http("/v1/publish", {
    method: "POST",
    headers: {
      authorization: `Bearer ${Redacted.value(PUBLISH_KEY)}`,
      "content-type": "application/json",
      ...headers
    },
    body: JSON.stringify(channelCreate(newId(), newId()))
  })

describe("request body cap", () => {
  it.scoped(
    "a publish body over GATEWAY_MAX_PUBLISH_BODY_BYTES -> 413, chunked -> 411, counted, nothing delivered",
    () =>
      Effect.gen(function* () {
        const harness = yield* startGateway({ maxPublishBodyBytes: 512 })
        const [guildId, channelId] = [newId(), newId()]
        const listener = yield* harness.connectReady(newId(), { [guildId]: "*" })
        yield* listener.subscribe(guildId, channelId)
        const before = yield* rejected(harness, "publish", "body_too_large")
        const big = channelCreate(guildId, channelId)
        big.d.channel.name = "x".repeat(600)
        // Declared length over the cap.
        const declared = yield* publishHttp(harness, big)
        expect(declared).toEqual({ status: 413, body: JSON.stringify({ error: "payload_too_large" }) })
        // Chunked (no Content-Length): refused before reading, so the answer is never a reset.
        const lengthRequired = yield* rejected(harness, "publish", "length_required")
        const chunked = yield* rawExchange(harness.port, (socket) => {
          const body = JSON.stringify(big)
          socket.end(
            "POST /v1/publish HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n" +
              `Authorization: Bearer ${Redacted.value(PUBLISH_KEY)}\r\n` +
              "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
              `${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`
          )
        })
        expect(chunked.status).toBe(411)
        expect(JSON.parse(chunked.body)).toEqual({ error: "length_required" })
        expect(yield* rejected(harness, "publish", "length_required")).toBe(lengthRequired + 1)
        expect(yield* rejected(harness, "publish", "body_too_large")).toBe(before + 1)
        // The listener is alive and got nothing: the next event it sees is one published after.
        const small = channelCreate(guildId, channelId)
        small.d.channel.name = "after"
        expect((yield* publishHttp(harness, small)).status).toBe(202)
        const frame = yield* listener.next()
        expect(frame.t).toBe("channel_create")
        expect((frame.d["channel"] as { name: string }).name).toBe("after")
      })
  )
})

describe("request timeout (slowloris)", () => {
  const TIMEOUT_MS = 300
  // Node checks request deadlines every quarter of the timeout; the rest is scheduling slack.
  const LATEST_MS = TIMEOUT_MS + TIMEOUT_MS / 4 + 700

  it.scoped("upgrade headers trickled, a publish body trickled, a silent peer: each 408 in time", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway({ requestTimeout: Duration.millis(TIMEOUT_MS) })
      const other = yield* rejected(harness, "other", "request_timeout")
      const publish = yield* rejected(harness, "publish", "request_timeout")
      const failures = yield* harness.metric("filament_auth_failures_total", { reason: "unauthorized" })

      const headers = yield* rawExchange(
        harness.port,
        trickle("GET /gateway/ws HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\n", "X-Slow: 1\r\n", 40)
      )
      const body = yield* rawExchange(
        harness.port,
        trickle(
          "POST /v1/publish HTTP/1.1\r\nHost: gw\r\n" +
            `Authorization: Bearer ${Redacted.value(PUBLISH_KEY)}\r\n` +
            "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
          " ",
          40
        )
      )
      // TCP connect, then nothing: no request line, no upgrade.
      const silent = yield* rawExchange(harness.port, () => undefined)

      for (const answer of [headers, body, silent]) {
        expect(answer.status).toBe(408)
        expect(JSON.parse(answer.body)).toEqual({ error: "request_timeout" })
        expect(answer.elapsedMs).toBeGreaterThanOrEqual(TIMEOUT_MS - 5)
        expect(answer.elapsedMs).toBeLessThan(LATEST_MS)
      }
      expect(yield* rejected(harness, "other", "request_timeout")).toBe(other + 2)
      expect(yield* rejected(harness, "publish", "request_timeout")).toBe(publish + 1)
      // Nothing reached the token check or the gateway.
      expect(yield* harness.metric("filament_auth_failures_total", { reason: "unauthorized" })).toBe(failures)
      expect(harness.gateway.connectionCount()).toBe(0)
    })
  )

  it.scoped("an upgraded connection outlives the request timeout", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway({ requestTimeout: Duration.millis(100) })
      const [guildId, channelId] = [newId(), newId()]
      const client = yield* harness.connectReady(newId(), { [guildId]: "*" })
      // A full idle request timeout (and its checking interval) passes on a slow request beside it.
      const slow = yield* rawExchange(harness.port, () => undefined)
      expect(slow.status).toBe(408)
      yield* client.subscribe(guildId, channelId)
      expect(client.closed).toBeUndefined()
    })
  )
})

describe("per-client-IP rate limit", () => {
  it.scoped("upgrades and publish calls share one bucket per IP; 429 when empty, refilled over time", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway({ rateLimitPerMinute: 3 })
      const upgrades = yield* rejected(harness, "upgrade", "rate_limited")
      const publishes = yield* rejected(harness, "publish", "rate_limited")
      const hits = (surface: string) =>
        harness.metric("filament_rate_limit_hits_total", { surface, reason: "rate_limited" })
      const [upgradeHits, publishHits] = [yield* hits("upgrade"), yield* hits("publish")]
      yield* harness.connectReady(newId())
      yield* harness.connectReady(newId())
      expect((yield* publishHttp(harness, channelCreate(newId(), newId()))).status).toBe(202)
      const refused = yield* Effect.flip(harness.connect(yield* harness.token({ userId: newId() })))
      expect(refused).toEqual({ status: 429, body: JSON.stringify({ error: "rate_limited" }) })
      const publish = yield* publishHttp(harness, channelCreate(newId(), newId()))
      expect(publish).toEqual({ status: 429, body: JSON.stringify({ error: "rate_limited" }) })
      expect(yield* rejected(harness, "upgrade", "rate_limited")).toBe(upgrades + 1)
      expect(yield* rejected(harness, "publish", "rate_limited")).toBe(publishes + 1)
      expect([yield* hits("upgrade"), yield* hits("publish")]).toEqual([upgradeHits + 1, publishHits + 1])
      // Other routes are not limited.
      expect((yield* harness.http("/healthz")).status).toBe(200)
      // 3 per minute: one token every 20 s.
      yield* TestClock.adjust(Duration.seconds(20))
      yield* harness.connectReady(newId())
      expect((yield* Effect.flip(harness.connect(yield* harness.token({ userId: newId() })))).status).toBe(
        429
      )
    })
  )

  it.scoped("x-forwarded-for / cf-connecting-ip key the bucket only when the peer is a trusted proxy", () =>
    Effect.gen(function* () {
      const trusted = yield* startGateway({
        rateLimitPerMinute: 1,
        trustedProxies: [{ address: "127.0.0.0", prefix: 8, family: "ipv4" }]
      })
      const a = { "x-forwarded-for": "203.0.113.5, 10.0.0.1" }
      const b = { "x-forwarded-for": "203.0.113.6" }
      expect((yield* publishFrom(trusted, a)).status).toBe(202)
      expect((yield* publishFrom(trusted, b)).status).toBe(202)
      expect((yield* publishFrom(trusted, a)).status).toBe(429)
      // cf-connecting-ip wins over x-forwarded-for.
      expect((yield* publishFrom(trusted, { "cf-connecting-ip": "198.51.100.7", ...a })).status).toBe(202)
      expect((yield* publishFrom(trusted, { "cf-connecting-ip": "198.51.100.7", ...b })).status).toBe(429)
      // Not an address: the peer's own address is used.
      expect((yield* publishFrom(trusted, { "x-forwarded-for": "not-an-ip" })).status).toBe(202)
      expect((yield* publishFrom(trusted, {})).status).toBe(429)

      const untrusted = yield* startGateway({
        rateLimitPerMinute: 1,
        trustedProxies: [{ address: "10.0.0.0", prefix: 8, family: "ipv4" }]
      })
      expect((yield* publishFrom(untrusted, a)).status).toBe(202)
      // A spoofed header from an untrusted peer does not buy a fresh bucket.
      expect((yield* publishFrom(untrusted, b)).status).toBe(429)
      expect((yield* publishFrom(untrusted, { "cf-connecting-ip": "198.51.100.9" })).status).toBe(429)
      expect(untrusted.server.limits.sizes().rateBuckets).toBe(1)
    })
  )
})

describe("per-IP connection cap", () => {
  it.scoped("GATEWAY_MAX_CONNECTIONS_PER_IP open connections, then 429 until one closes", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway({ maxConnectionsPerIp: 2 })
      const before = yield* rejected(harness, "upgrade", "ip_connection_limit")
      const first = yield* harness.connectReady(newId())
      yield* harness.connectReady(newId())
      const refused = yield* Effect.flip(harness.connect(yield* harness.token({ userId: newId() })))
      expect(refused).toEqual({
        status: 429,
        body: JSON.stringify({ error: "too_many_connections_from_ip" })
      })
      expect(yield* rejected(harness, "upgrade", "ip_connection_limit")).toBe(before + 1)
      first.socket.close()
      yield* eventually(
        "server released the closed connection's slot",
        () => harness.gateway.connectionCount() === 1
      )
      yield* eventually("the slot is free", () => harness.server.limits.sizes().connections === 1)
      yield* harness.connectReady(newId())
      expect(harness.gateway.connectionCount()).toBe(2)
      // A refused token holds no slot: its socket is closed at once.
      yield* eventually("one slot free", () => harness.server.limits.sizes().connections === 2)
    })
  )
})

describe("configuration of the HTTP-layer limits", () => {
  const read = (env: Record<string, string>) =>
    Effect.either(
      Effect.withConfigProvider(Config.make, ConfigProvider.fromMap(new Map(Object.entries(env))))
    )

  it.effect("defaults, values, and a refused CIDR list naming its key", () =>
    Effect.gen(function* () {
      const defaults = yield* read({})
      if (Either.isLeft(defaults)) return expect.fail(String(defaults.left))
      expect(Duration.toMillis(defaults.right.requestTimeout)).toBe(10_000)
      expect(defaults.right.rateLimitPerMinute).toBe(0)
      expect(defaults.right.maxConnectionsPerIp).toBe(0)
      expect(defaults.right.trustedProxies).toEqual([])
      expect(defaults.right.maxTokenBytes).toBe(4096)

      const set = yield* read({
        GATEWAY_REQUEST_TIMEOUT_SECS: "2.5",
        GATEWAY_RATE_LIMIT_REQUESTS_PER_MINUTE: "600",
        GATEWAY_MAX_CONNECTIONS_PER_IP: "50",
        GATEWAY_TRUSTED_PROXY_CIDRS: "10.0.0.0/8, 192.168.1.7 ,fd00::/8",
        GATEWAY_MAX_TOKEN_BYTES: "8192"
      })
      if (Either.isLeft(set)) return expect.fail(String(set.left))
      expect(Duration.toMillis(set.right.requestTimeout)).toBe(2500)
      expect(set.right.rateLimitPerMinute).toBe(600)
      expect(set.right.maxConnectionsPerIp).toBe(50)
      expect(set.right.trustedProxies).toEqual([
        { address: "10.0.0.0", prefix: 8, family: "ipv4" },
        { address: "192.168.1.7", prefix: 32, family: "ipv4" },
        { address: "fd00::", prefix: 8, family: "ipv6" }
      ])
      expect(set.right.maxTokenBytes).toBe(8192)

      for (const [key, value] of [
        ["GATEWAY_TRUSTED_PROXY_CIDRS", "10.0.0.0/33"],
        ["GATEWAY_TRUSTED_PROXY_CIDRS", "proxy.internal"],
        ["GATEWAY_RATE_LIMIT_REQUESTS_PER_MINUTE", "-1"],
        ["GATEWAY_MAX_CONNECTIONS_PER_IP", "many"],
        ["GATEWAY_REQUEST_TIMEOUT_SECS", "0"],
        ["GATEWAY_MAX_TOKEN_BYTES", "0"]
      ] as const) {
        const refused = yield* read({ [key]: value })
        expect(Either.isLeft(refused), `${key}=${value}`).toBe(true)
        if (Either.isLeft(refused)) expect(String(refused.left)).toContain(key)
      }
    })
  )
})
