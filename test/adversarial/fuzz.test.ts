/**
 * Ingress fuzzing over real connections. fast-check generates frames — random bytes, arbitrary
 * text, near-valid JSON, envelopes with wrong types, huge numbers, deep nesting, unicode edge
 * cases, prototype-pollution keys, valid commands with one field broken. For every frame: the
 * server stays up; the fuzzed connection either stays open (proved by an `unsubscribed` ack to a
 * probe sent right after it) or closes with a documented code and reason, and the matching counter
 * moves by exactly one; a healthy neighbour receives every event published meanwhile, in order;
 * and afterwards `Object.prototype` is untouched.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, FiberRef, HashSet, Logger, LogLevel } from "effect"
import fc from "fast-check"
import { closeCodeFor, type CloseReason } from "../../src/protocol/CloseCodes.js"
import { MAX_JSON_DEPTH } from "../../src/protocol/Envelope.js"
import { ChannelCreate } from "../../src/protocol/events/workspace.js"
import type { ChannelId, GuildId } from "../../src/protocol/Ids.js"
import { newId, startGateway, type Harness, type TestClient } from "../server/harness.js"
import { familySum } from "./support.js"

const MAX_EVENT_BYTES = 4096

/** How the server ended the fuzzed connection, for each reason a client frame may cause. */
const COUNTER: Partial<
  Record<CloseReason, { readonly name: string; readonly labels?: Record<string, string> }>
> = {
  invalid_envelope: {
    name: "filament_gateway_events_parse_rejected_total",
    labels: { scope: "ingress", reason: "invalid_envelope" }
  },
  invalid_subscribe_payload: {
    name: "filament_gateway_events_parse_rejected_total",
    labels: { scope: "ingress", reason: "invalid_subscribe_payload" }
  },
  invalid_unsubscribe_payload: {
    name: "filament_gateway_events_parse_rejected_total",
    labels: { scope: "ingress", reason: "invalid_unsubscribe_payload" }
  },
  invalid_message_create_payload: {
    name: "filament_gateway_events_parse_rejected_total",
    labels: { scope: "ingress", reason: "invalid_message_create_payload" }
  },
  // The label is bounded (a protocol name or `other`), so the family's sum is what moves.
  unknown_event: { name: "filament_gateway_events_unknown_received_total" },
  // Refused by ws from the frame header; only the disconnect counter moves.
  event_too_large: { name: "filament_ws_disconnects_total", labels: { reason: "event_too_large" } },
  // message_create outside the token's guilds: the MessageHandler path refuses it.
  message_rejected: { name: "filament_ws_disconnects_total", labels: { reason: "message_rejected" } }
}

const counterValue = (
  text: string,
  counter: { readonly name: string; readonly labels?: Record<string, string> }
) =>
  counter.labels === undefined ? familySum(text, counter.name) : seriesIn(text, counter.name, counter.labels)

const seriesIn = (text: string, name: string, labels: Record<string, string>) => {
  const wanted = `${name}{${Object.entries(labels)
    .map(([key, value]) => `${key}="${value}"`)
    .join(",")}} `
  const line = text.split("\n").find((candidate) => candidate.startsWith(wanted))
  return line === undefined ? 0 : Number(line.slice(wanted.length))
}

type Wire = { readonly data: string | Uint8Array; readonly binary: boolean }

const ulidChars = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
const ulidLike = fc.string({ unit: fc.constantFrom(...ulidChars), minLength: 26, maxLength: 26 })

/** Values that go wrong in a JSON envelope. */
const weird = fc.oneof(
  fc.jsonValue(),
  fc.constantFrom(
    1e308,
    -0,
    Number.MAX_SAFE_INTEGER + 2,
    "",
    "\u0000",
    "\ud800",
    "\ufeff",
    "\u202e",
    "__proto__",
    "constructor",
    [],
    {}
  ),
  fc.string({ unit: "binary", maxLength: 40 })
)

