/**
 * Connection lifecycle on the gateway's Clock (TestClock): heartbeat pong deadline (4009), token
 * expiry while connected (4010), and the drain on shutdown (1001 going_away, bounded grace).
 */
import { createServer, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import { describe, expect, it } from "@effect/vitest"
import type { WebSocket } from "ws"
import { Deferred, Duration, Effect, Either, Exit, Fiber, Layer, Scope, TestClock } from "effect"
import { makeJwt, TokenVerifier } from "../../src/server/Auth.js"
import { rawExchange } from "../adversarial/support.js"
import { eventually, within } from "../deadline.js"
import { awaitSleeps, type Harness, newId, SECRET, seriesValue, startGateway } from "../server/harness.js"

/** Listens now (eagerly, before the clock moves); the returned effect waits with a real deadline. */
const nextEvent = (emitter: { once: (event: string, listener: () => void) => unknown }, event: string) => {
  const happened = within(event, new Promise<void>((resolve) => emitter.once(event, () => resolve())))
  return Effect.promise(() => happened)
}

describe("heartbeat", () => {
  it.scoped("a silent client (no pong) is closed 4009 heartbeat_timeout after interval + timeout", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway({
        pingInterval: Duration.seconds(30),
        pongTimeout: Duration.seconds(10)
      })
      const user = newId()
      const client = yield* harness.connect(yield* harness.token({ userId: user }), { autoPong: false })
      yield* client.nextOfType("ready")
      const pinged = nextEvent(client.socket, "ping")
      const before = yield* harness.metric("filament_ws_disconnects_total", { reason: "heartbeat_timeout" })
      yield* TestClock.adjust(Duration.seconds(30))
      yield* pinged
      const [connection] = yield* harness.serverConnections(user)
      yield* TestClock.adjust(Duration.seconds(9))
      expect(connection?.isOpen).toBe(true)
      yield* TestClock.adjust(Duration.seconds(1))
      expect(yield* client.waitClosed()).toEqual({ code: 4009, reason: "heartbeat_timeout" })
      expect(yield* harness.metric("filament_ws_disconnects_total", { reason: "heartbeat_timeout" })).toBe(
        before + 1
      )
    })
  )

  it.scoped("a client that answers pings stays connected across many intervals", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway({
        pingInterval: Duration.seconds(30),
        pongTimeout: Duration.seconds(10)
      })
      const [user, guild] = [newId(), newId()]
      const client = yield* harness.connectReady(user, { [guild]: "*" })
      const [connection] = yield* harness.serverConnections(user)
      // Each adjustment ends on the sweep that pings; the pong then arrives over the socket.
      for (let round = 0; round < 3; round++) {
        // The server side of this connection is a real ws WebSocket.
        const pong = nextEvent(connection!.socket as unknown as WebSocket, "pong")
        yield* TestClock.adjust(Duration.seconds(30))
        yield* pong
        expect(connection!.pingSentAt).toBeUndefined()
      }
      expect((yield* client.subscribe(guild, newId())).t).toBe("subscribed")
      expect(client.closed).toBeUndefined()
    })
  )
})

describe("token expiry while connected", () => {
  it.scoped("the connection is closed 4010 token_expired when exp is reached", () =>
    Effect.gen(function* () {
      // No pings in this test: a pong cannot arrive in the middle of one clock adjustment.
      const harness = yield* startGateway({ pingInterval: Duration.seconds(600) })
      const [user, guild] = [newId(), newId()]
      const client = yield* harness.connect(
        yield* harness.token({ userId: user, guilds: { [guild]: "*" }, expiresInSeconds: 120 })
      )
      yield* client.nextOfType("ready")
      const before = yield* harness.metric("filament_ws_disconnects_total", { reason: "token_expired" })
      yield* TestClock.adjust(Duration.seconds(118))
      // Still served just before expiry.
      expect((yield* client.subscribe(guild, newId())).t).toBe("subscribed")
      yield* TestClock.adjust(Duration.seconds(2))
      expect(yield* client.waitClosed()).toEqual({ code: 4010, reason: "token_expired" })
      expect(yield* harness.metric("filament_ws_disconnects_total", { reason: "token_expired" })).toBe(
        before + 1
      )
    })
  )
})

