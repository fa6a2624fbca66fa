/** The event registry: the exact original event set (reference §4.0), extensions, lifecycle invariants. */
import { Schema } from "effect"
import { describe, expect, it } from "vitest"
import { CLOSE_CODES } from "../../src/protocol/CloseCodes.js"
import { defineEvent, type EventLifecycle, type EventMigration } from "../../src/protocol/EventDefinition.js"
import { EVENTS, makeRegistry, Manifest, ManifestError, toJsonManifest } from "../../src/protocol/Manifest.js"

/** Reference §4.0, in order: event, schema_version, scope. */
const ORIGINAL_MANIFEST: ReadonlyArray<readonly [string, number, string]> = [
  ["ready", 1, "connection"],
  ["subscribed", 1, "connection"],
  ["message_create", 1, "channel"],
  ["message_update", 1, "channel"],
  ["message_delete", 1, "channel"],
  ["message_reaction", 2, "channel"],
  ["channel_create", 1, "guild"],
  ["presence_sync", 1, "guild"],
  ["presence_update", 1, "guild"],
  ["voice_participant_sync", 1, "channel"],
  ["voice_participant_join", 1, "channel"],
  ["voice_participant_leave", 1, "channel"],
  ["voice_participant_update", 1, "channel"],
  ["voice_stream_publish", 1, "channel"],
  ["voice_stream_unpublish", 1, "channel"],
  ["workspace_update", 1, "guild"],
  ["workspace_member_add", 1, "guild"],
  ["workspace_member_update", 1, "guild"],
  ["workspace_member_remove", 1, "guild"],
  ["workspace_member_ban", 1, "guild"],
  ["workspace_role_create", 1, "guild"],
  ["workspace_role_update", 1, "guild"],
  ["workspace_role_delete", 1, "guild"],
  ["workspace_role_reorder", 1, "guild"],
  ["workspace_role_assignment_add", 1, "guild"],
  ["workspace_role_assignment_remove", 1, "guild"],
  ["workspace_channel_role_override_update", 1, "guild"],
  ["workspace_channel_permission_override_update", 1, "guild"],
  ["workspace_ip_ban_sync", 1, "guild"],
  ["profile_update", 1, "user"],
  ["profile_avatar_update", 1, "user"],
  ["profile_banner_update", 1, "user"],
  ["friend_request_create", 1, "user"],
  ["friend_request_update", 1, "user"],
  ["friend_request_delete", 1, "user"],
  ["friend_remove", 1, "user"]
]

const event = (
  overrides: {
    readonly type?: string
    readonly version?: number
    readonly lifecycle?: EventLifecycle
    readonly migration?: EventMigration
  } = {}
) =>
  defineEvent({
    type: "x",
    version: 1,
    scope: "user",
    description: "x",
    payload: Schema.Struct({}),
    ...overrides
  })

