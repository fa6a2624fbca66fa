/**
 * Auth abuse at the upgrade (docs/PROTOCOL.md, Authentication): every forged, malformed or
 * out-of-time token is answered 401 `invalid_credentials` before any upgrade, counted, and leaves no
 * connection behind.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, HashMap, Option, Redacted } from "effect"
import { createHmac } from "node:crypto"
import { generateKeyPair, SignJWT, UnsecuredJWT } from "jose"
import { newId, SECRET, startGateway } from "../server/harness.js"

const key = (secret: string) => new TextEncoder().encode(secret)
const inOneHour = () => Math.floor(Date.now() / 1000) + 3600

const sign = (claims: Record<string, unknown>, options: { alg?: string; secret?: string } = {}) =>
  Effect.promise(() =>
    new SignJWT(claims)
      .setProtectedHeader({ alg: options.alg ?? "HS256" })
      .sign(key(options.secret ?? Redacted.value(SECRET)))
  )

/** A header.payload.signature triple with raw JSON parts (for headers jose will not produce). */
const forge = (header: object, payload: object, signature = "") =>
  [header, payload].map((part) => Buffer.from(JSON.stringify(part)).toString("base64url")).join(".") +
  `.${signature}`

/** Raw header and payload text with the gateway's real HS256 signature: only the content can be refused. */
const forgeSigned = (header: object, payload: string) => {
  const input = [JSON.stringify(header), payload]
    .map((part) => Buffer.from(part).toString("base64url"))
    .join(".")
  return `${input}.${createHmac("sha256", Redacted.value(SECRET)).update(input).digest("base64url")}`
}

