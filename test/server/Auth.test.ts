/**
 * The JWT verifier's principals: grants decoded from the `guilds` claim, shared between principals
 * with the same claim (bounded), never confused between different claims; `exp` and `nbf` judged by
 * the Effect Clock to the millisecond.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Redacted, TestClock } from "effect"
import { SignJWT } from "jose"
import { bearerToken, makeJwt, signToken } from "../../src/server/Auth.js"

const secret = Redacted.make("auth-test-secret-0123456789abcdef")
const verifier = makeJwt(secret)
const GUILD = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
const CHANNEL = "01ARZ3NDEKTSV4RRFFQ69G5FAW"
const USER = "01ARZ3NDEKTSV4RRFFQ69G5FAX"
const expiresAt = Math.floor(Date.now() / 1000) + 3600

const principal = (guilds: Record<string, "*" | ReadonlyArray<string>>, userId = USER) =>
  Effect.flatMap(signToken({ secret, userId, expiresAt, guilds }), verifier.verify)

describe("Auth.makeJwt", () => {
  it.effect("principals with the same guilds claim share one grants map; different claims do not", () =>
    Effect.gen(function* () {
      const a = yield* principal({ [GUILD]: "*" })
      const b = yield* principal({ [GUILD]: "*" }, "01ARZ3NDEKTSV4RRFFQ69G5FAY")
      const c = yield* principal({ [GUILD]: [CHANNEL] })
      expect(b.guilds).toBe(a.guilds)
      expect(b.userId).not.toBe(a.userId)
      expect([...a.guilds]).toEqual([[GUILD, "*"]])
      expect(c.guilds).not.toBe(a.guilds)
      expect([...c.guilds.entries()].map(([g, grant]) => [g, [...grant]])).toEqual([[GUILD, [CHANNEL]]])
    })
  )

  it.effect("an invalid guild id is rejected every time; past the sharing bound results stay exact", () =>
    Effect.gen(function* () {
      for (let attempt = 0; attempt < 2; attempt++) {
        const refused = yield* Effect.flip(principal({ "not-a-ulid": "*" }))
        expect(refused.reason).toBe("invalid_token")
        expect(refused.detail).toContain("not a ULID")
      }
      const first = yield* principal({ [GUILD]: [CHANNEL] })
      for (let i = 0; i < 300; i++) {
        const guild = `01ARZ3NDEKTSV4RRFFQ69G${String(i).padStart(4, "0")}`
        const p = yield* principal({ [guild]: "*" })
        expect([...p.guilds]).toEqual([[guild, "*"]])
      }
      const again = yield* principal({ [GUILD]: [CHANNEL] })
      expect(again.guilds).not.toBe(first.guilds)
      expect([...again.guilds.keys()]).toEqual([GUILD])
    })
  )

  it.effect(
    "exp and nbf are judged by the Effect Clock: valid up to the millisecond before exp, from nbf on",
    () =>
      Effect.gen(function* () {
        const exp = 2_000_000_000
        const nbf = exp - 600
        // Minted by another library, so the verifier is checked against tokens it did not produce.
        const token = yield* Effect.promise(() =>
          new SignJWT({ sub: USER, exp, nbf })
            .setProtectedHeader({ alg: "HS256" })
            .sign(new TextEncoder().encode(Redacted.value(secret)))
        )
        const at = (millis: number) =>
          Effect.zipRight(TestClock.setTime(millis), Effect.either(verifier.verify(token)))
        const early = yield* at(nbf * 1000 - 1)
        expect(early._tag === "Left" && early.left.detail).toBe(`token not valid before ${nbf}`)
        expect((yield* at(nbf * 1000))._tag).toBe("Right")
        const last = yield* at(exp * 1000 - 1)
        expect(last._tag === "Right" && last.right.expiresAt).toBe(exp * 1000)
        const expired = yield* at(exp * 1000)
        expect(expired._tag === "Left" && expired.left).toMatchObject({
          reason: "invalid_token",
          detail: `token expired at ${exp}`
        })
      })
  )

  it.effect(
    "rotation: a token signed only with the previous secret is accepted and reported, others are not",
    () =>
      Effect.gen(function* () {
        yield* TestClock.setTime(Date.now())
        const previousSecret = Redacted.make("auth-test-previous-secret-0123456789")
        let reported = 0
        const rotating = makeJwt(secret, { previousSecret, onPreviousSecret: () => reported++ })
        const signedWith = (key: Redacted.Redacted<string>, expiresAt: number) =>
          signToken({ secret: key, userId: USER, expiresAt })
        // The new secret: accepted, not reported.
        yield* rotating.verify(yield* signedWith(secret, expiresAt))
        expect(reported).toBe(0)
        // The previous secret: accepted (same principal), reported once.
        const old = yield* signedWith(previousSecret, expiresAt)
        expect((yield* rotating.verify(old)).userId).toBe(USER)
        expect(reported).toBe(1)
        // Without the rotation the same token is refused.
        expect((yield* Effect.flip(verifier.verify(old))).reason).toBe("invalid_token")
        // A third secret, or an expired token of the previous one: refused, not reported.
        const other = yield* signedWith(Redacted.make("auth-test-unknown-secret-0123456789ab"), expiresAt)
        expect((yield* Effect.flip(rotating.verify(other))).reason).toBe("invalid_token")
        const expired = yield* signedWith(previousSecret, Math.floor(Date.now() / 1000) - 60)
        expect((yield* Effect.flip(rotating.verify(expired))).detail).toContain("expired")
        expect(reported).toBe(1)
      })
  )
})

describe("Auth.bearerToken", () => {
  it("takes the Bearer credentials in any letter case of the scheme (RFC 7235), nothing else", () => {
    const cases: ReadonlyArray<readonly [string | undefined, string | undefined]> = [
      ["Bearer abc", "abc"],
      ["bearer abc", "abc"],
      ["BEARER abc", "abc"],
      ["bEaReR   abc", "abc"],
      ["Bearer ", ""],
      ["Bearerabc", undefined],
      ["Basic abc", undefined],
      [" Bearer abc", undefined],
      ["", undefined],
      [undefined, undefined]
    ]
    for (const [header, token] of cases) expect(bearerToken(header), String(header)).toBe(token)
  })
})
