/**
 * Reference §9.1 over real sockets: handshake and `ready` first, subscribe and its ack, the gateway
 * `message_create` round trip, forbidden subscribe, unsubscribe, and auth at upgrade.
 */
import { describe, expect, it } from "@effect/vitest"
import { Clock, Effect, Either, Redacted } from "effect"
import { SignJWT } from "jose"
import { eventuallyEffect } from "../deadline.js"
import { SECRET, newId, startGateway } from "../server/harness.js"

describe("handshake", () => {
  it.scoped("ready {user_id} is the first text frame, with the canonical id", () =>
    Effect.gen(function* () {
      const gateway = yield* startGateway()
      const user = newId()
      const client = yield* gateway.connect(yield* gateway.token({ userId: user.toLowerCase() }))
      const first = yield* client.next()
      expect(first).toEqual({ v: 1, t: "ready", d: { user_id: user } })
      expect(
        yield* gateway.metric("filament_gateway_events_emitted_total", {
          scope: "connection",
          event_type: "ready"
        })
      ).toBeGreaterThan(0)
    })
  )

  it.scoped(
    "a subscribe sent the moment the socket opens (as the web client does) is acked after ready",
    () =>
      Effect.gen(function* () {
        const gateway = yield* startGateway()
        const [user, guild, channel] = [newId(), newId(), newId()]
        const token = yield* gateway.token({ userId: user, guilds: { [guild]: [channel] } })
        const client = yield* gateway.connect(token)
        // Sent from the open callback's turn: before the test could have seen `ready`.
        client.send({ v: 1, t: "subscribe", d: { guild_id: guild, channel_id: channel } })
        expect((yield* client.next()).t).toBe("ready")
        expect(yield* client.next()).toEqual({
          v: 1,
          t: "subscribed",
          d: { guild_id: guild, channel_id: channel }
        })
      })
  )

  it.scoped("token via Authorization: Bearer when no access_token query parameter", () =>
    Effect.gen(function* () {
      const gateway = yield* startGateway()
      const user = newId()
      const token = yield* gateway.token({ userId: user })
      const client = yield* gateway.connect(token, {
        query: false,
        headers: { authorization: `Bearer ${token}` }
      })
      expect((yield* client.next()).d).toEqual({ user_id: user })
    })
  )

  it.scoped("subscribe -> subscribed echoing canonical ids; a message_create round trip", () =>
    Effect.gen(function* () {
      const gateway = yield* startGateway()
      const [user, guild, channel] = [newId(), newId(), newId()]
      const client = yield* gateway.connectReady(user, { [guild]: [channel] })
      client.send({
        v: 1,
        t: "subscribe",
        d: { guild_id: guild.toLowerCase(), channel_id: channel.toLowerCase() }
      })
      const ack = yield* client.nextOfType("subscribed")
      expect(ack.d).toEqual({ guild_id: guild, channel_id: channel })
      client.send({
        v: 1,
        t: "message_create",
        d: { guild_id: guild, channel_id: channel, content: "hello\nworld" }
      })
      const message = yield* client.nextOfType("message_create")
      expect(message.d).toMatchObject({
        guild_id: guild,
        channel_id: channel,
        author_id: user,
        content: "hello\nworld",
        attachments: [],
        reactions: [],
        markdown_tokens: [
          { type: "paragraph_start" },
          { type: "text", text: "hello" },
          { type: "soft_break" },
          { type: "text", text: "world" },
          { type: "paragraph_end" }
        ]
      })
      expect(message.d["message_id"]).toMatch(/^[0-9A-HJKMNP-TV-Z]{26}$/)
      expect(message.d["created_at_unix"]).toBe(Math.floor((yield* Clock.currentTimeMillis) / 1000))
    })
  )

  it.scoped("forbidden subscribe is ignored and the connection kept; an allowed one is acked after it", () =>
    Effect.gen(function* () {
      const gateway = yield* startGateway()
      const [user, guild, channel, otherGuild] = [newId(), newId(), newId(), newId()]
      const client = yield* gateway.connectReady(user, { [guild]: [channel] })
      const before = yield* gateway.metric("filament_gateway_subscribe_rejected_total", {
        reason: "forbidden"
      })
      client.send({ v: 1, t: "subscribe", d: { guild_id: otherGuild, channel_id: newId() } })
      client.send({ v: 1, t: "subscribe", d: { guild_id: guild, channel_id: newId() } })
      const ack = yield* client.subscribe(guild, channel)
      expect(ack.d).toEqual({ guild_id: guild, channel_id: channel })
      expect(client.closed).toBeUndefined()
      expect(
        yield* gateway.metric("filament_gateway_subscribe_rejected_total", { reason: "forbidden" })
      ).toBe(before + 2)
    })
  )

  it.scoped("unsubscribe -> unsubscribed, and channel events stop", () =>
    Effect.gen(function* () {
      const gateway = yield* startGateway()
      const [user, guild, a, b] = [newId(), newId(), newId(), newId()]
      const client = yield* gateway.connectReady(user, { [guild]: "*" })
      yield* client.subscribe(guild, a)
      yield* client.subscribe(guild, b)
      client.send({ v: 1, t: "unsubscribe", d: { guild_id: guild, channel_id: a } })
      expect((yield* client.nextOfType("unsubscribed")).d).toEqual({ guild_id: guild, channel_id: a })
      client.send({ v: 1, t: "message_create", d: { guild_id: guild, channel_id: a, content: "not for me" } })
      client.send({ v: 1, t: "message_create", d: { guild_id: guild, channel_id: b, content: "for me" } })
      expect((yield* client.nextOfType("message_create")).d["content"]).toBe("for me")
    })
  )

  it.scoped("message_create refused by the MessageHandler closes 4011 message_rejected", () =>
    Effect.gen(function* () {
      const gateway = yield* startGateway()
      const [user, guild, channel] = [newId(), newId(), newId()]
      const client = yield* gateway.connectReady(user, { [guild]: [channel] })
      const before = yield* gateway.metric("filament_ws_disconnects_total", { reason: "message_rejected" })
      client.send({ v: 1, t: "message_create", d: { guild_id: guild, channel_id: newId(), content: "x" } })
      expect(yield* client.waitClosed()).toEqual({ code: 4011, reason: "message_rejected" })
      expect(yield* gateway.metric("filament_ws_disconnects_total", { reason: "message_rejected" })).toBe(
        before + 1
      )
    })
  )

  it.scoped("attachments are refused by the default handler (4011)", () =>
    Effect.gen(function* () {
      const gateway = yield* startGateway()
      const [user, guild, channel] = [newId(), newId(), newId()]
      const client = yield* gateway.connectReady(user, { [guild]: [channel] })
      client.send({
        v: 1,
        t: "message_create",
        d: { guild_id: guild, channel_id: channel, content: "", attachment_ids: [newId()] }
      })
      expect(yield* client.waitClosed()).toEqual({ code: 4011, reason: "message_rejected" })
    })
  )
})

