/**
 * The inspector's admin API over real HTTP and real sockets: off without `GATEWAY_ADMIN_KEY`, the
 * key and the session cookie, the security headers, the rate limit, the counters, the overview,
 * explore and its actions (close 4014, drop a subscription), the publish console and the live tail.
 */
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Duration, Effect, Option, Redacted, TestClock } from "effect"
import * as Config from "../../src/server/Config.js"
import { FriendRemove } from "../../src/protocol/events/friend.js"
import type { UserId } from "../../src/protocol/Ids.js"
import { MessageCreate } from "../../src/protocol/events/message.js"
import { CONTENT_SECURITY_POLICY } from "../../src/server/inspector/Inspector.js"
import { eventually, eventuallyEffect } from "../deadline.js"
import { ADMIN_KEY } from "./support.js"
import { DEADLINE_MS, message, newId, startGateway, typed, type Harness } from "../server/harness.js"

const ADMIN = { adminKey: Option.some(ADMIN_KEY) }

/** Answers are read loosely: each test asserts the shape it needs. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Loose = any

const json = (body: unknown): RequestInit => ({
  method: "POST",
  headers: { "content-type": "application/json" },
  body: JSON.stringify(body)
})

/** Logs in with the key; the session cookie (name=value). */
const login = (harness: Harness) =>
  Effect.promise(async () => {
    const response = await fetch(
      `http://127.0.0.1:${harness.port}/admin/api/session`,
      json({ key: Redacted.value(ADMIN_KEY) })
    )
    expect(response.status).toBe(200)
    const cookie = response.headers.get("set-cookie") ?? ""
    expect(cookie).toMatch(
      /^filament_admin=[A-Za-z0-9_-]{43}; Path=\/admin; HttpOnly; SameSite=Strict; Max-Age=\d+$/
    )
    return cookie.split(";")[0]!
  })

const admin = (harness: Harness, cookie: string, path: string, init: RequestInit = {}) =>
  Effect.promise(async () => {
    const response = await fetch(`http://127.0.0.1:${harness.port}${path}`, {
      ...init,
      headers: { ...(init.headers as Record<string, string> | undefined), cookie }
    })
    return { status: response.status, headers: response.headers, body: (await response.json()) as Loose }
  })

const outcome = (harness: Harness, value: string) =>
  harness.metric("filament_gateway_admin_requests_total", { outcome: value })

/** A live-tail stream read over real HTTP: the events parsed as they arrive. */
const openTail = (harness: Harness, cookie: string, query: string) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const controller = new AbortController()
      const response = await fetch(`http://127.0.0.1:${harness.port}/admin/api/tail?${query}`, {
        headers: { cookie },
        signal: controller.signal
      })
      const events: Array<{ event: string; data: Loose }> = []
      const done = (async () => {
        if (response.body === null) return
        const decoder = new TextDecoder()
        let buffered = ""
        try {
          const reader = response.body.getReader()
          for (let read = await reader.read(); !read.done; read = await reader.read()) {
            buffered += decoder.decode(read.value, { stream: true })
            for (let end = buffered.indexOf("\n\n"); end >= 0; end = buffered.indexOf("\n\n")) {
              const block = buffered.slice(0, end)
              buffered = buffered.slice(end + 2)
              const event = /^event: (.*)$/m.exec(block)?.[1]
              const data = /^data: (.*)$/m.exec(block)?.[1]
              if (event !== undefined && data !== undefined) events.push({ event, data: JSON.parse(data) })
            }
          }
        } catch {
          // aborted by the release below
        }
      })()
      return { response, events, close: () => controller.abort(), done }
    }),
    (tail) => Effect.sync(() => tail.close())
  )

