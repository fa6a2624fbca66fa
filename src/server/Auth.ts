/**
 * TokenVerifier: turns the access token of an upgrade request into a `Principal`. The default is a
 * JWT HS256 verified with `GATEWAY_JWT_SECRET` (via `fast-jwt`): `sub` = user ULID and `exp` required,
 * optional `guilds` claim mapping a guild ULID to a list of channel ULIDs or `"*"`. The signature
 * check is synchronous `node:crypto` HMAC (~5 µs): WebCrypto, which `jose` uses, costs a threadpool
 * round trip per connect and left ~1.5 KB of resident memory behind per verification. `exp` and `nbf`
 * are checked against the Effect `Clock`, so expiry is testable with `TestClock`. During a secret
 * rotation (`GATEWAY_JWT_PREVIOUS_SECRET`) a token whose signature matches only the previous secret
 * is accepted too and counted.
 */
import { Clock, Context, Effect, Either, Layer, Option, ParseResult, Redacted, Schema } from "effect"
import { createSigner, createVerifier, TokenError } from "fast-jwt"
import { ChannelId, GuildId, UserId, ingress } from "../protocol/Ids.js"
import { GatewayConfig } from "./Config.js"
import { GatewayMetrics } from "./Metrics.js"
import { Unauthorized } from "./Errors.js"

/** Channels of a guild the principal may use: all (`"*"`) or a listed set. */
export type GuildGrant = "*" | ReadonlySet<ChannelId>

export interface Principal {
  readonly userId: UserId
  /** Token expiry, epoch milliseconds (Effect `Clock` time). */
  readonly expiresAt: number
  readonly guilds: ReadonlyMap<GuildId, GuildGrant>
}

export interface TokenVerifierShape {
  readonly verify: (token: string) => Effect.Effect<Principal, Unauthorized>
}

export class TokenVerifier extends Context.Tag("filament/TokenVerifier")<
  TokenVerifier,
  TokenVerifierShape
>() {}

const BEARER = /^bearer +/i

/**
 * The credentials of an `Authorization: Bearer <token>` header, or `undefined` for another scheme.
 * The scheme name is case-insensitive and may be followed by several spaces (RFC 7235 §2.1).
 */
export const bearerToken = (authorization: string | undefined): string | undefined => {
  if (authorization === undefined) return undefined
  const scheme = BEARER.exec(authorization)
  return scheme === null ? undefined : authorization.slice(scheme[0].length)
}

const GuildsClaim = Schema.Record({
  key: Schema.String,
  value: Schema.Union(Schema.Literal("*"), Schema.Array(ingress(ChannelId)))
})

const Claims = Schema.Struct({
  sub: ingress(UserId),
  exp: Schema.Number,
  nbf: Schema.optional(Schema.Number),
  iat: Schema.optional(Schema.Number),
  guilds: Schema.optional(GuildsClaim)
})

const decodeClaims = Schema.decodeUnknownEither(Claims)
const decodeGuildId = Schema.decodeUnknownEither(ingress(GuildId))

/** Distinct `guilds` claims whose grants are kept for sharing (each at most a token's size). */
const SHARED_GRANTS = 256

/**
 * Claims -> principal. Grants are never mutated, so principals with the same `guilds` claim (the
 * connections of one user, users of one role) share one map: it is otherwise the largest part of a
 * connection's principal. The sharing is bounded; the oldest claim is forgotten first.
 */
const makeToPrincipal = () => {
  const shared = new Map<string, ReadonlyMap<GuildId, GuildGrant>>()
  const grantsOf = (
    guilds: typeof GuildsClaim.Type
  ): Either.Either<ReadonlyMap<GuildId, GuildGrant>, string> => {
    const claim = JSON.stringify(guilds)
    const known = shared.get(claim)
    if (known !== undefined) return Either.right(known)
    const grants = new Map<GuildId, GuildGrant>()
    for (const [rawGuild, grant] of Object.entries(guilds)) {
      const guild = decodeGuildId(rawGuild)
      if (Either.isLeft(guild)) return Either.left(`guilds claim: "${rawGuild}" is not a ULID`)
      grants.set(guild.right, grant === "*" ? "*" : new Set(grant))
    }
    if (shared.size >= SHARED_GRANTS) shared.delete(shared.keys().next().value!)
    shared.set(claim, grants)
    return Either.right(grants)
  }
  // Plain code, no `Either.gen`: this runs once per upgrade, and each generator step costs ~2 µs.
  return (claims: unknown, now: number): Either.Either<Principal, string> => {
    const decoded = decodeClaims(claims)
    if (Either.isLeft(decoded)) return Either.left(ParseResult.TreeFormatter.formatErrorSync(decoded.left))
    const { exp, guilds, nbf, sub } = decoded.right
    if (exp * 1000 <= now) return Either.left(`token expired at ${exp}`)
    if (nbf !== undefined && nbf * 1000 > now) return Either.left(`token not valid before ${nbf}`)
    return Either.map(grantsOf(guilds ?? {}), (grants) => ({
      userId: sub,
      expiresAt: exp * 1000,
      guilds: grants
    }))
  }
}

