import { describe, expect, expectTypeOf, it } from "@effect/vitest"
import { Arbitrary, Either, FastCheck } from "effect"
import { CLIENT_EVENT_TYPES, decodeFrame, LEGACY_EVENTS } from "../../src/client/Decode.js"
import type { ClientEvent, ClientEventType, FrameDropped, Result } from "../../src/client/Decode.js"
import { makeDispatcher } from "../../src/client/Dispatch.js"
import type { Handlers } from "../../src/client/Dispatch.js"
import { encodePayload } from "../../src/protocol/EventDefinition.js"
import type { EventDefinition } from "../../src/protocol/EventDefinition.js"
import { EVENTS, Manifest } from "../../src/protocol/Manifest.js"
import type { PayloadOfType } from "../../src/protocol/Manifest.js"

const frame = (t: string, d: unknown) => JSON.stringify({ v: 1, t, d })

const rightOrThrow = (result: Result<ClientEvent, FrameDropped>): ClientEvent => {
  if (result._tag === "Left") throw result.left
  return result.right
}
const rightOrReason = (result: Result<ClientEvent, FrameDropped>) =>
  result._tag === "Right" ? result.right.type : result.left.reason
const isDropped = (result: Result<ClientEvent, FrameDropped>) => result._tag === "Left"

/** Valid wire payloads of an event, generated from its own schema. */
const samplePayloads = (event: EventDefinition, count: number): Array<unknown> =>
  FastCheck.sample(Arbitrary.make(event.payload), { numRuns: count, seed: 42 }).map((payload) =>
    Either.getOrThrowWith(encodePayload(event, payload), (error) => error)
  )

const GUILD = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
const CHANNEL = "01ARZ3NDEKTSV4RRFFQ69G5FAW"
const roleShape = {
  guild_id: GUILD,
  channel_id: CHANNEL,
  role: "member",
  updated_fields: { allow: ["create_message"], deny: ["ban_member"] },
  updated_at_unix: 1710000001
}
const targetShape = {
  guild_id: GUILD,
  channel_id: CHANNEL,
  target_kind: "member",
  target_id: "01ARZ3NDEKTSV4RRFFQ69G5FAY",
  updated_fields: { allow: ["create_message"], deny: ["ban_member"] },
  updated_at_unix: 1710000001
}

/** A handler table for every routable type that records what it received. */
const recordingHandlers = () => {
  const received: Array<{ type: string; payload: unknown }> = []
  const handlers = Object.fromEntries(
    CLIENT_EVENT_TYPES.map((type) => [type, (payload: unknown) => received.push({ type, payload })])
  ) as Handlers
  return { received, handlers }
}

describe("registry completeness", () => {
  it("routes every manifest event but the legacy ones, each exactly once", () => {
    const manifestTypes = Manifest.events.map((event) => event.type)
    expect(new Set(manifestTypes).size).toBe(manifestTypes.length)
    expect(new Set(CLIENT_EVENT_TYPES).size).toBe(CLIENT_EVENT_TYPES.length)
    expect([...CLIENT_EVENT_TYPES, ...Object.keys(LEGACY_EVENTS)].sort()).toEqual([...manifestTypes].sort())
    // 36 original events + our `unsubscribed` and `recovery`; the deprecated legacy name normalizes away.
    expect(CLIENT_EVENT_TYPES.length).toBe(38)
  })

  it("knows every deprecated manifest event as a legacy event with replacements in the manifest", () => {
    const deprecated = Manifest.byLifecycle("deprecated").map((event) => event.type)
    expect(deprecated.sort()).toEqual(Object.keys(LEGACY_EVENTS).sort())
    for (const type of deprecated) {
      const replacements = Manifest.lookup(type)?.migration?.replacedBy ?? []
      expect(replacements.length).toBeGreaterThan(0)
      for (const replacement of replacements) expect(CLIENT_EVENT_TYPES).toContain(replacement)
    }
  })

  it.each(EVENTS.map((event) => [event.type, event] as const))(
    "decodes and dispatches what the server can emit: %s",
    (type, event) => {
      const { received, handlers } = recordingHandlers()
      const dispatcher = makeDispatcher(handlers)
      const payloads = samplePayloads(event as EventDefinition, 5)
      for (const payload of payloads) {
        const result = dispatcher.dispatchFrame(frame(type, payload))
        if (result._tag === "Left") throw new Error(`${type} did not decode: ${result.left.message}`)
      }
      const expectedTypes = Object.hasOwn(LEGACY_EVENTS, type)
        ? (Manifest.lookup(type)?.migration?.replacedBy ?? [])
        : [type]
      expect(received.length).toBe(payloads.length)
      for (const entry of received) expect(expectedTypes).toContain(entry.type)
    }
  )
})