describe("auth abuse", () => {
  it.scoped("forged, malformed and out-of-time tokens: 401, nothing upgraded, counted", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway()
      const userId = newId()
      const exp = inOneHour()
      const rsa = yield* Effect.promise(() => generateKeyPair("RS256"))
      const cases: ReadonlyArray<readonly [string, string]> = [
        ["alg none (jose unsecured)", new UnsecuredJWT({ sub: userId, exp }).encode()],
        ["alg none (hand-made, empty signature)", forge({ alg: "none", typ: "JWT" }, { sub: userId, exp })],
        [
          "alg none with the real signature of another token",
          forge({ alg: "none" }, { sub: userId, exp }, (yield* sign({ sub: userId, exp })).split(".")[2])
        ],
        ["wrong algorithm (HS512, right key)", yield* sign({ sub: userId, exp }, { alg: "HS512" })],
        [
          "wrong algorithm (RS256)",
          yield* Effect.promise(() =>
            new SignJWT({ sub: userId, exp }).setProtectedHeader({ alg: "RS256" }).sign(rsa.privateKey)
          )
        ],
        ["wrong key", yield* sign({ sub: userId, exp }, { secret: "another-secret-0123456789-0123456789" })],
        ["missing sub", yield* sign({ exp })],
        ["non-ULID sub", yield* sign({ sub: "not-a-ulid", exp })],
        ["sub of the wrong type", yield* sign({ sub: 12345, exp })],
        ["missing exp", yield* sign({ sub: userId })],
        ["expired", yield* sign({ sub: userId, exp: Math.floor(Date.now() / 1000) - 60 })],
        ["not yet valid (nbf)", yield* sign({ sub: userId, exp, nbf: exp - 60 })],
        ["exp of the wrong type", yield* sign({ sub: userId, exp: String(exp) })],
        ["nbf of the wrong type", yield* sign({ sub: userId, exp, nbf: "0" })],
        [
          "unknown critical header extension",
          forgeSigned(
            { alg: "HS256", crit: ["x-filament"], "x-filament": 1 },
            JSON.stringify({ sub: userId, exp })
          )
        ],
        [
          "oversized (valid signature, huge claim)",
          yield* sign({ sub: userId, exp, pad: "x".repeat(harness.config.maxTokenBytes) })
        ],
        ["garbage", "a.b.c"],
        ["payload that is not JSON (real signature)", forgeSigned({ alg: "HS256" }, "not-json")],
        [
          "payload that is a JSON array (real signature)",
          forgeSigned({ alg: "HS256" }, JSON.stringify([userId, exp]))
        ],
        [
          "valid claims, real signature, alg none header",
          forgeSigned({ alg: "none" }, JSON.stringify({ sub: userId, exp }))
        ],
        ["empty", ""]
      ]
      for (const [label, token] of cases) {
        const before = yield* harness.metric("filament_auth_failures_total", { reason: "unauthorized" })
        const refused = yield* Effect.flip(harness.connect(token))
        expect(refused, label).toEqual({
          status: 401,
          body: JSON.stringify({ error: "invalid_credentials" })
        })
        expect(yield* harness.metric("filament_auth_failures_total", { reason: "unauthorized" }), label).toBe(
          before + 1
        )
      }
      expect(harness.gateway.connectionCount()).toBe(0)
      expect(HashMap.size((yield* harness.registry.state).connections)).toBe(0)
    })
  )

  it.scoped("token in query and header: the query wins (a bad query is not rescued by a good header)", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway()
      const good = yield* harness.token({ userId: newId() })
      const before = yield* harness.metric("filament_auth_failures_total", { reason: "unauthorized" })
      for (const query of ["", "bad-token"]) {
        const refused = yield* Effect.flip(
          harness.connect(query, { headers: { authorization: `Bearer ${good}` } })
        )
        expect(refused.status).toBe(401)
      }
      expect(yield* harness.metric("filament_auth_failures_total", { reason: "unauthorized" })).toBe(
        before + 2
      )
      // A good query with a bad header is accepted: the header is not consulted.
      const client = yield* harness.connect(good, { headers: { authorization: "Bearer bad-token" } })
      expect((yield* client.nextOfType("ready")).t).toBe("ready")
      // Header only: the scheme is case-insensitive (RFC 7235), another scheme carries no token.
      for (const scheme of ["bearer", "BEARER", "bEaReR  "]) {
        const header = yield* harness.connect(good, {
          query: false,
          headers: { authorization: `${scheme} ${good}` }
        })
        expect((yield* header.nextOfType("ready")).t, scheme).toBe("ready")
      }
      const basic = yield* Effect.flip(
        harness.connect(good, { query: false, headers: { authorization: `Basic ${good}` } })
      )
      expect(basic.status).toBe(401)
      expect(yield* harness.metric("filament_auth_failures_total", { reason: "unauthorized" })).toBe(
        before + 3
      )
      expect(harness.gateway.connectionCount()).toBe(4)
    })
  )

  it.scoped("the oversized-token cap refuses before verification, at GATEWAY_MAX_TOKEN_BYTES", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway({ maxTokenBytes: 512 })
      const userId = newId()
      const fits = yield* sign({ sub: userId, exp: inOneHour(), pad: "x".repeat(100) })
      expect(fits.length).toBeLessThanOrEqual(512)
      yield* harness.connect(fits)
      const over = yield* sign({ sub: userId, exp: inOneHour(), pad: "x".repeat(400) })
      expect(over.length).toBeGreaterThan(512)
      expect((yield* Effect.flip(harness.connect(over))).status).toBe(401)
    })
  )

  it.scoped("secret rotation: the previous secret's tokens connect and are counted; others stay 401", () =>
    Effect.gen(function* () {
      const previous = "previous-secret-0123456789-0123456789"
      const harness = yield* startGateway({ jwtPreviousSecret: Option.some(Redacted.make(previous)) })
      const userId = newId()
      const rotated = () => harness.metric("filament_auth_previous_secret_total", {})
      const refused = () => harness.metric("filament_auth_failures_total", { reason: "unauthorized" })
      const [rotatedBefore, refusedBefore] = [yield* rotated(), yield* refused()]
      const current = yield* harness.connect(yield* sign({ sub: userId, exp: inOneHour() }))
      yield* current.nextOfType("ready")
      expect(yield* rotated()).toBe(rotatedBefore)
      const old = yield* harness.connect(yield* sign({ sub: userId, exp: inOneHour() }, { secret: previous }))
      expect((yield* old.nextOfType("ready")).d["user_id"]).toBe(userId)
      expect(yield* rotated()).toBe(rotatedBefore + 1)
      const unknown = yield* sign(
        { sub: userId, exp: inOneHour() },
        { secret: "unknown-secret-0123456789-0123456789" }
      )
      expect(yield* Effect.flip(harness.connect(unknown))).toEqual({
        status: 401,
        body: JSON.stringify({ error: "invalid_credentials" })
      })
      expect([yield* rotated(), yield* refused()]).toEqual([rotatedBefore + 1, refusedBefore + 1])
    })
  )
})
