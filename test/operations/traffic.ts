/**
 * Real traffic that gives every metric family a series: two chat nodes joined by a real
 * `redis-server`, clients that subscribe, publish, misbehave and get refused, a Redis outage. Each
 * step waits for its own outcome (a frame, a close, an HTTP status), so when this returns the
 * counters hold what it did.
 */
import { request } from "node:http"
import { Clock, Effect, Option, Redacted, TestClock } from "effect"
import { MessageCreate } from "../../src/protocol/events/message.js"
import type { GuildId } from "../../src/protocol/Ids.js"
import * as Auth from "../../src/server/Auth.js"
import { encodeMessage } from "../../src/server/cluster/BusCodec.js"
import { guildTopic } from "../../src/server/registry/Interest.js"
import { eventuallyEffect } from "../deadline.js"
import { BUS_SECRET, startClusterNode, subscribe } from "../cluster/chat.js"
import type { RedisServer } from "../cluster/redis.js"
import { message, newId, PUBLISH_KEY, type Harness, type TestClient } from "../server/harness.js"

const PREVIOUS_SECRET = "traffic-previous-secret-0123456789-0123456789"

const publish = (node: Harness, t: string, d: unknown) =>
  node.http("/v1/publish", {
    method: "POST",
    headers: { authorization: `Bearer ${Redacted.value(PUBLISH_KEY)}`, "content-type": "application/json" },
    body: JSON.stringify({ t, d })
  })

/** A chunked publish body without a length: 411 `length_required` (Node's fetch cannot send one). */
const chunkedPublish = (node: Harness) =>
  Effect.async<number>((resume) => {
    const outgoing = request({
      host: "127.0.0.1",
      port: node.port,
      method: "POST",
      path: "/v1/publish",
      headers: {
        authorization: `Bearer ${Redacted.value(PUBLISH_KEY)}`,
        "content-type": "application/json",
        "transfer-encoding": "chunked"
      }
    })
    outgoing.on("response", (response) => {
      response.resume()
      resume(Effect.succeed(response.statusCode ?? 0))
    })
    outgoing.on("error", () => resume(Effect.succeed(0)))
    outgoing.end("{}")
  })

const participant = (user: string, guild: string, channel: string) => ({
  user_id: user,
  identity: `u.${user}.${guild}.${channel}`,
  joined_at_unix: 1_700_000_000,
  updated_at_unix: 1_700_000_000,
  is_muted: false,
  is_deafened: false,
  is_speaking: false,
  is_video_enabled: false,
  is_screen_share_enabled: false
})

/** The next frame of type `t`, skipping the presence and voice follow-ups that may come before it. */
const until = (client: TestClient, t: string) =>
  Effect.gen(function* () {
    for (;;) {
      const frame = yield* client.next(`frame "${t}"`)
      if (frame.t === t) return frame
    }
  })

const expectStatus = (label: string, status: number, expected: number) =>
  status === expected ? Effect.void : Effect.die(new Error(`${label}: HTTP ${status}, expected ${expected}`))

