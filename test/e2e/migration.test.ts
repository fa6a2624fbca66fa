/**
 * The migration lifecycle (docs/PROTOCOL.md, Compatibility and versioning) against the real server: with
 * `GATEWAY_DUAL_EMIT_LEGACY_OVERRIDE` off only the explicit override events go out (counted as
 * `explicit_emit`); with it on, the deprecated `workspace_channel_override_update` goes first with the
 * same payload, then the explicit event, and both are counted per path. The client SDK's dispatcher,
 * fed the raw frames, normalizes the legacy name to the explicit event and counts the decode.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { makeDispatcher } from "../../src/client/Dispatch.js"
import { newId, type Harness } from "../server/harness.js"
import {
  BASE_UNIX,
  expectNextIsMarker,
  metricDelta,
  publishOk,
  startChatGateway,
  subscribeInOrder
} from "./chat.js"

const COMPATIBILITY = "filament_gateway_compatibility_events_total"

const series = (path: string, mode: string) => ({ surface: "server", path, mode })

const counters = (harness: Harness) =>
  Effect.all({
    roleLegacy: metricDelta(harness, COMPATIBILITY, series("channel_role_override_migration", "legacy_emit")),
    roleExplicit: metricDelta(
      harness,
      COMPATIBILITY,
      series("channel_role_override_migration", "explicit_emit")
    ),
    permissionLegacy: metricDelta(
      harness,
      COMPATIBILITY,
      series("channel_permission_override_migration", "legacy_emit")
    ),
    permissionExplicit: metricDelta(
      harness,
      COMPATIBILITY,
      series("channel_permission_override_migration", "explicit_emit")
    )
  })

const deltas = (pending: Effect.Effect.Success<ReturnType<typeof counters>>) =>
  Effect.all({
    roleLegacy: pending.roleLegacy,
    roleExplicit: pending.roleExplicit,
    permissionLegacy: pending.permissionLegacy,
    permissionExplicit: pending.permissionExplicit
  })

const overrides = (guild: string, channel: string) => ({
  role: {
    guild_id: guild,
    channel_id: channel,
    role: "moderator",
    updated_fields: { allow: ["create_message"], deny: ["ban_member"] },
    updated_at_unix: BASE_UNIX,
    actor_user_id: newId()
  },
  permission: {
    guild_id: guild,
    channel_id: channel,
    target_kind: "role",
    target_id: newId(),
    updated_fields: { allow: ["subscribe_streams"], deny: [] },
    updated_at_unix: BASE_UNIX + 1
  }
})

/** A subscribed client recording the raw text of every frame after `ready` and the subscribe. */
const watcher = (harness: Harness, guild: string, channel: string) =>
  Effect.gen(function* () {
    const client = yield* harness.connectReady(newId(), { [guild]: "*" })
    yield* subscribeInOrder(client, guild, channel, { online: true })
    const raw: Array<string> = []
    client.socket.on("message", (data: Buffer) => raw.push(data.toString()))
    return { client, raw }
  })

/**
 * A gateway with `config`, a watcher in a fresh channel, the compatibility counters, and the role
 * then the permission override published. The role publish counts the explicit event's
 * recipients: with dual emit the legacy one reached the same connections.
 */
const publishOverrides = (config: { readonly dualEmitLegacyOverride?: boolean } = {}) =>
  Effect.gen(function* () {
    const harness = yield* startChatGateway(config)
    const [guild, channel] = [newId(), newId()]
    const { client, raw } = yield* watcher(harness, guild, channel)
    const pending = yield* counters(harness)
    const { permission, role } = overrides(guild, channel)
    expect((yield* publishOk(harness, "workspace_channel_role_override_update", role)).recipients).toBe(1)
    yield* publishOk(harness, "workspace_channel_permission_override_update", permission)
    return { harness, guild, client, raw, pending, permission, role }
  })

describe("dual emit of the legacy override event", () => {
  it.scoped("off (the default): only the explicit events; only explicit_emit counts", () =>
    Effect.gen(function* () {
      const { harness, guild, client, raw, pending, permission, role } = yield* publishOverrides()
      expect(harness.config.dualEmitLegacyOverride).toBe(false)
      expect(yield* client.next()).toEqual({ v: 1, t: "workspace_channel_role_override_update", d: role })
      expect(yield* client.next()).toEqual({
        v: 1,
        t: "workspace_channel_permission_override_update",
        d: permission
      })
      yield* expectNextIsMarker(harness, guild, [client])
      expect(yield* deltas(pending)).toEqual({
        roleLegacy: 0,
        roleExplicit: 1,
        permissionLegacy: 0,
        permissionExplicit: 1
      })
      expect(raw.filter((text) => text.includes("workspace_channel_override_update"))).toEqual([])
    })
  )

  it.scoped(
    "on: legacy first with the same payload, explicit second, both counted; the client normalizes",
    () =>
      Effect.gen(function* () {
        const { harness, guild, client, raw, pending, permission, role } = yield* publishOverrides({
          dualEmitLegacyOverride: true
        })
        const frames = [
          yield* client.next(),
          yield* client.next(),
          yield* client.next(),
          yield* client.next()
        ]
        expect(frames).toEqual([
          { v: 1, t: "workspace_channel_override_update", d: role },
          { v: 1, t: "workspace_channel_role_override_update", d: role },
          { v: 1, t: "workspace_channel_override_update", d: permission },
          { v: 1, t: "workspace_channel_permission_override_update", d: permission }
        ])
        yield* expectNextIsMarker(harness, guild, [client])
        expect(yield* deltas(pending)).toEqual({
          roleLegacy: 1,
          roleExplicit: 1,
          permissionLegacy: 1,
          permissionExplicit: 1
        })

        // The SDK's dispatcher over the very bytes the server sent.
        const seen: Array<{ type: string; legacy: string | undefined; payload: unknown }> = []
        const dispatcher = makeDispatcher({
          workspace_channel_role_override_update: (payload, event) =>
            seen.push({ type: event.type, legacy: event.legacyType, payload }),
          workspace_channel_permission_override_update: (payload, event) =>
            seen.push({ type: event.type, legacy: event.legacyType, payload })
        })
        for (const text of raw.slice(0, 4)) expect(dispatcher.dispatchFrame(text)._tag).toBe("Right")
        expect(seen.map(({ legacy, type }) => [type, legacy])).toEqual([
          ["workspace_channel_role_override_update", "workspace_channel_override_update"],
          ["workspace_channel_role_override_update", undefined],
          ["workspace_channel_permission_override_update", "workspace_channel_override_update"],
          ["workspace_channel_permission_override_update", undefined]
        ])
        // Normalized legacy payloads equal the explicit ones.
        expect(seen[0]!.payload).toEqual(seen[1]!.payload)
        expect(seen[2]!.payload).toEqual(seen[3]!.payload)
        expect(Object.fromEntries(dispatcher.compatibilityCounters())).toEqual({
          "channel_override_migration:legacy_decode": 2,
          "channel_override_migration:explicit_decode": 2
        })
      })
  )

  it.scoped("on: other guild events are not dual-emitted", () =>
    Effect.gen(function* () {
      const harness = yield* startChatGateway({ dualEmitLegacyOverride: true })
      const [guild, channel] = [newId(), newId()]
      const { client } = yield* watcher(harness, guild, channel)
      const pending = yield* counters(harness)
      yield* expectNextIsMarker(harness, guild, [client])
      expect(yield* deltas(pending)).toEqual({
        roleLegacy: 0,
        roleExplicit: 0,
        permissionLegacy: 0,
        permissionExplicit: 0
      })
    })
  )
})
