/**
 * The JWT verifier's principals: grants decoded from the `guilds` claim, shared between principals
 * with the same claim (bounded), never confused between different claims.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { makeJwt, signToken } from "../../src/server/Auth.js"

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
})
