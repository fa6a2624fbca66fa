/**
 * Revocation over real sockets (ours; docs/PROTOCOL.md, Revocation): `workspace_member_remove` /
 * `workspace_member_ban` for user U in guild G is delivered first (U's connections included), then
 * U's connections lose every subscription in G, U leaves G's voice channels and goes offline there,
 * and later events of G no longer reach U while the other members keep receiving them.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, HashMap } from "effect"
import { eventuallyEffect } from "../deadline.js"
import { holdsGuild } from "../../src/server/registry/Indexes.js"
import { newId } from "../server/harness.js"
import {
  BASE_UNIX,
  expectNextIsMarker,
  metricDelta,
  publishOk,
  startChatGateway,
  subscribeInOrder
} from "./chat.js"

describe("revocation", () => {
  it.scoped(
    "a kicked member receives the removal, then nothing of that guild; the others keep receiving",
    () =>
      Effect.gen(function* () {
        const harness = yield* startChatGateway()
        const [guild, other, text, voice] = [newId(), newId(), newId(), newId()]
        const [kicked, member] = [newId(), newId()]
        const memberClient = yield* harness.connectReady(member, { [guild]: "*" })
        yield* subscribeInOrder(memberClient, guild, voice, { online: true })
        // Two connections of the kicked user in the guild, one also in another guild.
        const first = yield* harness.connectReady(kicked, { [guild]: "*", [other]: "*" })
        const second = yield* harness.connectReady(kicked, { [guild]: "*" })
        yield* subscribeInOrder(first, guild, text, { online: true })
        yield* subscribeInOrder(first, guild, voice, { online: false })
        yield* subscribeInOrder(first, other, text, { online: true })
        yield* subscribeInOrder(second, guild, voice, { online: false })
        yield* memberClient.nextOfType("presence_update")
        yield* publishOk(harness, "voice_participant_join", {
          guild_id: guild,
          channel_id: voice,
          participant: {
            user_id: kicked,
            identity: `u.${kicked}.${guild}.${voice}`,
            joined_at_unix: BASE_UNIX,
            updated_at_unix: BASE_UNIX,
            is_muted: false,
            is_deafened: false,
            is_speaking: false,
            is_video_enabled: false,
            is_screen_share_enabled: false
          }
        })
        for (const client of [memberClient, first, second]) yield* client.nextOfType("voice_participant_join")

        const revocations = yield* metricDelta(harness, "filament_gateway_revocations_total", {
          event_type: "workspace_member_remove"
        })
        const removal = {
          guild_id: guild,
          user_id: kicked,
          reason: "kick",
          removed_at_unix: BASE_UNIX + 10,
          actor_user_id: member
        }
        expect((yield* publishOk(harness, "workspace_member_remove", removal)).recipients).toBe(3)
        // The removal reaches everyone, the kicked user's connections included.
        for (const client of [memberClient, first, second]) {
          expect((yield* client.nextOfType("workspace_member_remove")).d).toEqual(removal)
        }
        // Then the member sees the kicked user leave voice and go offline; the kicked user sees neither.
        expect((yield* memberClient.nextOfType("voice_participant_leave")).d["user_id"]).toBe(kicked)
        expect((yield* memberClient.nextOfType("presence_update")).d).toEqual({
          guild_id: guild,
          user_id: kicked,
          status: "offline"
        })
        expect(yield* revocations).toBe(2)

        // Later guild and channel events of G reach the member only.
        yield* expectNextIsMarker(harness, guild, [memberClient])
        yield* publishOk(harness, "message_delete", {
          guild_id: guild,
          channel_id: voice,
          message_id: newId(),
          deleted_at_unix: BASE_UNIX + 11
        })
        yield* memberClient.nextOfType("message_delete")
        // The other guild is untouched: its marker is the next frame of the kicked user's first connection.
        yield* expectNextIsMarker(harness, other, [first])
        expect(second.frames.at(-1)?.t).toBe("workspace_member_remove")
        expect(first.closed).toBeUndefined()
        expect(second.closed).toBeUndefined()

        const state = yield* harness.registry.state
        for (const connection of yield* harness.serverConnections(kicked)) {
          const entry = HashMap.unsafeGet(state.connections, connection.id)
          expect(holdsGuild(entry.channels, guild as never)).toBe(false)
        }
        // The revoked connections may not subscribe in the guild again (a new connection asks the policy).
        const refused = yield* metricDelta(harness, "filament_gateway_subscribe_rejected_total", {
          reason: "revoked"
        })
        first.send({ v: 1, t: "subscribe", d: { guild_id: guild, channel_id: text } })
        yield* eventuallyEffect(
          "subscribe refused as revoked",
          Effect.map(refused, (delta) => delta === 1)
        )
        yield* expectNextIsMarker(harness, other, [first])
        expect(first.closed).toBeUndefined()
        // A later subscriber's snapshot no longer lists the kicked user.
        const late = yield* harness.connectReady(newId(), { [guild]: "*" })
        const snapshot = yield* subscribeInOrder(late, guild, voice, { online: true })
        expect(snapshot.presenceSync.d["user_ids"]).not.toContain(kicked)
        expect(snapshot.voiceSync.d["participants"]).toEqual([])
      })
  )

  it.scoped("a ban revokes at once: the banned user gets the ban, not the removal that follows it", () =>
    Effect.gen(function* () {
      const harness = yield* startChatGateway()
      const [guild, channel] = [newId(), newId()]
      const [banned, member] = [newId(), newId()]
      const memberClient = yield* harness.connectReady(member, { [guild]: "*" })
      yield* subscribeInOrder(memberClient, guild, channel, { online: true })
      const bannedClient = yield* harness.connectReady(banned, { [guild]: "*" })
      yield* subscribeInOrder(bannedClient, guild, channel, { online: true })
      yield* memberClient.nextOfType("presence_update")
      const bans = yield* metricDelta(harness, "filament_gateway_revocations_total", {
        event_type: "workspace_member_ban"
      })

      const ban = { guild_id: guild, user_id: banned, banned_at_unix: BASE_UNIX + 1 }
      const removal = { guild_id: guild, user_id: banned, reason: "ban", removed_at_unix: BASE_UNIX + 1 }
      expect((yield* publishOk(harness, "workspace_member_ban", ban)).recipients).toBe(2)
      expect((yield* publishOk(harness, "workspace_member_remove", removal)).recipients).toBe(1)
      expect((yield* bannedClient.nextOfType("workspace_member_ban")).d).toEqual(ban)
      expect((yield* memberClient.nextOfType("workspace_member_ban")).d).toEqual(ban)
      expect((yield* memberClient.nextOfType("presence_update")).d["status"]).toBe("offline")
      expect((yield* memberClient.nextOfType("workspace_member_remove")).d).toEqual(removal)
      expect(yield* bans).toBe(1)
      yield* expectNextIsMarker(harness, guild, [memberClient])
      expect(bannedClient.frames.map((frame) => frame.t).slice(-1)).toEqual(["workspace_member_ban"])
    })
  )

  it.scoped("removing a user who holds nothing in the guild changes nothing for anyone", () =>
    Effect.gen(function* () {
      const harness = yield* startChatGateway()
      const [guild, channel] = [newId(), newId()]
      const member = yield* harness.connectReady(newId(), { [guild]: "*" })
      yield* subscribeInOrder(member, guild, channel, { online: true })
      const revocations = yield* metricDelta(harness, "filament_gateway_revocations_total", {
        event_type: "workspace_member_remove"
      })
      const stranger = newId()
      yield* publishOk(harness, "workspace_member_remove", {
        guild_id: guild,
        user_id: stranger,
        reason: "leave",
        removed_at_unix: BASE_UNIX
      })
      yield* member.nextOfType("workspace_member_remove")
      yield* expectNextIsMarker(harness, guild, [member])
      expect(yield* revocations).toBe(0)
    })
  )
})