const signatureChecker = (secret: Redacted.Redacted<string>) =>
  createVerifier({
    key: Buffer.from(Redacted.value(secret)),
    algorithms: ["HS256"],
    requiredClaims: ["exp", "sub"],
    // Checked by `toPrincipal` against the Effect Clock; the library would read the wall clock.
    ignoreExpiration: true,
    ignoreNotBefore: true
  })

export interface JwtRotation {
  /** Tokens signed with this secret are accepted too, while clients move to the new one. */
  readonly previousSecret: Redacted.Redacted<string>
  /** Called for each token accepted with the previous secret (the rotation's progress). */
  readonly onPreviousSecret: () => void
}

/** The default verifier: JWT HS256 with a shared secret (and, during a rotation, the previous one). */
export const makeJwt = (secret: Redacted.Redacted<string>, rotation?: JwtRotation): TokenVerifierShape => {
  const current = signatureChecker(secret)
  const previous = rotation === undefined ? undefined : signatureChecker(rotation.previousSecret)
  /** The claims, and whether only the previous secret's signature matched. */
  const checkSignature = (token: string): { readonly claims: unknown; readonly viaPrevious: boolean } => {
    try {
      return { claims: current(token), viaPrevious: false }
    } catch (error) {
      const otherKey = error instanceof TokenError && error.code === TokenError.codes.invalidSignature
      if (previous === undefined || !otherKey) throw error
      return { claims: previous(token), viaPrevious: true }
    }
  }
  const toPrincipal = makeToPrincipal()
  return {
    verify: (token) =>
      token.length === 0
        ? Effect.fail(new Unauthorized({ reason: "missing_token", detail: "no access token" }))
        : Effect.flatMap(Clock.currentTimeMillis, (now) => {
            let checked: ReturnType<typeof checkSignature>
            try {
              checked = checkSignature(token)
            } catch (error) {
              return Effect.fail(new Unauthorized({ reason: "invalid_token", detail: String(error) }))
            }
            const principal = toPrincipal(checked.claims, now)
            if (Either.isLeft(principal)) {
              return Effect.fail(new Unauthorized({ reason: "invalid_token", detail: principal.left }))
            }
            if (checked.viaPrevious) rotation?.onPreviousSecret()
            return Effect.succeed(principal.right)
          })
  }
}

export const layerJwt: Layer.Layer<TokenVerifier, never, GatewayConfig | GatewayMetrics> = Layer.effect(
  TokenVerifier,
  Effect.gen(function* () {
    const config = yield* GatewayConfig
    const metrics = yield* GatewayMetrics
    return makeJwt(
      config.jwtSecret,
      Option.match(config.jwtPreviousSecret, {
        onNone: () => undefined,
        onSome: (previousSecret) => ({ previousSecret, onPreviousSecret: metrics.authPreviousSecret })
      })
    )
  })
)

/** Mints an access token the default verifier accepts (dev-mode sample token, tests). */
export const signToken = (options: {
  readonly secret: Redacted.Redacted<string>
  readonly userId: string
  /** Expiry, epoch seconds. */
  readonly expiresAt: number
  readonly guilds?: Readonly<Record<string, "*" | ReadonlyArray<string>>>
}): Effect.Effect<string> =>
  Effect.sync(() =>
    createSigner({ key: Buffer.from(Redacted.value(options.secret)), algorithm: "HS256" })({
      ...(options.guilds === undefined ? {} : { guilds: options.guilds }),
      sub: options.userId,
      exp: options.expiresAt
    })
  )