describe("Manifest", () => {
  it("lists exactly the 36 original active events with the §4.0 versions and scopes, in order", () => {
    const original = Manifest.events.filter((e) => e.origin === "original" && e.lifecycle === "active")
    expect(original.map((e) => [e.type, e.version, e.scope])).toEqual(ORIGINAL_MANIFEST)
  })

  it("then our extensions unsubscribed and recovery, then the deprecated legacy override event", () => {
    expect(Manifest.events).toHaveLength(39)
    const extensions = Manifest.events.filter((e) => e.origin === "extension")
    expect(extensions.map((e) => [e.type, e.version, e.scope, e.lifecycle])).toEqual([
      ["unsubscribed", 1, "connection", "active"],
      ["recovery", 1, "connection", "active"]
    ])
    const deprecated = Manifest.byLifecycle("deprecated")
    expect(deprecated.map((e) => [e.type, e.version, e.scope, e.origin])).toEqual([
      ["workspace_channel_override_update", 1, "guild", "original"]
    ])
    expect(deprecated[0]!.migration).toEqual({
      note:
        "Use workspace_channel_role_override_update for role payloads and " +
        "workspace_channel_permission_override_update for principal target payloads.",
      replacedBy: ["workspace_channel_role_override_update", "workspace_channel_permission_override_update"]
    })
    for (const replacement of deprecated[0]!.migration!.replacedBy) {
      expect(Manifest.lookup(replacement)?.lifecycle).toBe("active")
    }
    expect(Manifest.events.map((e) => e.type).slice(-3)).toEqual([
      "unsubscribed",
      "recovery",
      "workspace_channel_override_update"
    ])
  })

  it("looks events up by type, scope and lifecycle", () => {
    expect(Manifest.lookup("message_reaction")?.version).toBe(2)
    expect(Manifest.lookup("nope")).toBeUndefined()
    for (const name of ["__proto__", "constructor", "toString", "hasOwnProperty", "valueOf"]) {
      expect(Manifest.lookup(name), name).toBeUndefined()
    }
    expect(Manifest.byScope("connection").map((e) => e.type)).toEqual([
      "ready",
      "subscribed",
      "unsubscribed",
      "recovery"
    ])
    expect(Manifest.byScope("user")).toHaveLength(7)
    expect(Manifest.byScope("channel")).toHaveLength(10)
    expect(Manifest.byScope("guild")).toHaveLength(18)
    expect(Manifest.byLifecycle("active")).toHaveLength(38)
    expect(EVENTS).toBe(Manifest.events)
  })

  it("rejects duplicate names", () => {
    expect(() => makeRegistry([event({ type: "a" }), event({ type: "b" }), event({ type: "a" })])).toThrow(
      ManifestError
    )
    expect(() => makeRegistry([event({ type: "a" }), event({ type: "b" })])).not.toThrow()
  })

  it("requires schema_version to be an integer > 0", () => {
    for (const version of [0, -1, 1.5, Number.NaN]) {
      expect(() => makeRegistry([event({ version })]), String(version)).toThrow(/schema_version/)
    }
  })

  it("requires a migration note on a deprecated event and forbids one on an active event", () => {
    expect(() => makeRegistry([event({ lifecycle: "deprecated" })])).toThrow(/needs a migration note/)
    expect(() =>
      makeRegistry([event({ lifecycle: "deprecated", migration: { note: "  ", replacedBy: [] } })])
    ).toThrow(/needs a migration note/)
    expect(() =>
      makeRegistry([event({ lifecycle: "deprecated", migration: { note: "use y", replacedBy: ["y"] } })])
    ).not.toThrow()
    expect(() => makeRegistry([event({ migration: { note: "use y", replacedBy: ["y"] } })])).toThrow(
      /must not carry a migration note/
    )
  })

  it("exports the JSON manifest: protocol version, events with lifecycle and migration, commands, close codes", () => {
    const manifest = toJsonManifest()
    expect(manifest.protocol_version).toBe(1)
    expect(manifest.max_event_bytes).toBe(65_536)
    expect(manifest.events).toHaveLength(39)
    for (const entry of manifest.events) {
      expect(Object.keys(entry)).toEqual(
        expect.arrayContaining([
          "event_type",
          "schema_version",
          "scope",
          "lifecycle",
          "origin",
          "payload_schema"
        ])
      )
      expect("migration" in entry).toBe(entry.lifecycle === "deprecated")
    }
    expect(manifest.events.at(-1)?.migration?.replaced_by).toEqual([
      "workspace_channel_role_override_update",
      "workspace_channel_permission_override_update"
    ])
    expect(manifest.commands.map((c) => [c.command_type, c.rejection_reason, c.close_code])).toEqual([
      ["subscribe", "invalid_subscribe_payload", 4002],
      ["unsubscribe", "invalid_unsubscribe_payload", 4002],
      ["message_create", "invalid_message_create_payload", 4002]
    ])
    expect(manifest.close_codes).toEqual(CLOSE_CODES)
  })
})