/** Runs the traffic against two nodes on `redis`; returns node A, whose `/metrics` saw all of it. */
export const generateTraffic = (redis: RedisServer) =>
  Effect.gen(function* () {
    const config = {
      maxConnectionsPerUser: 1,
      presenceSyncMaxUsers: 1,
      maxVoiceChannels: 1,
      maxEventBytes: 2048,
      dualEmitLegacyOverride: true,
      jwtPreviousSecret: Option.some(Redacted.make(PREVIOUS_SECRET)),
      adminKey: Option.some(Redacted.make("traffic-admin-key-0123456789-0123456789"))
    }
    const a = yield* startClusterNode(redis, config)
    const b = yield* startClusterNode(redis, config)
    const [guild, channel, voice, otherVoice, forbidden] = [newId(), newId(), newId(), newId(), newId()]
    const [alice, bob, carol] = [newId(), newId(), newId()]
    const guilds = { [guild]: [channel, voice, otherVoice] }

    // Presence, voice snapshots, deliveries on both nodes (the second subscriber's presence_sync is
    // cut at one user); bus published / received / lag.
    const onA = yield* a.connectReady(alice, guilds)
    yield* subscribe(onA, guild, channel)
    const onB = yield* b.connectReady(bob, guilds)
    yield* subscribe(onB, guild, channel)
    for (const node of [a, b]) {
      yield* node.gateway.publish(MessageCreate, message(guild, channel, "hello"))
      yield* until(onA, "message_create")
      yield* until(onB, "message_create")
    }
    // Refused in fanout: built over GATEWAY_MAX_EVENT_BYTES.
    yield* Effect.either(a.gateway.publish(MessageCreate, message(guild, channel, "x".repeat(2000))))

    // A client over the ingress window (GATEWAY_INGRESS_EVENTS_PER_WINDOW, 60): 4008, a rate limit hit.
    const flooder = yield* a.connectReady(newId())
    for (let i = 0; i <= 60; i++)
      flooder.send({ v: 1, t: "unsubscribe", d: { guild_id: guild, channel_id: channel } })
    const flooded = yield* flooder.waitClosed()
    if (flooded.code !== 4008)
      return yield* Effect.die(new Error(`ingress flood: close ${flooded.code}, expected 4008`))

    // Dual emit of the legacy override event (compatibility counters).
    const role = {
      guild_id: guild,
      channel_id: channel,
      role: "moderator",
      updated_fields: { allow: ["create_message"], deny: [] },
      updated_at_unix: 1_700_000_001
    }
    yield* expectStatus(
      "role override",
      (yield* publish(a, "workspace_channel_role_override_update", role)).status,
      202
    )

    // Voice: one channel fits the cap, a second is refused.
    const join = (channelId: string) =>
      publish(a, "voice_participant_join", {
        guild_id: guild,
        channel_id: channelId,
        participant: participant(alice, guild, channelId)
      })
    yield* expectStatus("voice join", (yield* join(voice)).status, 202)
    yield* expectStatus("voice join over the channel cap", (yield* join(otherVoice)).status, 409)

    // Refusals at the door and after it.
    const refused = yield* a.connect("not-a-token").pipe(Effect.flip)
    yield* expectStatus("bad token", refused.status, 401)
    const now = yield* Clock.currentTimeMillis
    const previousToken = yield* Auth.signToken({
      secret: Redacted.make(PREVIOUS_SECRET),
      userId: carol,
      expiresAt: Math.floor(now / 1000) + 3600,
      guilds
    })
    const rotated = yield* a.connect(previousToken).pipe(Effect.orDie)
    yield* rotated.nextOfType("ready")
    const overCap = yield* a.connect(yield* a.token({ userId: carol, guilds })).pipe(Effect.flip)
    yield* expectStatus("second connection of one user", overCap.status, 429)
    // Refused without a frame; the allowed subscribe after it is answered, so it was handled. Its
    // presence_sync (three users online) is cut at one.
    rotated.send({ v: 1, t: "subscribe", d: { guild_id: guild, channel_id: forbidden } })
    yield* subscribe(rotated, guild, channel)
    yield* expectStatus("chunked publish", yield* chunkedPublish(a), 411)
    const signIn = yield* a.http("/admin/api/session", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ key: "not-the-admin-key" })
    })
    yield* expectStatus("inspector sign-in with a wrong key", signIn.status, 401)

    // Broken clients: not JSON, an unknown command.
    for (const frame of ["not-json", JSON.stringify({ v: 1, t: "no_such_command", d: {} })]) {
      const client = yield* a.connectReady(newId(), guilds)
      client.send(frame)
      yield* client.waitClosed()
    }

    // A revocation: carol is removed from the guild.
    const removal = { guild_id: guild, user_id: carol, reason: "kick", removed_at_unix: 1_700_000_002 }
    yield* expectStatus("member remove", (yield* publish(a, "workspace_member_remove", removal)).status, 202)
    yield* until(rotated, "workspace_member_remove")

    // A foreign message on the bus, dropped by both nodes.
    const injector = yield* redis.client()
    yield* Effect.promise(() => injector.spublish(guildTopic(guild as GuildId), Buffer.from("hello")))
    // A genuine removal from a newer node whose reason this version's schema does not know: delivered,
    // its revocation follow-up skipped and counted.
    const skewed = encodeMessage(
      Buffer.from(BUS_SECRET),
      {
        node: "e".repeat(32),
        seq: 0,
        at: now,
        scope: "guild",
        type: "workspace_member_remove",
        guild: guild as GuildId
      },
      Buffer.from(
        JSON.stringify({
          v: 1,
          t: "workspace_member_remove",
          d: { guild_id: guild, user_id: newId(), reason: "retired", removed_at_unix: 1_700_000_003 }
        })
      )
    )
    yield* Effect.promise(() => injector.spublish(guildTopic(guild as GuildId), skewed))
    yield* until(onA, "workspace_member_remove")

    // A Redis outage: both nodes turn unready, reconnect and count the gap.
    const readyIs = (status: number) =>
      eventuallyEffect(
        `readyz ${status} on both nodes`,
        Effect.map(Effect.all([a.http("/readyz"), b.http("/readyz")]), (answers) =>
          answers.every((answer) => answer.status === status)
        ),
        10_000,
        50
      )
    yield* redis.kill
    yield* readyIs(503)
    yield* TestClock.adjust("2 seconds")
    yield* redis.start
    yield* readyIs(200)
    // Redis came back empty (no persistence): each node writes its presence and voice state again.
    for (const store of ["presence", "voice"]) {
      yield* eventuallyEffect(
        `${store} state re-asserted`,
        Effect.map(a.metric("filament_cluster_state_reasserted_total", { store }), (n) => n > 0)
      )
    }
    yield* eventuallyEffect(
      "the foreign bus message is counted",
      Effect.map(a.metric("filament_gateway_bus_dropped_total", { reason: "malformed" }), (n) => n > 0)
    )
    return a
  })