/** A counter series read from the gateway's metrics (the HTTP listener is gone once drain starts). */
const counterNow = (harness: Harness, name: string, labels: Readonly<Record<string, string>>) =>
  seriesValue(harness.gatewayMetrics.render(), name, labels)

/**
 * A host TokenVerifier (the JWT one) whose check of one user's token does not finish until the test
 * releases it: `verifying` tells the test the upgrade is inside the check.
 */
const heldVerifier = (heldUser: string) =>
  Effect.gen(function* () {
    const verifying = yield* Deferred.make<void>()
    const release = yield* Deferred.make<void>()
    const jwt = makeJwt(SECRET)
    const layer = Layer.succeed(TokenVerifier, {
      verify: (token) =>
        Effect.tap(jwt.verify(token), (principal) =>
          principal.userId === heldUser
            ? Effect.zipRight(Deferred.succeed(verifying, undefined), Deferred.await(release))
            : Effect.void
        )
    })
    return { layer, verifying, release }
  })

describe("shutdown", () => {
  it.scoped("closing the gateway's scope stops accepting and closes every socket with 1001 going_away", () =>
    Effect.gen(function* () {
      const scope = yield* Scope.make()
      const harness = yield* startGateway().pipe(Scope.extend(scope))
      const clients = [yield* harness.connectReady(newId()), yield* harness.connectReady(newId())]
      expect((yield* harness.http("/readyz")).status).toBe(200)
      const goingAway = () =>
        seriesValue(harness.gatewayMetrics.render(), "filament_ws_disconnects_total", {
          reason: "going_away"
        })
      const before = goingAway()
      yield* Scope.close(scope, Exit.void)
      for (const client of clients)
        expect(yield* client.waitClosed()).toEqual({ code: 1001, reason: "going_away" })
      expect(harness.gateway.isAccepting()).toBe(false)
      expect(harness.gateway.connectionCount()).toBe(0)
      expect(goingAway()).toBe(before + 2)
      // The listener is gone: a new connection is refused at the TCP level.
      const refused = yield* Effect.either(harness.connect(yield* harness.token({ userId: newId() })))
      expect(refused._tag).toBe("Left")
    })
  )

  it.scoped("an upgrade whose token check ends after drain began is refused 503, nothing attaches", () =>
    Effect.gen(function* () {
      const heldUser = newId()
      const held = yield* heldVerifier(heldUser)
      const scope = yield* Scope.make()
      const harness = yield* startGateway({ closeGrace: Duration.seconds(60) }, held.layer).pipe(
        Scope.extend(scope)
      )
      // A peer that does not answer the close keeps the drain waiting out its grace.
      const holder = yield* harness.connectReady(newId())
      holder.socket.pause()
      const late = yield* Effect.fork(
        Effect.either(harness.connect(yield* harness.token({ userId: heldUser })))
      )
      yield* Deferred.await(held.verifying)
      const before = counterNow(harness, "filament_gateway_connections_rejected_total", {
        reason: "shutting_down"
      })
      const sleeping = (yield* TestClock.sleeps()).length
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* awaitSleeps(sleeping + 1)
      // Drain has begun; now the token check finishes.
      yield* Deferred.succeed(held.release, undefined)
      const refused = yield* Fiber.join(late)
      expect(Either.isLeft(refused) && refused.left).toEqual({
        status: 503,
        body: '{"error":"shutting_down"}'
      })
      expect(
        counterNow(harness, "filament_gateway_connections_rejected_total", { reason: "shutting_down" })
      ).toBe(before + 1)
      expect(harness.gateway.connectionCount()).toBe(1)
      expect(yield* harness.serverConnections(heldUser)).toHaveLength(0)
      yield* TestClock.adjust(Duration.seconds(60))
      yield* Fiber.join(closing)
      expect(harness.gateway.connectionCount()).toBe(0)
    })
  )

  it.scoped("an upgrade whose token check outlasts the drain is answered 503, not left open", () =>
    Effect.gen(function* () {
      const heldUser = newId()
      const held = yield* heldVerifier(heldUser)
      const scope = yield* Scope.make()
      const harness = yield* startGateway({}, held.layer).pipe(Scope.extend(scope))
      let answer: Either.Either<unknown, { status: number; body: string }> | undefined
      yield* Effect.fork(
        Effect.either(harness.connect(yield* harness.token({ userId: heldUser }))).pipe(
          Effect.tap((result) => (answer = result))
        )
      )
      yield* Deferred.await(held.verifying)
      const before = counterNow(harness, "filament_gateway_connections_rejected_total", {
        reason: "shutting_down"
      })
      // Nothing is connected: the drain ends at once, with the token check still running.
      yield* Scope.close(scope, Exit.void)
      yield* eventually("the held upgrade is answered", () => answer !== undefined)
      expect(answer !== undefined && Either.isLeft(answer) && answer.left).toEqual({
        status: 503,
        body: '{"error":"shutting_down"}'
      })
      expect(
        counterNow(harness, "filament_gateway_connections_rejected_total", { reason: "shutting_down" })
      ).toBe(before + 1)
      expect(harness.gateway.connectionCount()).toBe(0)
    })
  )

  it.scoped("a host server that still routes upgrades after the gateway's scope ended gets 503s", () =>
    Effect.gen(function* () {
      const scope = yield* Scope.make()
      const harness = yield* startGateway().pipe(Scope.extend(scope))
      // The host app's own server, which outlives the gateway's scope (the standalone one does not).
      const host = yield* Effect.acquireRelease(
        Effect.async<Server>((resume) => {
          const server = createServer()
          server.on("upgrade", (request, socket, head) =>
            harness.gateway.handleUpgrade(request, socket, head)
          )
          server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
        }),
        (server) => Effect.sync(() => server.close())
      )
      const token = yield* harness.token({ userId: newId() })
      yield* Scope.close(scope, Exit.void)
      const before = counterNow(harness, "filament_gateway_connections_rejected_total", {
        reason: "shutting_down"
      })
      const { port } = host.address() as AddressInfo
      const answer = yield* rawExchange(port, (socket) => {
        socket.write(
          `GET /gateway/ws?access_token=${token} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\n` +
            "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
      })
      expect({ status: answer.status, body: answer.body }).toEqual({
        status: 503,
        body: '{"error":"shutting_down"}'
      })
      expect(
        counterNow(harness, "filament_gateway_connections_rejected_total", { reason: "shutting_down" })
      ).toBe(before + 1)
    })
  )

  it.scoped("a peer that never completes the close handshake is dropped after the grace period", () =>
    Effect.gen(function* () {
      const scope = yield* Scope.make()
      // ws's own close-handshake timer uses the same (real-time) bound: keep it out of reach.
      const harness = yield* startGateway({ closeGrace: Duration.seconds(60) }).pipe(Scope.extend(scope))
      const client = yield* harness.connectReady(newId())
      client.socket.pause()
      const sleeping = (yield* TestClock.sleeps()).length
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* awaitSleeps(sleeping + 1)
      yield* TestClock.adjust(Duration.seconds(60))
      yield* Fiber.join(closing)
      expect(harness.gateway.connectionCount()).toBe(0)
      // The close frame was written before the drop; the connection then ends without a handshake.
      client.socket.resume()
      expect(yield* client.waitClosed()).toEqual({ code: 1001, reason: "going_away" })
    })
  )
})