describe("dispatcher", () => {
  it("types each handler with its event's payload from the manifest", () => {
    expectTypeOf<Parameters<NonNullable<Handlers["message_create"]>>[0]>().toEqualTypeOf<
      PayloadOfType<"message_create">
    >()
    expectTypeOf<Parameters<NonNullable<Handlers["presence_sync"]>>[0]>().toEqualTypeOf<
      PayloadOfType<"presence_sync">
    >()
    expectTypeOf<ClientEventType>().not.toEqualTypeOf<"workspace_channel_override_update">()
    const dispatcher = makeDispatcher({
      message_create: (payload) => expectTypeOf(payload.content).toEqualTypeOf<string>(),
      presence_sync: (payload, event) => {
        expectTypeOf(payload.user_ids).toMatchTypeOf<ReadonlyArray<string>>()
        expectTypeOf(event.type).toEqualTypeOf<"presence_sync">()
      }
    })
    expect(dispatcher.dispatch).toBeTypeOf("function")
  })

  it("drops an invalid known event without calling its handler and keeps dispatching later ones", () => {
    const { received, handlers } = recordingHandlers()
    const dispatcher = makeDispatcher(handlers)
    const results = [
      frame("ready", { user_id: "not-a-ulid" }),
      frame("presence_update", { guild_id: GUILD, user_id: CHANNEL, status: "away" }),
      frame("some_future_event", { anything: true }),
      "{broken",
      frame("ready", { user_id: CHANNEL }),
      frame("presence_update", { guild_id: GUILD, user_id: CHANNEL, status: "online" })
    ].map((text) => rightOrReason(dispatcher.dispatchFrame(text)))
    expect(results).toEqual([
      "invalid_payload",
      "invalid_payload",
      "unknown_event",
      "invalid_envelope",
      "ready",
      "presence_update"
    ])
    expect(received.map((entry) => entry.type)).toEqual(["ready", "presence_update"])
  })

  it("reports whether a handler took the event", () => {
    const dispatcher = makeDispatcher({ ready: () => {} })
    const ready = rightOrThrow(decodeFrame(frame("ready", { user_id: CHANNEL })))
    const subscribed = rightOrThrow(
      decodeFrame(frame("subscribed", { guild_id: GUILD, channel_id: CHANNEL }))
    )
    expect(dispatcher.dispatch(ready)).toBe(true)
    expect(dispatcher.dispatch(subscribed)).toBe(false)
  })

  it("never routes to inherited or prototype-chain handler names", () => {
    const calls: Array<string> = []
    const inherited = Object.create({ ready: () => calls.push("inherited ready") }) as Handlers
    const hostile = JSON.parse('{"__proto__": {"ready": 1}, "constructor": 2}') as Handlers
    for (const handlers of [inherited, hostile]) {
      const dispatcher = makeDispatcher(handlers)
      const ready = rightOrThrow(decodeFrame(frame("ready", { user_id: CHANNEL })))
      expect(dispatcher.dispatch(ready)).toBe(false)
    }
    expect(calls).toEqual([])
  })
})

describe("legacy workspace_channel_override_update", () => {
  it("normalizes by shape to the explicit events and counts legacy and explicit decodes", () => {
    const { received, handlers } = recordingHandlers()
    const dispatcher = makeDispatcher(handlers)
    const decoded: Array<ClientEvent> = []
    for (const text of [
      frame("workspace_channel_override_update", roleShape),
      frame("workspace_channel_override_update", targetShape),
      frame("workspace_channel_role_override_update", roleShape),
      frame("workspace_channel_permission_override_update", targetShape),
      frame("workspace_channel_permission_override_update", targetShape)
    ]) {
      decoded.push(rightOrThrow(dispatcher.dispatchFrame(text)))
    }
    expect(decoded.map((event) => [event.type, event.legacyType])).toEqual([
      ["workspace_channel_role_override_update", "workspace_channel_override_update"],
      ["workspace_channel_permission_override_update", "workspace_channel_override_update"],
      ["workspace_channel_role_override_update", undefined],
      ["workspace_channel_permission_override_update", undefined],
      ["workspace_channel_permission_override_update", undefined]
    ])
    expect(received.map((entry) => entry.type)).toEqual(decoded.map((event) => event.type))
    expect(received[0]!.payload).toEqual(roleShape)
    expect(received[1]!.payload).toEqual(targetShape)
    expect(Object.fromEntries(dispatcher.compatibilityCounters())).toEqual({
      "channel_override_migration:legacy_decode": 2,
      "channel_override_migration:explicit_decode": 3
    })
  })

  it("drops a legacy payload that fits neither shape and counts nothing", () => {
    const dispatcher = makeDispatcher({})
    const { role: _role, ...neither } = roleShape
    const result = dispatcher.dispatchFrame(frame("workspace_channel_override_update", neither))
    expect(result._tag === "Left" && [result.left.reason, result.left.eventType]).toEqual([
      "invalid_payload",
      "workspace_channel_override_update"
    ])
    // An explicit event with the other shape is not rescued by shape: names stay strict.
    expect(
      isDropped(dispatcher.dispatchFrame(frame("workspace_channel_role_override_update", targetShape)))
    ).toBe(true)
    expect(Object.fromEntries(dispatcher.compatibilityCounters())).toEqual({
      "channel_override_migration:legacy_decode": 0,
      "channel_override_migration:explicit_decode": 0
    })
  })

  it("exposes the counters as a snapshot that callers cannot change", () => {
    const dispatcher = makeDispatcher({})
    dispatcher.dispatchFrame(frame("workspace_channel_override_update", roleShape))
    const snapshot = dispatcher.compatibilityCounters() as Map<string, number>
    snapshot.set("channel_override_migration:legacy_decode", 99)
    expect(dispatcher.compatibilityCounters().get("channel_override_migration:legacy_decode")).toBe(1)
  })
})