const envelopeJson = (t: unknown, d: unknown) => JSON.stringify({ v: 1, t, d })

const breakOneField = (base: Record<string, unknown>) =>
  fc.oneof(
    // A field replaced by a wrong value.
    fc.tuple(fc.constantFrom(...Object.keys(base)), weird).map(([key, value]) => ({ ...base, [key]: value })),
    // A field removed.
    fc.constantFrom(...Object.keys(base)).map((key) => {
      const copy: Record<string, unknown> = { ...base }
      delete copy[key]
      return copy
    }),
    // An extra key (including the pollution ones, as own JSON keys).
    fc
      .tuple(fc.constantFrom("__proto__", "constructor", "prototype", "extra", "toString"), weird)
      .map(
        ([key, value]) =>
          JSON.parse(
            JSON.stringify(base).replace(/^\{/, `{${JSON.stringify(key)}:${JSON.stringify(value) ?? "null"},`)
          ) as Record<string, unknown>
      ),
    // An id that is almost a ULID.
    fc
      .tuple(
        fc.constantFrom(...Object.keys(base).filter((key) => key.endsWith("_id"))),
        ulidLike,
        fc.nat(25),
        fc.constantFrom("I", "L", "O", "U", "!", "é", "")
      )
      .map(([key, id, at, bad]) => ({ ...base, [key]: id.slice(0, at) + bad + id.slice(at + 1) }))
  )

/** `depth` levels of arrays (`[[…]]`) or objects (`{"a":{"a":…1}}`). */
const nestedValue = (depth: number, objects = false) =>
  objects ? `${'{"a":'.repeat(depth)}1${"}".repeat(depth)}` : `${"[".repeat(depth)}${"]".repeat(depth)}`

/** A frame with `value` in one place: v, t, d, or any field of any command's d. */
const nestingPlaces = (guildId: string): ReadonlyArray<(value: string) => string> => {
  const target = { guild_id: guildId, channel_id: newId() }
  const commands = {
    subscribe: target,
    unsubscribe: target,
    message_create: { ...target, content: "hi", attachment_ids: [newId()] }
  }
  const places: Array<(value: string) => string> = [
    (value) => `{"v":${value},"t":"subscribe","d":${JSON.stringify(target)}}`,
    (value) => `{"v":1,"t":${value},"d":${JSON.stringify(target)}}`
  ]
  for (const [t, d] of Object.entries(commands)) {
    places.push((value) => `{"v":1,"t":"${t}","d":${value}}`)
    for (const key of Object.keys(d)) {
      const marker = `"@${key}@"`
      const template = JSON.stringify({ v: 1, t, d: { ...d, [key]: "@" + key + "@" } })
      places.push((value) => template.replace(marker, value))
    }
  }
  // Inside an array element (an attachment id).
  places.push((value) =>
    JSON.stringify({
      v: 1,
      t: "message_create",
      d: { ...target, content: "", attachment_ids: ["@"] }
    }).replace('"@"', value)
  )
  return places
}

const frames = (guildId: string): fc.Arbitrary<Wire> => {
  const valid = {
    subscribe: { guild_id: guildId, channel_id: newId() },
    unsubscribe: { guild_id: guildId, channel_id: newId() },
    message_create: { guild_id: guildId, channel_id: newId(), content: "hi" }
  }
  const text = (arbitrary: fc.Arbitrary<string>) => arbitrary.map((data): Wire => ({ data, binary: false }))
  return fc.oneof(
    // Random bytes, as a binary frame (parsed as JSON text, like the original).
    fc.uint8Array({ maxLength: 300 }).map((data): Wire => ({ data, binary: true })),
    // Invalid UTF-8 inside a binary frame that would otherwise be an envelope.
    fc
      .constantFrom(Uint8Array.from([0x7b, 0xc0, 0xaf, 0x7d]), Uint8Array.from([0xed, 0xa0, 0x80]))
      .map((data): Wire => ({ data, binary: true })),
    // Invalid UTF-8 in a text frame (ws sends a Buffer as given).
    fc
      .constantFrom(
        Uint8Array.from([0x7b, 0xc0, 0xaf, 0x7d]),
        Uint8Array.from([0x22, 0xed, 0xa0, 0x80, 0x22]),
        Uint8Array.from([0xff])
      )
      .map((data): Wire => ({ data, binary: false })),
    // Arbitrary text.
    text(fc.string({ unit: "binary", maxLength: 200 })),
    // Near-valid JSON: a valid subscribe with one character cut, doubled or replaced.
    text(
      fc
        .tuple(fc.nat(60), fc.constantFrom("", "{", "}", '"', ",", ":", "\\", "\u0000"))
        .map(([at, piece]) => {
          const json = envelopeJson("subscribe", valid.subscribe)
          const i = at % json.length
          return json.slice(0, i) + piece + json.slice(i + 1)
        })
    ),
    // Envelopes with wrong types anywhere.
    text(fc.tuple(weird, weird, weird).map(([v, t, d]) => JSON.stringify({ v, t, d }))),
    text(weird.map((d) => envelopeJson("subscribe", d))),
    // Huge numbers, as JSON text (not representable, or beyond safe integers).
    text(
      fc.constantFrom(
        `{"v":1${"0".repeat(400)},"t":"subscribe","d":{}}`,
        '{"v":1e999,"t":"subscribe","d":{}}',
        '{"v":9007199254740993,"t":"subscribe","d":{}}',
        '{"v":1.0000000000000001,"t":"unsubscribe","d":{}}'
      )
    ),
    // Deep nesting in every field of every command, arrays or objects, up to and beyond the frame cap.
    text(
      fc
        .tuple(
          fc.constantFrom(...nestingPlaces(guildId)),
          fc.integer({ min: 1, max: MAX_EVENT_BYTES / 2 + 64 }),
          fc.boolean()
        )
        .map(([put, depth, objects]) => put(nestedValue(depth, objects)))
    ),
    // Unicode edge cases in t and in ids.
    text(
      fc
        .constantFrom(
          "subscribe\u0000",
          "ѕubscribe",
          "subscribe\u200b",
          "SUBSCRIBE",
          "\ud83d\ude00",
          "a".repeat(65),
          "presence_sync",
          "ready"
        )
        .map((t) => envelopeJson(t, valid.subscribe))
    ),
    text(
      fc
        .constantFrom('"\\ud800"', '"\\udfff\\ud800"', '"\\u0000"', '"\\ufeff01ARZ3NDEKTSV4RRFFQ69G5FAV"')
        .map((id) => `{"v":1,"t":"subscribe","d":{"guild_id":${id},"channel_id":"${newId()}"}}`)
    ),
    text(
      fc.constantFrom(
        "\ufeff" + envelopeJson("subscribe", valid.subscribe),
        envelopeJson("subscribe", valid.subscribe) + "\u0000"
      )
    ),
    // Prototype pollution through every level of the envelope.
    text(
      fc.constantFrom(
        `{"v":1,"t":"subscribe","d":{"guild_id":"${guildId}","channel_id":"${newId()}"},"__proto__":{"polluted":1}}`,
        `{"__proto__":{"polluted":1},"v":1,"t":"subscribe","d":{}}`,
        `{"v":1,"t":"subscribe","d":{"__proto__":{"polluted":1},"guild_id":"${guildId}","channel_id":"${newId()}"}}`,
        `{"v":1,"t":"message_create","d":{"guild_id":"${guildId}","channel_id":"${newId()}","content":"x","attachment_ids":{"__proto__":["${newId()}"]}}}`,
        `{"v":1,"t":"constructor","d":{"prototype":{"polluted":1}}}`,
        `{"v":1,"t":"__proto__","d":{}}`,
        `{"v":1,"t":"subscribe","d":{"constructor":{"prototype":{"polluted":1}}}}`
      )
    ),
    // Valid commands with one field broken, and the commands themselves (must stay open).
    text(
      fc
        .constantFrom("subscribe", "unsubscribe", "message_create")
        .chain((t) => breakOneField(valid[t as keyof typeof valid]).map((d) => envelopeJson(t, d)))
    ),
    text(
      fc
        .constantFrom(...(Object.keys(valid) as Array<keyof typeof valid>))
        .map((t) => envelopeJson(t, valid[t]))
    ),
    text(
      fc.constant(
        envelopeJson("message_create", { guild_id: newId(), channel_id: newId(), content: "elsewhere" })
      )
    ),
    text(
      fc.constantFrom(
        envelopeJson("message_create", { ...valid.message_create, content: "x".repeat(2001) }),
        envelopeJson("message_create", {
          ...valid.message_create,
          attachment_ids: Array.from({ length: 6 }, newId)
        })
      )
    ),
    // Over the frame cap.
    fc
      .integer({ min: MAX_EVENT_BYTES + 1, max: MAX_EVENT_BYTES * 2 })
      .map((size): Wire => ({ data: "x".repeat(size), binary: false }))
  )
}

/**
 * Waits for the probe's ack (the frame left the connection open) or for the close. Frames and the
 * close arrive in order, so whichever comes first decides.
 */
const outcome = (client: TestClient, probeChannel: string) =>
  Effect.race(
    Effect.gen(function* () {
      for (;;) {
        const frame = yield* client.next("probe ack")
        if (frame.t === "unsubscribed" && frame.d["channel_id"] === probeChannel)
          return { open: true as const }
      }
    }),
    Effect.map(client.waitClosed(), (closed) => ({ open: false as const, closed }))
  )

describe("ingress fuzzing", () => {
  it.scoped(
    "any frame: server up, open or documented close + counter, neighbour unaffected, no pollution",
    () =>
      Effect.gen(function* () {
        const prototypeKeys = Object.getOwnPropertyNames(Object.prototype).sort()
        const harness: Harness = yield* startGateway({
          maxEventBytes: MAX_EVENT_BYTES,
          ingressEventsPerWindow: 1_000_000
        })
        const guildId = newId()
        const channelId = newId()
        const neighbour = yield* harness.connectReady(newId(), { [guildId]: "*" })
        neighbour.send({ v: 1, t: "subscribe", d: { guild_id: guildId, channel_id: channelId } })
        const token = yield* harness.token({ userId: newId(), guilds: { [guildId]: "*" } })
        let fuzzed: TestClient | undefined
        let published = 0
        let closes = 0

        const sample = fc.sample(frames(guildId), { numRuns: 300 })
        for (const wire of sample) {
          if (fuzzed === undefined || fuzzed.closed !== undefined) {
            fuzzed = yield* harness.connect(token).pipe(Effect.orDie)
            yield* fuzzed.nextOfType("ready")
          }
          const before = yield* harness.metrics()
          fuzzed.socket.send(wire.data, { binary: wire.binary })
          const probe = newId()
          fuzzed.send({ v: 1, t: "unsubscribe", d: { guild_id: guildId, channel_id: probe } })
          const result = yield* outcome(fuzzed, probe)
          const after = yield* harness.metrics()
          const label =
            typeof wire.data === "string"
              ? wire.data.slice(0, 200)
              : `bytes ${Buffer.from(wire.data).toString("hex").slice(0, 200)}`
          if (result.open) {
            for (const family of [
              "filament_gateway_events_parse_rejected_total",
              "filament_gateway_events_unknown_received_total",
              "filament_ws_disconnects_total"
            ])
              expect(familySum(after, family), `${label}: ${family}`).toBe(familySum(before, family))
          } else {
            closes++
            const reason = result.closed.reason as CloseReason
            const counter = COUNTER[reason]
            expect(counter, `${label}: undocumented close ${JSON.stringify(result.closed)}`).toBeDefined()
            expect(result.closed.code, label).toBe(closeCodeFor(reason).code)
            expect(counterValue(after, counter!), `${label}: counter of ${reason}`).toBe(
              counterValue(before, counter!) + 1
            )
            expect(seriesIn(after, "filament_ws_disconnects_total", { reason }), label).toBe(
              seriesIn(before, "filament_ws_disconnects_total", { reason }) + 1
            )
            expect(familySum(after, "filament_ws_disconnects_total"), label).toBe(
              familySum(before, "filament_ws_disconnects_total") + 1
            )
          }
          // The neighbour's stream: one marker per frame, published in-process.
          yield* harness.gateway.publish(ChannelCreate, {
            guild_id: guildId as GuildId,
            channel: { channel_id: newId() as ChannelId, name: `m${published++}`, kind: "text" }
          })
        }

        // Every marker, in order, exactly once; nothing closed the neighbour.
        const markers: Array<string> = []
        while (markers.length < published) {
          const frame = yield* neighbour.next(`marker ${markers.length}`)
          if (frame.t === "channel_create") markers.push((frame.d["channel"] as { name: string }).name)
        }
        expect(markers).toEqual(Array.from({ length: published }, (_, i) => `m${i}`))
        expect(neighbour.closed).toBeUndefined()
        expect((yield* harness.http("/healthz")).status).toBe(200)
        // The sample closes a fair share of connections and leaves others open (both paths exercised).
        expect(closes).toBeGreaterThan(20)
        expect(closes).toBeLessThan(sample.length)
        expect(Object.getOwnPropertyNames(Object.prototype).sort()).toEqual(prototypeKeys)
        expect(({} as Record<string, unknown>)["polluted"]).toBeUndefined()
      })
  )

  it.scoped(
    "nesting in every field up to the 64 KiB frame cap: 4001 invalid_envelope, counted, no defect, no ERROR log",
    () =>
      Effect.gen(function* () {
        // Every log line of the gateway's fibers (they inherit the loggers of the scope that built it).
        const logged: Array<{ readonly level: LogLevel.LogLevel; readonly message: unknown }> = []
        yield* Effect.locallyScopedWith(
          FiberRef.currentLoggers,
          HashSet.add(Logger.make(({ logLevel, message }) => void logged.push({ level: logLevel, message })))
        )
        const harness = yield* startGateway({ ingressEventsPerWindow: 1_000_000 })
        const cap = harness.config.maxEventBytes
        const guildId = newId()
        const token = yield* harness.token({ userId: newId(), guilds: { [guildId]: "*" } })
        const rejected = (text: string) =>
          seriesIn(text, "filament_gateway_events_parse_rejected_total", {
            scope: "ingress",
            reason: "invalid_envelope"
          })
        let frames = 0
        for (const put of nestingPlaces(guildId)) {
          const largest = Math.floor((cap - put("").length) / 2)
          for (const depth of [MAX_JSON_DEPTH + 1, 2_500, 10_000, largest]) {
            const frame = put(nestedValue(depth))
            expect(Buffer.byteLength(frame)).toBeLessThanOrEqual(cap)
            const client = yield* harness.connect(token).pipe(Effect.orDie)
            yield* client.nextOfType("ready")
            const before = yield* harness.metrics()
            client.socket.send(frame)
            const closed = yield* client.waitClosed()
            const after = yield* harness.metrics()
            const label = `${frame.slice(0, 80)} (depth ${depth})`
            expect(closed, label).toEqual({ code: 4001, reason: "invalid_envelope" })
            expect(rejected(after), label).toBe(rejected(before) + 1)
            expect(familySum(after, "filament_ws_disconnects_total"), label).toBe(
              familySum(before, "filament_ws_disconnects_total") + 1
            )
            frames++
          }
        }
        expect(frames).toBe(nestingPlaces(guildId).length * 4)
        expect(yield* harness.metric("filament_ws_disconnects_total", { reason: "internal_error" })).toBe(0)
        expect(logged.filter((entry) => LogLevel.greaterThanEqual(entry.level, LogLevel.Error))).toEqual([])
      })
  )
})
