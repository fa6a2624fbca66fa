/**
 * Publish API abuse: every malformed, mistyped, misrouted or unauthenticated `POST /v1/publish`
 * gets its documented status (docs/OPERATIONS.md) and delivers nothing to anyone.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { newId, PUBLISH_KEY, publishHttp, startGateway, type TestClient } from "../server/harness.js"
import { familySum } from "./support.js"

const KEY = Redacted.value(PUBLISH_KEY)

/** The next frame of one of `types`, skipping subscription side frames (presence / voice snapshots). */
const nextOf = (client: TestClient, types: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    for (;;) {
      const frame = yield* client.next(`one of ${types.join(", ")}`)
      if (types.includes(frame.t)) return frame
      expect(["presence_sync", "presence_update", "voice_participant_sync"]).toContain(frame.t)
    }
  })

describe("publish API abuse", () => {
  it.scoped("each abusive request gets its documented status and nothing is delivered", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway({ maxPublishBodyBytes: 4096, maxEventBytes: 200 })
      const [userId, guildId, channelId] = [newId(), newId(), newId()]
      const listener = yield* harness.connectReady(userId, { [guildId]: "*" })
      listener.send({ v: 1, t: "subscribe", d: { guild_id: guildId, channel_id: channelId } })
      yield* nextOf(listener, ["subscribed"])
      const guildEvent = {
        t: "channel_create",
        d: { guild_id: guildId, channel: { channel_id: newId(), name: "general", kind: "text" } }
      }
      const profile = { user_id: userId, updated_fields: { username: "eve" }, updated_at_unix: 1_700_000_000 }
      const raw = (body: string, headers: Record<string, string> = {}) =>
        harness.http("/v1/publish", {
          method: "POST",
          headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json", ...headers },
          body
        })
      const emittedBefore = familySum(yield* harness.metrics(), "filament_gateway_events_emitted_total")

      const cases: ReadonlyArray<
        readonly [string, Effect.Effect<{ status: number; body: string }>, number, string]
      > = [
        [
          "body over the cap",
          publishHttp(harness, { ...guildEvent, pad: "x".repeat(5000) }),
          413,
          "payload_too_large"
        ],
        [
          "envelope over GATEWAY_MAX_EVENT_BYTES",
          publishHttp(harness, {
            t: "channel_create",
            d: { guild_id: guildId, channel: { channel_id: newId(), name: "n".repeat(64), kind: "text" } }
          }),
          413,
          "event_too_large"
        ],
        [
          "text/plain",
          raw(JSON.stringify(guildEvent), { "content-type": "text/plain" }),
          415,
          "unsupported_media_type"
        ],
        [
          "form encoded (curl -d default)",
          raw(JSON.stringify(guildEvent), { "content-type": "application/x-www-form-urlencoded" }),
          415,
          "unsupported_media_type"
        ],
        ["malformed JSON", raw('{"t":"channel_create","d":{'), 400, "invalid_event"],
        ["JSON array", raw(JSON.stringify([guildEvent])), 400, "invalid_event"],
        ["JSON null", raw("null"), 400, "invalid_event"],
        ["empty body", raw(""), 400, "invalid_event"],
        [
          "__proto__ key in the body",
          raw(`{"t":"channel_create","d":${JSON.stringify(guildEvent.d)},"__proto__":{"users":["x"]}}`),
          400,
          "invalid_event"
        ],
        [
          "__proto__ key in the payload",
          raw(
            `{"t":"channel_create","d":{"__proto__":{"polluted":1},"guild_id":"${guildId}","channel":{"channel_id":"${newId()}","name":"a","kind":"text"}}}`
          ),
          400,
          "invalid_event"
        ],
        [
          "user-scoped without users",
          publishHttp(harness, { t: "profile_update", d: profile }),
          400,
          "invalid_event"
        ],
        [
          "user-scoped with empty users",
          publishHttp(harness, { t: "profile_update", d: profile, users: [] }),
          400,
          "invalid_event"
        ],
        [
          "user-scoped with a non-ULID user",
          publishHttp(harness, { t: "profile_update", d: profile, users: [userId, "nobody"] }),
          400,
          "invalid_event"
        ],
        [
          "users on a guild event",
          publishHttp(harness, { ...guildEvent, users: [userId] }),
          400,
          "invalid_event"
        ],
        [
          "connection-scoped ready",
          publishHttp(harness, { t: "ready", d: { user_id: userId } }),
          400,
          "invalid_event"
        ],
        [
          "connection-scoped subscribed",
          publishHttp(harness, { t: "subscribed", d: { guild_id: guildId, channel_id: channelId } }),
          400,
          "invalid_event"
        ],
        ["unknown type", publishHttp(harness, { t: "message_explode", d: {} }), 400, "invalid_event"],
        ["wrong type of t", publishHttp(harness, { t: 7, d: guildEvent.d }), 400, "invalid_event"],
        [
          "payload field of the wrong type",
          publishHttp(harness, { t: "channel_create", d: { ...guildEvent.d, guild_id: 42 } }),
          400,
          "invalid_event"
        ],
        ["bad key", publishHttp(harness, guildEvent, "not-the-key"), 401, "invalid_credentials"],
        [
          "key of the right length, wrong bytes",
          publishHttp(harness, guildEvent, "x".repeat(KEY.length)),
          401,
          "invalid_credentials"
        ],
        [
          "another scheme",
          raw(JSON.stringify(guildEvent), { authorization: `Basic ${KEY}` }),
          401,
          "invalid_credentials"
        ],
        [
          "t nested to the body cap",
          raw(`{"t":${"[".repeat(2040)}${"]".repeat(2040)},"d":{}}`),
          400,
          "invalid_event"
        ]
      ]
      const authBefore = yield* harness.metric("filament_auth_failures_total", { reason: "unauthorized" })
      for (const [label, request, status, error] of cases) {
        const response = yield* request
        expect(response.status, label).toBe(status)
        expect((JSON.parse(response.body) as { error: string }).error, label).toBe(error)
      }
      expect(yield* harness.metric("filament_auth_failures_total", { reason: "unauthorized" })).toBe(
        authBefore + 3
      )
      expect(Object.prototype).not.toHaveProperty("polluted")
      expect(Object.prototype).not.toHaveProperty("users")
      expect(familySum(yield* harness.metrics(), "filament_gateway_events_emitted_total")).toBe(emittedBefore)

      // Nothing reached the listener: the next event it sees is the one published now.
      expect((yield* publishHttp(harness, { t: "profile_update", d: profile, users: [userId] })).status).toBe(
        202
      )
      expect((yield* nextOf(listener, ["channel_create", "profile_update"])).d).toEqual(profile)
      expect(listener.closed).toBeUndefined()
    })
  )
})