describe("inspector admin API", () => {
  it.effect("GATEWAY_ADMIN_KEY must be at least 32 characters; the admin limits have defaults", () =>
    Effect.gen(function* () {
      const read = (env: Record<string, string>) =>
        Effect.withConfigProvider(Config.make, ConfigProvider.fromMap(new Map(Object.entries(env))))
      const short = yield* Effect.flip(read({ GATEWAY_ADMIN_KEY: "too-short" }))
      expect(String(short)).toContain("GATEWAY_ADMIN_KEY must be at least 32 characters")
      const config = yield* read({ GATEWAY_ADMIN_KEY: Redacted.value(ADMIN_KEY) })
      expect(Option.map(config.adminKey, Redacted.value)).toEqual(Option.some(Redacted.value(ADMIN_KEY)))
      expect(config).toMatchObject({
        adminRequestsPerMinute: 600,
        adminMaxSessions: 16,
        adminMaxTailViewers: 4,
        adminTailEventsPerSecond: 20,
        adminTailQueue: 256
      })
      expect(Option.isNone((yield* read({})).adminKey)).toBe(true)
    })
  )

  it.scoped("is not served without GATEWAY_ADMIN_KEY", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway()
      expect((yield* harness.http("/admin")).status).toBe(404)
      expect((yield* harness.http("/admin/api/session", json({ key: "x".repeat(40) }))).status).toBe(404)
      expect((yield* harness.http("/admin/api/overview")).status).toBe(404)
    })
  )

  it.scoped("a wrong key is refused (401, counted); the key opens an HttpOnly SameSite=Strict session", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway({ ...ADMIN, adminSessionTtl: Duration.seconds(5) })
      const unauthorized = yield* outcome(harness, "unauthorized")
      const authFailures = yield* harness.metric("filament_auth_failures_total", { reason: "unauthorized" })
      const wrong = yield* harness.http("/admin/api/session", json({ key: `${Redacted.value(ADMIN_KEY)}x` }))
      expect(wrong).toEqual({ status: 401, body: '{"error":"invalid_credentials"}' })
      // The key in a URL is never read.
      const inUrl = yield* harness.http(`/admin/api/overview?key=${Redacted.value(ADMIN_KEY)}`)
      expect(inUrl.status).toBe(401)
      expect((yield* harness.http("/admin/api/overview")).status).toBe(401)
      const forged = yield* admin(harness, "filament_admin=forged", "/admin/api/overview")
      expect(forged.status).toBe(401)
      expect((yield* outcome(harness, "unauthorized")) - unauthorized).toBe(4)
      expect(
        (yield* harness.metric("filament_auth_failures_total", { reason: "unauthorized" })) - authFailures
      ).toBe(1)

      const ok = yield* outcome(harness, "ok")
      const cookie = yield* login(harness)
      const overview = yield* admin(harness, cookie, "/admin/api/overview")
      expect(overview.status).toBe(200)
      expect(overview.body.totals.connections).toBe(0)
      // The key as a Bearer token works for scripts.
      const bearer = yield* harness.http("/admin/api/overview", {
        headers: { authorization: `Bearer ${Redacted.value(ADMIN_KEY)}` }
      })
      expect(bearer.status).toBe(200)
      expect((yield* outcome(harness, "ok")) - ok).toBe(3)

      // A session ends at its TTL; signing out ends it at once.
      yield* TestClock.adjust("6 seconds")
      expect((yield* admin(harness, cookie, "/admin/api/overview")).status).toBe(401)
      const second = yield* login(harness)
      expect((yield* admin(harness, second, "/admin/api/session", { method: "DELETE" })).status).toBe(200)
      expect((yield* admin(harness, second, "/admin/api/overview")).status).toBe(401)
    })
  )

  it.scoped("every response carries the strict CSP; the login needs a JSON body", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway(ADMIN)
      for (const path of ["/admin", "/admin/app.js", "/admin/app.css", "/admin/api/overview"]) {
        const response = yield* Effect.promise(() => fetch(`http://127.0.0.1:${harness.port}${path}`))
        expect(response.headers.get("content-security-policy")).toBe(CONTENT_SECURITY_POLICY)
        expect(response.headers.get("x-content-type-options")).toBe("nosniff")
      }
      expect(CONTENT_SECURITY_POLICY).toContain("script-src 'self'")
      expect(CONTENT_SECURITY_POLICY).not.toContain("unsafe-inline")
      const form = yield* harness.http("/admin/api/session", {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: `key=${Redacted.value(ADMIN_KEY)}`
      })
      expect(form).toEqual({ status: 415, body: '{"error":"unsupported_media_type"}' })
    })
  )

  it.scoped("admin calls are rate-limited per client address per minute (429, counted)", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway({ ...ADMIN, adminRequestsPerMinute: 3 })
      const limited = yield* outcome(harness, "rate_limited")
      const hits = () =>
        harness.metric("filament_rate_limit_hits_total", { surface: "admin", reason: "rate_limited" })
      const hits0 = yield* hits()
      for (let i = 0; i < 3; i++) expect((yield* harness.http("/admin")).status).toBe(200)
      expect(yield* harness.http("/admin/api/session", json({ key: Redacted.value(ADMIN_KEY) }))).toEqual({
        status: 429,
        body: '{"error":"rate_limited"}'
      })
      expect((yield* outcome(harness, "rate_limited")) - limited).toBe(1)
      expect((yield* hits()) - hits0).toBe(1)
      yield* TestClock.adjust("60 seconds")
      expect((yield* harness.http("/admin")).status).toBe(200)
    })
  )

  it.scoped("behind a trusted proxy each forwarded client address has its own budget", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway({
        ...ADMIN,
        adminRequestsPerMinute: 1,
        trustedProxies: [{ address: "127.0.0.0", prefix: 8, family: "ipv4" }]
      })
      const from = (ip: string) => harness.http("/admin", { headers: { "x-forwarded-for": ip } })
      expect((yield* from("203.0.113.1")).status).toBe(200)
      expect((yield* from("203.0.113.1")).status).toBe(429)
      expect((yield* from("203.0.113.2")).status).toBe(200)
    })
  )

  it.scoped("overview counts connections, users and subscriptions; explore ranks and looks up", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway(ADMIN)
      const cookie = yield* login(harness)
      const [alice, bob, guild, hot, quiet] = [newId(), newId(), newId(), newId(), newId()]
      const a1 = yield* harness.connectReady(alice, { [guild]: "*" })
      const a2 = yield* harness.connectReady(alice, { [guild]: "*" })
      const b1 = yield* harness.connectReady(bob, { [guild]: "*" })
      yield* a1.subscribe(guild, hot)
      yield* a2.subscribe(guild, quiet)
      yield* b1.subscribe(guild, hot)

      const overview = yield* admin(harness, cookie, "/admin/api/overview")
      expect(overview.body.totals).toMatchObject({
        connections: 3,
        usersOnline: 2,
        subscriptions: 3,
        busHealthy: true
      })
      // The sampler takes one sample a second while the overview is looked at.
      yield* harness.gateway.publish(MessageCreate, message(guild, hot, "one"))
      yield* TestClock.adjust("1 second")
      const sampled = yield* admin(harness, cookie, "/admin/api/overview")
      const last = sampled.body.samples.at(-1)
      // One publish to the hot channel's two subscribers: per second, one publish and two deliveries.
      expect(last).toMatchObject({
        connections: 3,
        subscriptions: 3,
        publishes: { message_create: 1 },
        deliveries: { message_create: 2 }
      })

      const top = yield* admin(harness, cookie, "/admin/api/top")
      expect(top.body.channels[0]).toEqual({ id: `${guild}:${hot}`, subscribers: 2 })
      expect(top.body.guilds[0]).toEqual({ id: guild, subscribers: 3 })

      const user = yield* admin(harness, cookie, `/admin/api/users/${alice}`)
      expect(user.body.connections).toHaveLength(2)
      expect(user.body.connections[0]).toMatchObject({
        subscriptions: [{ guild_id: guild, channel_id: hot }],
        outboxDepth: 0,
        bufferedBytes: 0,
        open: true
      })
      expect((yield* admin(harness, cookie, "/admin/api/users/not-a-ulid")).status).toBe(400)
    })
  )

  it.scoped("the sampler runs only while the overview is looked at: it stops 30 s after the last look", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway(ADMIN)
      const cookie = yield* login(harness)
      const first = yield* admin(harness, cookie, "/admin/api/overview")
      expect(first.body.samples).toEqual([])
      const viewedAt: number = first.body.now
      yield* TestClock.adjust("90 seconds")
      const later = yield* admin(harness, cookie, "/admin/api/overview")
      const times: Array<number> = later.body.samples.map((sample: { at: number }) => sample.at)
      // One a second for the 30 s after the look, then nothing for the remaining minute.
      expect(times).toHaveLength(30)
      expect(times[0]).toBe(viewedAt + 1000)
      expect(times.at(-1)).toBe(viewedAt + 30_000)
    })
  )

  it.scoped("close a connection: the client sees 4014 closed_by_admin, counted as a disconnect", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway(ADMIN)
      const cookie = yield* login(harness)
      const [user, guild, channel] = [newId(), newId(), newId()]
      const client = yield* harness.connectReady(user, { [guild]: "*" })
      yield* client.subscribe(guild, channel)
      const before = yield* harness.metric("filament_ws_disconnects_total", { reason: "closed_by_admin" })
      const [connection] = (yield* admin(harness, cookie, `/admin/api/users/${user}`)).body.connections
      const closed = yield* admin(harness, cookie, `/admin/api/connections/${connection.id}/close`, {
        method: "POST"
      })
      expect(closed).toMatchObject({ status: 200, body: { code: 4014, reason: "closed_by_admin" } })
      expect(yield* client.waitClosed()).toEqual({ code: 4014, reason: "closed_by_admin" })
      expect(
        (yield* harness.metric("filament_ws_disconnects_total", { reason: "closed_by_admin" })) - before
      ).toBe(1)
      const again = yield* admin(harness, cookie, `/admin/api/connections/${connection.id}/close`, {
        method: "POST"
      })
      expect(again).toMatchObject({ status: 404, body: { error: "not_found" } })
    })
  )

  it.scoped(
    "drop a subscription: runs the connection's own unsubscribe (ack, registry, no more events)",
    () =>
      Effect.gen(function* () {
        const harness = yield* startGateway(ADMIN)
        const cookie = yield* login(harness)
        const [user, guild, channel, other] = [newId(), newId(), newId(), newId()]
        const client = yield* harness.connectReady(user, { [guild]: "*" })
        yield* client.subscribe(guild, channel)
        const [connection] = (yield* admin(harness, cookie, `/admin/api/users/${user}`)).body.connections
        const path = `/admin/api/connections/${connection.id}/unsubscribe`
        const notHeld = yield* admin(harness, cookie, path, json({ guild_id: guild, channel_id: other }))
        expect(notHeld).toMatchObject({ status: 404, body: { error: "not_subscribed" } })
        const dropped = yield* admin(harness, cookie, path, json({ guild_id: guild, channel_id: channel }))
        expect(dropped.status).toBe(202)
        expect((yield* client.nextOfType("unsubscribed")).d).toEqual({ guild_id: guild, channel_id: channel })
        expect(yield* harness.registry.channelMembers(guild as never, channel as never)).toHaveLength(0)
        const invalid = yield* admin(harness, cookie, path, json({ guild_id: "nope", channel_id: channel }))
        expect(invalid.status).toBe(400)
      })
  )

  it.scoped("publish console: field errors with their paths; a valid event reaches its subscriber", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway(ADMIN)
      const cookie = yield* login(harness)
      const [user, guild, channel] = [newId(), newId(), newId()]
      const client = yield* harness.connectReady(user, { [guild]: "*" })
      yield* client.subscribe(guild, channel)
      const manifest = yield* admin(harness, cookie, "/admin/api/manifest")
      const types = manifest.body.events.map((event: { event_type: string }) => event.event_type)
      expect(types).toContain("channel_create")
      expect(types).not.toContain("ready")

      const invalid = yield* admin(
        harness,
        cookie,
        "/admin/api/publish",
        json({
          t: "channel_create",
          d: { guild_id: guild, channel: { channel_id: "x", name: 5, kind: "text" } }
        })
      )
      expect(invalid.status).toBe(400)
      expect(invalid.body.error).toBe("invalid_event")
      expect(invalid.body.fields.map((field: { path: string }) => field.path).sort()).toEqual([
        "channel.channel_id",
        "channel.name"
      ])
      const valid = yield* admin(
        harness,
        cookie,
        "/admin/api/publish",
        json({
          t: "channel_create",
          d: { guild_id: guild, channel: { channel_id: newId(), name: "ops", kind: "text" } }
        })
      )
      expect(valid).toMatchObject({ status: 202, body: { recipients: 1 } })
      expect((yield* client.nextOfType("channel_create")).d["channel"]).toMatchObject({ name: "ops" })
    })
  )

  it.scoped("live tail of a user: the events delivered to any of the user's connections, nobody else's", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway(ADMIN)
      const cookie = yield* login(harness)
      const [user, other, guild, channel, elsewhere] = [newId(), newId(), newId(), newId(), newId()]
      const client = yield* harness.connectReady(user, { [guild]: "*" })
      yield* client.subscribe(guild, channel)
      const tail = yield* openTail(harness, cookie, `user=${user}`)
      yield* eventually("tail ready", () => tail.events.some((event) => event.event === "ready"))
      yield* harness.gateway.publish(MessageCreate, message(guild, elsewhere, "not hers"))
      yield* harness.gateway.publishToUsers(
        FriendRemove,
        typed(FriendRemove, { user_id: other, friend_user_id: newId(), removed_at_unix: 1_700_000_000 }),
        [other as UserId]
      )
      yield* harness.gateway.publish(MessageCreate, message(guild, channel, "hers"))
      yield* harness.gateway.publishToUsers(
        FriendRemove,
        typed(FriendRemove, { user_id: user, friend_user_id: newId(), removed_at_unix: 1_700_000_000 }),
        [user as UserId]
      )
      yield* eventually("two events", () => tail.events.filter((e) => e.event === "tail").length === 2)
      const seen = tail.events.filter((event) => event.event === "tail").map((event) => event.data)
      expect(seen.map((event) => [event.t, event.scope])).toEqual([
        ["message_create", "channel"],
        ["friend_remove", "user"]
      ])
      expect(seen[0].payload.content).toBe("hers")
      expect(seen[1].route).toEqual({ scope: "user", userIds: [user] })
      expect((yield* admin(harness, cookie, "/admin/api/tail?user=nope")).status).toBe(400)
      expect((yield* admin(harness, cookie, `/admin/api/tail?user=${user}&guild=${guild}`)).status).toBe(400)
    })
  )

  it.scoped(
    "live tail: events of the watched channel, checked against the manifest, sampled and bounded",
    () =>
      Effect.gen(function* () {
        const harness = yield* startGateway({ ...ADMIN, adminTailEventsPerSecond: 2, adminMaxTailViewers: 1 })
        const cookie = yield* login(harness)
        const [user, guild, channel, elsewhere] = [newId(), newId(), newId(), newId()]
        const client = yield* harness.connectReady(user, { [guild]: "*" })
        yield* client.subscribe(guild, channel)
        const tail = yield* openTail(harness, cookie, `guild=${guild}&channel=${channel}`)
        expect(tail.response.status).toBe(200)
        expect(tail.response.headers.get("content-type")).toBe("text/event-stream")
        yield* eventually("tail ready", () => tail.events.some((event) => event.event === "ready"))
        // A second viewer is over the cap.
        const refused = yield* admin(harness, cookie, `/admin/api/tail?guild=${guild}`)
        expect(refused).toMatchObject({ status: 429, body: { error: "too_many_viewers" } })

        yield* harness.gateway.publish(MessageCreate, message(guild, elsewhere, "not watched"))
        for (let i = 0; i < 5; i++)
          yield* harness.gateway.publish(MessageCreate, message(guild, channel, `m${i}`))
        yield* eventually(
          "two sampled events",
          () => tail.events.filter((e) => e.event === "tail").length === 2
        )
        const [first] = tail.events.filter((event) => event.event === "tail")
        expect(first!.data).toMatchObject({
          t: "message_create",
          scope: "channel",
          recipients: 1,
          valid: true,
          skipped: 0,
          origin: "local"
        })
        expect(first!.data.payload.content).toBe("m0")
        expect(first!.data.bytes).toBeGreaterThan(100)
        // The rest of the second were skipped; the next second's event says how many.
        yield* TestClock.adjust("1 second")
        yield* harness.gateway.publish(MessageCreate, message(guild, channel, "later"))
        yield* eventually("third event", () => tail.events.filter((e) => e.event === "tail").length === 3)
        expect(tail.events.filter((e) => e.event === "tail")[2]!.data).toMatchObject({ skipped: 3 })

        // Closing the stream releases the viewer: another may open.
        tail.close()
        yield* Effect.promise(() => tail.done)
        let reopened = 429
        const reopen = Effect.promise(async () => {
          const controller = new AbortController()
          const response = await fetch(`http://127.0.0.1:${harness.port}/admin/api/tail?user=${user}`, {
            headers: { cookie },
            signal: controller.signal
          })
          controller.abort()
          reopened = response.status
          return reopened !== 429
        })
        yield* eventuallyEffect("the released viewer's slot reopened", reopen, DEADLINE_MS, 20)
        expect(reopened).toBe(200)
      })
  )
})