describe("auth at upgrade", () => {
  const refused = (status: number) => ({ status, body: '{"error":"invalid_credentials"}' })

  it.scoped("missing, empty, malformed, wrongly signed, expired tokens and non-ULID sub: 401, counted", () =>
    Effect.gen(function* () {
      const gateway = yield* startGateway()
      const user = newId()
      const valid = yield* gateway.token({ userId: user })
      const now = Math.floor(Date.now() / 1000)
      const wronglySigned = yield* Effect.promise(() =>
        new SignJWT({})
          .setProtectedHeader({ alg: "HS256" })
          .setSubject(user)
          .setExpirationTime(now + 60)
          .sign(new TextEncoder().encode("another-secret-another-secret-another-secret"))
      )
      const expired = yield* gateway.token({ userId: user, expiresInSeconds: -1 })
      const noExp = yield* Effect.promise(() =>
        new SignJWT({})
          .setProtectedHeader({ alg: "HS256" })
          .setSubject(user)
          .sign(new TextEncoder().encode(Redacted.value(SECRET)))
      )
      const badSub = yield* gateway.token({ userId: "not-a-ulid" })
      const cases: ReadonlyArray<
        readonly [string, Effect.Effect<unknown, { status: number; body: string }, never>]
      > = [
        ["missing", Effect.scoped(gateway.connect(undefined))],
        [
          "empty query wins over a valid header",
          Effect.scoped(gateway.connect("", { headers: { authorization: `Bearer ${valid}` } }))
        ],
        ["malformed", Effect.scoped(gateway.connect("not.a.jwt"))],
        ["wrongly signed", Effect.scoped(gateway.connect(wronglySigned))],
        ["expired", Effect.scoped(gateway.connect(expired))],
        ["without exp", Effect.scoped(gateway.connect(noExp))],
        ["sub not a ULID", Effect.scoped(gateway.connect(badSub))]
      ]
      for (const [label, attempt] of cases) {
        const before = yield* gateway.metric("filament_auth_failures_total", { reason: "unauthorized" })
        const result = yield* Effect.flip(attempt)
        expect(result, label).toEqual(refused(401))
        expect(yield* gateway.metric("filament_auth_failures_total", { reason: "unauthorized" }), label).toBe(
          before + 1
        )
      }
    })
  )

  it.scoped("connections per user are capped (429, counted)", () =>
    Effect.gen(function* () {
      const gateway = yield* startGateway({ maxConnectionsPerUser: 2 })
      const user = newId()
      yield* gateway.connectReady(user)
      yield* gateway.connectReady(user)
      const before = yield* gateway.metric("filament_gateway_connections_rejected_total", {
        reason: "too_many_connections"
      })
      const result = yield* Effect.flip(gateway.connect(yield* gateway.token({ userId: user })))
      expect(result).toEqual({ status: 429, body: '{"error":"too_many_connections"}' })
      expect(
        yield* gateway.metric("filament_gateway_connections_rejected_total", {
          reason: "too_many_connections"
        })
      ).toBe(before + 1)
      yield* gateway.connectReady(newId())
    })
  )

  it.scoped("simultaneous upgrades of one user cannot pass the cap together; slots come back", () =>
    Effect.gen(function* () {
      const gateway = yield* startGateway({ maxConnectionsPerUser: 3 })
      const user = newId()
      const token = yield* gateway.token({ userId: user })
      const before = yield* gateway.metric("filament_gateway_connections_rejected_total", {
        reason: "too_many_connections"
      })
      const attempts = yield* Effect.all(
        Array.from({ length: 10 }, () => Effect.either(gateway.connect(token))),
        { concurrency: "unbounded" }
      )
      const accepted = attempts.filter(Either.isRight).map((attempt) => attempt.right)
      const refused = attempts.filter(Either.isLeft).map((attempt) => attempt.left)
      expect(accepted).toHaveLength(3)
      expect(refused).toEqual(Array(7).fill({ status: 429, body: '{"error":"too_many_connections"}' }))
      expect(
        yield* gateway.metric("filament_gateway_connections_rejected_total", {
          reason: "too_many_connections"
        })
      ).toBe(before + 7)
      for (const client of accepted) yield* client.nextOfType("ready")
      // Closing one frees exactly one slot once the gateway has unregistered it.
      accepted[0]!.socket.close()
      yield* accepted[0]!.waitClosed()
      yield* eventuallyEffect(
        "the closed connection unregistered",
        Effect.map(gateway.serverConnections(user), (connections) => connections.length === 2)
      )
      yield* gateway.connectReady(user)
      expect((yield* Effect.flip(gateway.connect(token))).status).toBe(429)
    })
  )
})
