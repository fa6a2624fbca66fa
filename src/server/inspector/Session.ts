/**
 * Who may use the inspector: the admin key (constant-time compare, from a POSTed body or an
 * `Authorization: Bearer` header, never a URL), the sessions a login opens (a random token in an
 * HttpOnly, SameSite=Strict cookie, bounded in number and lifetime), and the per-address budget of
 * admin calls. Plain synchronous state, read on the gateway's `Clock`.
 */
import { randomBytes, timingSafeEqual } from "node:crypto"
import { Redacted } from "effect"

export const SESSION_COOKIE = "filament_admin"

/** Addresses tracked within one rate window; past it new addresses are refused until the window ends. */
const MAX_TRACKED_ADDRESSES = 4096
const WINDOW_MS = 60_000

export interface AdminSessionsOptions {
  readonly key: Redacted.Redacted<string>
  readonly requestsPerMinute: number
  readonly sessionTtlMillis: number
  readonly maxSessions: number
  /** Current time in ms from the Effect `Clock`. */
  readonly now: () => number
}

export interface AdminSessions {
  /** Takes one admin call from `address` out of its budget for the current minute. */
  readonly admit: (address: string) => boolean
  /** Whether `presented` is the admin key (constant time in the key's length). */
  readonly keyMatches: (presented: string) => boolean
  /** Opens a session; the oldest one ends when `maxSessions` are open. */
  readonly open: () => { readonly token: string; readonly cookie: string }
  /** Ends the session of `token`, if any; the cookie that clears it. */
  readonly close: (token: string | undefined) => string
  /** A request is an admin's: a live session cookie or the key as a Bearer token. */
  readonly authenticated: (cookie: string | undefined, authorization: string | undefined) => boolean
  /** The session token of a `Cookie` header. */
  readonly sessionToken: (cookie: string | undefined) => string | undefined
}

export const make = (options: AdminSessionsOptions): AdminSessions => {
  const { now } = options
  const expected = Buffer.from(Redacted.value(options.key))
  const keyMatches = (presented: string) => {
    const given = Buffer.from(presented)
    return given.length === expected.length && timingSafeEqual(given, expected)
  }

  let windowStartedAt = -Infinity
  const calls = new Map<string, number>()
  const admit = (address: string) => {
    const time = now()
    if (time - windowStartedAt >= WINDOW_MS) {
      windowStartedAt = time
      calls.clear()
    }
    const count = calls.get(address)
    if (count === undefined) {
      if (calls.size >= MAX_TRACKED_ADDRESSES) return false
      calls.set(address, 1)
      return true
    }
    if (count >= options.requestsPerMinute) return false
    calls.set(address, count + 1)
    return true
  }

  /** Token -> expiry; insertion order is age order (a Map keeps it), so the first is the oldest. */
  const sessions = new Map<string, number>()
  const maxAgeSeconds = Math.floor(options.sessionTtlMillis / 1000)
  const cookieFor = (token: string, maxAge: number) =>
    `${SESSION_COOKIE}=${token}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=${maxAge}`

  const sessionToken = (cookie: string | undefined) => {
    if (cookie === undefined) return undefined
    for (const part of cookie.split(";")) {
      const [name, value] = part.trim().split("=", 2)
      if (name === SESSION_COOKIE && value !== undefined && value !== "") return value
    }
    return undefined
  }

  return {
    admit,
    keyMatches,
    open: () => {
      const time = now()
      for (const [token, expiresAt] of sessions) if (expiresAt <= time) sessions.delete(token)
      while (sessions.size >= options.maxSessions) sessions.delete(sessions.keys().next().value!)
      const token = randomBytes(32).toString("base64url")
      sessions.set(token, time + options.sessionTtlMillis)
      return { token, cookie: cookieFor(token, maxAgeSeconds) }
    },
    close: (token) => {
      if (token !== undefined) sessions.delete(token)
      return cookieFor("", 0)
    },
    authenticated: (cookie, authorization) => {
      if (authorization !== undefined && authorization.startsWith("Bearer "))
        return keyMatches(authorization.slice("Bearer ".length))
      const token = sessionToken(cookie)
      if (token === undefined) return false
      const expiresAt = sessions.get(token)
      if (expiresAt === undefined) return false
      if (expiresAt > now()) return true
      sessions.delete(token)
      return false
    },
    sessionToken
  }
}
