/**
 * `POST /v1/publish` and the other HTTP routes: every status code, and a published event reaching
 * a subscriber by its scope.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Option, Redacted } from "effect"
import {
  MAX_ISSUE_MESSAGE_CHARS,
  MAX_ISSUE_PATH_CHARS,
  MAX_JSON_DEPTH,
  MAX_SCHEMA_ISSUES
} from "../../src/protocol/Envelope.js"
import { PROMETHEUS_CONTENT_TYPE } from "../../src/server/Metrics.js"
import {
  newId,
  ORIGINAL_COUNTER_FAMILIES,
  PUBLISH_KEY,
  publishHttp,
  startGateway
} from "../server/harness.js"

const channelCreate = (guild: string, name = "general") => ({
  t: "channel_create",
  d: { guild_id: guild, channel: { channel_id: newId(), name, kind: "text" } }
})

describe("POST /v1/publish", () => {
  it.scoped("202 with the local recipient count; guild, channel and user routing", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway()
      const [user, guild, channel] = [newId(), newId(), newId()]
      const client = yield* harness.connectReady(user, { [guild]: "*" })
      yield* client.subscribe(guild, channel)

      const guildEvent = yield* publishHttp(harness, channelCreate(guild))
      expect(guildEvent).toEqual({ status: 202, body: '{"recipients":1}' })
      expect((yield* client.nextOfType("channel_create")).d["guild_id"]).toBe(guild)

      const deleted = {
        guild_id: guild,
        channel_id: channel,
        message_id: newId(),
        deleted_at_unix: 1_700_000_000
      }
      expect(yield* publishHttp(harness, { t: "message_delete", d: deleted })).toEqual({
        status: 202,
        body: '{"recipients":1}'
      })
      expect((yield* client.nextOfType("message_delete")).d).toEqual(deleted)

      const profile = { user_id: user, updated_fields: { username: "alice" }, updated_at_unix: 1_700_000_000 }
      expect(
        yield* publishHttp(harness, { t: "profile_update", d: profile, users: [user.toLowerCase(), newId()] })
      ).toEqual({
        status: 202,
        body: '{"recipients":1}'
      })
      expect((yield* client.nextOfType("profile_update")).d).toEqual(profile)

      expect(yield* publishHttp(harness, channelCreate(newId()))).toEqual({
        status: 202,
        body: '{"recipients":0}'
      })
    })
  )

  it.scoped(
    "400 invalid_event: unknown type, connection scope, schema failure, excess key, users misuse, not JSON",
    () =>
      Effect.gen(function* () {
        const harness = yield* startGateway({ maxPublishUsers: 2 })
        const guild = newId()
        const profile = {
          user_id: newId(),
          updated_fields: { username: "a" },
          updated_at_unix: 1_700_000_000
        }
        const cases: ReadonlyArray<readonly [string, unknown]> = [
          ["unknown type", { t: "no_such_event", d: {} }],
          ["connection-scoped", { t: "ready", d: { user_id: newId() } }],
          ["payload fails its schema", { t: "channel_create", d: { guild_id: "nope", channel: {} } }],
          ["excess payload key", { ...channelCreate(guild), d: { ...channelCreate(guild).d, extra: 1 } }],
          ["excess body key", { ...channelCreate(guild), extra: 1 }],
          ["users on a guild event", { ...channelCreate(guild), users: [newId()] }],
          ["user event without users", { t: "profile_update", d: profile }],
          ["user event with empty users", { t: "profile_update", d: profile, users: [] }],
          ["users not ULIDs", { t: "profile_update", d: profile, users: ["bob"] }],
          [
            "more users than GATEWAY_MAX_PUBLISH_USERS",
            { t: "profile_update", d: profile, users: [newId(), newId(), newId()] }
          ],
          ["not JSON", "{nope"],
          ["d missing", { t: "channel_create" }]
        ]
        for (const [label, body] of cases) {
          const response = yield* publishHttp(harness, body)
          expect(response.status, label).toBe(400)
          expect(JSON.parse(response.body), label).toMatchObject({
            error: "invalid_event",
            detail: expect.any(String)
          })
        }
      })
  )

  it.scoped("a schema rejection answers concise issues (path and message), bounded in size", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway()
      const [guild, channel] = [newId(), newId()]
      const message = { guild_id: guild, channel_id: channel, message_id: newId() }
      const cases: ReadonlyArray<
        readonly [string, unknown, ReadonlyArray<{ path: string; message: string }>]
      > = [
        [
          "a missing field",
          { t: "message_delete", d: { guild_id: guild, channel_id: channel, deleted_at_unix: 1 } },
          [{ path: "d.message_id", message: "is missing" }]
        ],
        [
          "a field of the wrong type",
          { t: "message_delete", d: { ...message, deleted_at_unix: "soon" } },
          [{ path: "d.deleted_at_unix", message: 'Expected number, actual "soon"' }]
        ],
        [
          "an unknown body key",
          { ...channelCreate(guild), extra: 1 },
          [{ path: "extra", message: `is unexpected, expected: "t" | "d" | "users"` }]
        ]
      ]
      for (const [label, body, issues] of cases) {
        const response = yield* publishHttp(harness, body)
        expect(response.status, label).toBe(400)
        expect(JSON.parse(response.body), label).toEqual({
          error: "invalid_event",
          detail: issues.map((issue) => `${issue.path}: ${issue.message}`).join("; "),
          issues
        })
      }
      // Attacker-sized input: the key and the value are cut to their bounds, the answer stays small.
      const huge = yield* publishHttp(harness, {
        t: "message_delete",
        d: { ...message, deleted_at_unix: "x".repeat(100_000), ["k".repeat(100_000)]: 1 }
      })
      expect(huge.status).toBe(400)
      const answer = JSON.parse(huge.body) as { issues: ReadonlyArray<{ path: string; message: string }> }
      expect(answer.issues.length).toBeGreaterThan(0)
      expect(answer.issues.length).toBeLessThanOrEqual(MAX_SCHEMA_ISSUES)
      for (const issue of answer.issues) {
        expect(issue.path.length).toBeLessThanOrEqual(MAX_ISSUE_PATH_CHARS)
        expect(issue.message.length).toBeLessThanOrEqual(MAX_ISSUE_MESSAGE_CHARS)
      }
      expect(huge.body.length).toBeLessThan(2048)
      expect(huge.body).not.toContain("Brand<")
    })
  )

  it.scoped("nesting anywhere in the body, up to the body cap: 400 with a JSON error, never 500", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway()
      const guild = newId()
      const cap = harness.config.maxPublishBodyBytes
      const nested = (depth: number) => `${"[".repeat(depth)}${"]".repeat(depth)}`
      const valid = JSON.stringify(channelCreate(guild))
      // Each place a value can sit: t, d, a payload field, a nested payload field, users, a user.
      const places: ReadonlyArray<readonly [string, (value: string) => string]> = [
        ["t", (value) => valid.replace('"channel_create"', value)],
        ["d", (value) => `{"t":"channel_create","d":${value}}`],
        ["d.guild_id", (value) => valid.replace(`"${guild}"`, value)],
        ["d.channel.name", (value) => valid.replace('"general"', value)],
        ["users", (value) => `{"t":"profile_update","d":{},"users":${value}}`],
        ["users[0]", (value) => `{"t":"profile_update","d":{},"users":[${value}]}`]
      ]
      for (const [place, put] of places) {
        const largest = Math.floor((cap - put("").length) / 2)
        for (const depth of [MAX_JSON_DEPTH, 2_500, 100_000, largest]) {
          const body = put(nested(depth))
          expect(body.length, `${place} ${depth}`).toBeLessThanOrEqual(cap)
          const response = yield* publishHttp(harness, body)
          expect(response.status, `${place} ${depth}`).toBe(400)
          expect(JSON.parse(response.body), `${place} ${depth}`).toEqual({
            error: "invalid_event",
            detail: `body nests deeper than ${MAX_JSON_DEPTH} levels`
          })
        }
      }
      // At the bound the depth check passes: the schema refuses it, concisely.
      const atBound = yield* publishHttp(harness, valid.replace(`"${guild}"`, nested(MAX_JSON_DEPTH - 2)))
      expect(atBound.status).toBe(400)
      expect((JSON.parse(atBound.body) as { issues: Array<{ path: string }> }).issues[0]!.path).toBe(
        "d.guild_id"
      )
    })
  )

  it.scoped("the Bearer scheme is case-insensitive (RFC 7235); another scheme is 401", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway()
      const key = Redacted.value(PUBLISH_KEY)
      const post = (authorization: string) =>
        harness.http("/v1/publish", {
          method: "POST",
          headers: { authorization, "content-type": "application/json" },
          body: JSON.stringify(channelCreate(newId()))
        })
      for (const scheme of ["Bearer", "bearer", "BEARER", "bEaReR "])
        expect((yield* post(`${scheme} ${key}`)).status, scheme).toBe(202)
      const before = yield* harness.metric("filament_auth_failures_total", { reason: "unauthorized" })
      expect((yield* post(`Basic ${key}`)).status).toBe(401)
      expect((yield* post(`Bearer${key}`)).status).toBe(401)
      expect(yield* harness.metric("filament_auth_failures_total", { reason: "unauthorized" })).toBe(
        before + 2
      )
    })
  )

  it.scoped(
    "at the defaults, exactly GATEWAY_MAX_PUBLISH_USERS users fit the body cap; one more is 400",
    () =>
      Effect.gen(function* () {
        const harness = yield* startGateway()
        const { maxPublishBodyBytes, maxPublishUsers } = harness.config
        const user = newId()
        const client = yield* harness.connectReady(user)
        const profile = { user_id: user, updated_fields: { username: "a" }, updated_at_unix: 1_700_000_000 }
        const users = (count: number) => [user, ...Array.from({ length: count - 1 }, newId)]
        const atLimit = JSON.stringify({ t: "profile_update", d: profile, users: users(maxPublishUsers) })
        expect(Buffer.byteLength(atLimit)).toBeLessThanOrEqual(maxPublishBodyBytes)
        expect(yield* publishHttp(harness, atLimit)).toEqual({ status: 202, body: '{"recipients":1}' })
        expect((yield* client.nextOfType("profile_update")).d).toEqual(profile)
        const over = JSON.stringify({ t: "profile_update", d: profile, users: users(maxPublishUsers + 1) })
        expect(Buffer.byteLength(over)).toBeLessThanOrEqual(maxPublishBodyBytes)
        expect(yield* publishHttp(harness, over)).toEqual({
          status: 400,
          body: JSON.stringify({
            error: "invalid_event",
            detail: `"users" has ${maxPublishUsers + 1} entries, over ${maxPublishUsers}`
          })
        })
      })
  )

  it.scoped("401 for a missing or wrong publish key, counted", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway()
      const before = yield* harness.metric("filament_auth_failures_total", { reason: "unauthorized" })
      expect(yield* publishHttp(harness, channelCreate(newId()), "wrong-key")).toEqual({
        status: 401,
        body: '{"error":"invalid_credentials"}'
      })
      const missing = yield* harness.http("/v1/publish", {
        method: "POST",
        body: JSON.stringify(channelCreate(newId()))
      })
      expect(missing.status).toBe(401)
      expect(yield* harness.metric("filament_auth_failures_total", { reason: "unauthorized" })).toBe(
        before + 2
      )
    })
  )

  it.scoped("key rotation: the current and the previous publish key are accepted, any other 401", () =>
    Effect.gen(function* () {
      const previous = "test-publish-previous-key-0123456789-01"
      const harness = yield* startGateway({ publishPreviousKey: Option.some(Redacted.make(previous)) })
      const before = yield* harness.metric("filament_auth_failures_total", { reason: "unauthorized" })
      expect((yield* publishHttp(harness, channelCreate(newId()))).status).toBe(202)
      expect((yield* publishHttp(harness, channelCreate(newId()), previous)).status).toBe(202)
      // Same length as the accepted keys, one character off.
      const near = `${previous.slice(0, -1)}x`
      expect(yield* publishHttp(harness, channelCreate(newId()), near)).toEqual({
        status: 401,
        body: '{"error":"invalid_credentials"}'
      })
      expect(yield* harness.metric("filament_auth_failures_total", { reason: "unauthorized" })).toBe(
        before + 1
      )
    })
  )

  it.scoped(
    "413 for a body over the body cap, and for an envelope over the event cap (counted as dropped)",
    () =>
      Effect.gen(function* () {
        const harness = yield* startGateway({ maxEventBytes: 400, maxPublishBodyBytes: 2048 })
        const guild = newId()
        const big = yield* publishHttp(harness, { ...channelCreate(guild), padding: "x".repeat(4096) })
        expect(big.status).toBe(413)
        const labels = { scope: "guild", event_type: "workspace_role_reorder", reason: "oversized_outbound" }
        const before = yield* harness.metric("filament_gateway_events_dropped_total", labels)
        const reorder = {
          t: "workspace_role_reorder",
          d: {
            guild_id: guild,
            role_ids: Array.from({ length: 20 }, () => newId()),
            updated_at_unix: 1_700_000_000
          }
        }
        const oversized = yield* publishHttp(harness, reorder)
        expect(oversized.status).toBe(413)
        expect(JSON.parse(oversized.body)).toMatchObject({ error: "event_too_large", max_bytes: 400 })
        expect(yield* harness.metric("filament_gateway_events_dropped_total", labels)).toBe(before + 1)
      })
  )
})

describe("other routes", () => {
  it.scoped("/healthz, /readyz, /metrics (0.0.4, every family's HELP and TYPE), 426 and 404", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway()
      expect(yield* harness.http("/healthz")).toEqual({ status: 200, body: '{"status":"ok"}' })
      expect(yield* harness.http("/readyz")).toEqual({ status: 200, body: '{"status":"ready"}' })
      const metrics = yield* Effect.promise(() => fetch(`http://127.0.0.1:${harness.port}/metrics`))
      expect(metrics.headers.get("content-type")).toBe(PROMETHEUS_CONTENT_TYPE)
      const text = yield* Effect.promise(() => metrics.text())
      for (const family of ORIGINAL_COUNTER_FAMILIES) {
        expect(text).toContain(`# HELP ${family} `)
        expect(text).toContain(`# TYPE ${family} counter`)
      }
      expect(text).toContain("# TYPE filament_gateway_connections gauge")
      expect(text).toContain("# TYPE filament_gateway_fanout_duration_seconds histogram")
      expect((yield* harness.http("/gateway/ws")).status).toBe(426)
      expect((yield* harness.http("/nope")).status).toBe(404)
    })
  )
})
