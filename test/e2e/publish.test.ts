/**
 * `POST /v1/publish` and the other HTTP routes: every status code, and a published event reaching
 * a subscriber by its scope.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Option, Redacted } from "effect"
import { PROMETHEUS_CONTENT_TYPE } from "../../src/server/Metrics.js"
import { newId, ORIGINAL_COUNTER_FAMILIES, publishHttp, startGateway } from "../server/harness.js"

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
