/**
 * Ingress commands (docs/PROTOCOL.md, Ingress commands): strict payloads, canonical ids, the
 * `message_create` rules, and rejection reasons that are exactly the metric / close reasons.
 */
import { Either } from "effect"
import { describe, expect, it } from "vitest"
import { closeCodeFor } from "../../src/protocol/CloseCodes.js"
import {
  type Command,
  COMMANDS,
  type CommandRejection,
  decodeCommand,
  MAX_ATTACHMENTS_PER_MESSAGE
} from "../../src/protocol/Commands.js"
import { MAX_ISSUE_MESSAGE_CHARS, MAX_ISSUE_PATH_CHARS, MAX_JSON_DEPTH } from "../../src/protocol/Envelope.js"
import { A, C, COMMAND_VECTORS, G, M, R, U, ulids } from "./vectors.js"

const frame = (t: unknown, d: unknown) => JSON.stringify({ v: 1, t, d })
const accept = (text: string): Command => {
  const result = decodeCommand(text)
  if (Either.isLeft(result)) throw new Error(`rejected: ${result.left.reason} ${result.left.detail}`)
  return result.right
}
const reject = (text: string): CommandRejection => {
  const result = decodeCommand(text)
  if (Either.isRight(result)) throw new Error(`accepted: ${JSON.stringify(result.right)}`)
  return result.left
}

/** The `parse_rejected` / `unknown_received` reasons (docs/PROTOCOL.md, Invalid input). */
const METRIC_REASONS = [
  "invalid_envelope",
  "invalid_subscribe_payload",
  "invalid_unsubscribe_payload",
  "invalid_message_create_payload",
  "unknown_event"
]

describe("decodeCommand", () => {
  it.each(COMMANDS.map((command) => [command.type, command] as const))(
    "%s: valid vectors decode, invalid ones are rejected with the command's reason",
    (type, command) => {
      const vectors = COMMAND_VECTORS[type]
      for (const payload of vectors.valid) expect(accept(frame(type, payload))._tag).toBe(type)
      expect(vectors.invalid.length).toBeGreaterThanOrEqual(2)
      for (const { payload, why } of vectors.invalid) {
        const rejection = reject(frame(type, payload))
        expect(rejection.reason, why).toBe(command.rejection)
        expect(rejection.eventType).toBe(type)
        expect(closeCodeFor(rejection.reason).code).toBe(4002)
      }
    }
  )

  it("canonicalizes ids to uppercase", () => {
    expect(accept(frame("subscribe", { guild_id: G.toLowerCase(), channel_id: C.toLowerCase() }))).toEqual({
      _tag: "subscribe",
      guild_id: G,
      channel_id: C
    })
    expect(accept(frame("unsubscribe", { guild_id: G, channel_id: "01arZ3NDEKtsv4RRFFQ69G5faw" }))).toEqual({
      _tag: "unsubscribe",
      guild_id: G,
      channel_id: C
    })
  })

  it("message_create: attachment ids deduplicated keeping first order, null or absent means none", () => {
    const base = { guild_id: G, channel_id: C, content: "hi" }
    expect(
      accept(frame("message_create", { ...base, attachment_ids: [M, A, M.toLowerCase(), R, A] }))
    ).toEqual({
      _tag: "message_create",
      ...base,
      attachment_ids: [M, A, R]
    })
    expect(accept(frame("message_create", { ...base, attachment_ids: null }))).toMatchObject({
      attachment_ids: []
    })
    expect(accept(frame("message_create", base))).toMatchObject({ attachment_ids: [] })
  })

  it("message_create: content is 0..2000 UTF-8 bytes, empty only with attachments", () => {
    const message = (content: string, attachment_ids?: ReadonlyArray<string>) =>
      frame("message_create", {
        guild_id: G,
        channel_id: C,
        content,
        ...(attachment_ids ? { attachment_ids } : {})
      })
    expect(accept(message("x".repeat(2000)))._tag).toBe("message_create")
    expect(accept(message("é".repeat(1000)))._tag).toBe("message_create")
    expect(accept(message("😀".repeat(500)))._tag).toBe("message_create")
    expect(reject(message("x".repeat(2001))).reason).toBe("invalid_message_create_payload")
    expect(reject(message(`${"é".repeat(1000)}a`)).reason).toBe("invalid_message_create_payload")
    expect(reject(message("😀".repeat(501))).reason).toBe("invalid_message_create_payload")
    expect(reject(message("")).reason).toBe("invalid_message_create_payload")
    expect(reject(message("", [])).reason).toBe("invalid_message_create_payload")
    expect(accept(message("", [A]))).toMatchObject({ content: "", attachment_ids: [A] })
  })

  it(`message_create: at most ${MAX_ATTACHMENTS_PER_MESSAGE} attachment ids (as sent, before deduplication)`, () => {
    const message = (attachment_ids: ReadonlyArray<string>) =>
      frame("message_create", { guild_id: G, channel_id: C, content: "x", attachment_ids })
    expect(accept(message(ulids(5)))).toMatchObject({ attachment_ids: ulids(5) })
    expect(reject(message(ulids(6))).reason).toBe("invalid_message_create_payload")
    expect(reject(message([A, A, A, A, A, A])).reason).toBe("invalid_message_create_payload")
  })

  it("rejects unknown keys in d and at the top level", () => {
    expect(reject(frame("subscribe", { guild_id: G, channel_id: C, user_id: U })).reason).toBe(
      "invalid_subscribe_payload"
    )
    expect(
      reject(JSON.stringify({ v: 1, t: "subscribe", d: { guild_id: G, channel_id: C }, x: 1 })).reason
    ).toBe("invalid_envelope")
    expect(
      reject('{"v":1,"t":"subscribe","d":{"guild_id":"' + G + '","channel_id":"' + C + '","__proto__":{}}}')
        .reason
    ).toBe("invalid_subscribe_payload")
  })

  it("rejects unknown command names (server event names and prototype names included) as unknown_event", () => {
    for (const t of [
      "presence_sync",
      "ready",
      "subscribed",
      "typing",
      "__proto__",
      "constructor",
      "tostring"
    ]) {
      const rejection = reject(frame(t, { guild_id: G, channel_id: C }))
      expect(rejection, t).toMatchObject({ reason: "unknown_event", eventType: t })
      expect(closeCodeFor(rejection.reason).code).toBe(4003)
    }
  })

  it("rejects bad envelopes as invalid_envelope and oversized frames as event_too_large", () => {
    for (const text of [
      "not-json",
      "[]",
      frame("SUBSCRIBE", {}),
      frame("subscribe", null),
      '{"v":2,"t":"subscribe","d":{}}'
    ]) {
      const rejection = reject(text)
      expect(rejection.reason, text).toBe("invalid_envelope")
      expect(rejection.eventType).toBeUndefined()
      expect(closeCodeFor(rejection.reason).code).toBe(4001)
    }
    const big = frame("message_create", { guild_id: G, channel_id: C, content: "x".repeat(70_000) })
    expect(reject(big).reason).toBe("event_too_large")
    expect(closeCodeFor("event_too_large").code).toBe(1009)
    const subscribe = frame("subscribe", { guild_id: G, channel_id: C })
    const capped = decodeCommand(subscribe, subscribe.length - 1)
    expect(Either.isLeft(capped) && capped.left.reason).toBe("event_too_large")
    expect(Either.isRight(decodeCommand(subscribe, subscribe.length))).toBe(true)
  })

  it(`nesting deeper than MAX_JSON_DEPTH (${MAX_JSON_DEPTH}) anywhere is invalid_envelope, before parsing`, () => {
    const nested = (depth: number) => `${"[".repeat(depth)}${"]".repeat(depth)}`
    // Envelope, d, then the value: a value of depth - 2 levels makes a frame `depth` deep.
    const deep = (depth: number) =>
      `{"v":1,"t":"subscribe","d":{"guild_id":${nested(depth - 2)},"channel_id":"${C}"}}`
    expect(reject(deep(MAX_JSON_DEPTH)).reason).toBe("invalid_subscribe_payload")
    expect(reject(deep(MAX_JSON_DEPTH + 1))).toEqual({
      reason: "invalid_envelope",
      detail: `frame nests deeper than ${MAX_JSON_DEPTH} levels`
    })
    // Brackets inside strings are text, not nesting.
    const brackets = frame("message_create", { guild_id: G, channel_id: C, content: "[".repeat(1000) })
    expect(accept(brackets)).toMatchObject({ _tag: "message_create", content: "[".repeat(1000) })
    for (const text of [
      `{"v":${nested(40_000)},"t":"subscribe","d":{}}`,
      `{"v":1,"t":"message_create","d":{"guild_id":"${G}","channel_id":"${C}","content":${nested(30_000)}}}`,
      // Not JSON at all (unbalanced): refused the same way, without parsing.
      `{"v":1,"t":"subscribe","d":${"{".repeat(60_000)}`
    ])
      expect(decodeCommand(text, 200_000)).toEqual(
        Either.left({
          reason: "invalid_envelope",
          detail: `frame nests deeper than ${MAX_JSON_DEPTH} levels`
        })
      )
  })

  it("a rejection detail is concise: path and message, the value only as a summary", () => {
    const wide = frame("subscribe", { guild_id: Array.from({ length: 20_000 }, () => 1), channel_id: C })
    expect(reject(wide).detail).toBe("d.guild_id: Expected string, actual an array of 20000 items")
    expect(reject(frame("message_create", { guild_id: G, channel_id: C, content: { a: [1] } })).detail).toBe(
      "d.content: Expected string, actual an object"
    )
    expect(reject(frame("subscribe", { guild_id: G })).detail).toBe("d.channel_id: is missing")
    // A union: each alternative in a few words, not the schema spelled out (patterns, brands).
    expect(
      reject(frame("message_create", { guild_id: G, channel_id: C, content: "x", attachment_ids: "nope" }))
        .detail
    ).toBe(
      'd.attachment_ids: Expected an array, actual "nope"; d.attachment_ids: Expected null, actual "nope"; ' +
        'd.attachment_ids: Expected undefined, actual "nope"'
    )
    const long = reject(frame("subscribe", { guild_id: "x".repeat(50_000), channel_id: C })).detail
    expect(long.length).toBeLessThanOrEqual(MAX_ISSUE_PATH_CHARS + 2 + MAX_ISSUE_MESSAGE_CHARS)
    expect(long).not.toContain("Brand<")
  })

  it("every payload and envelope rejection reason is a metric reason with a close code", () => {
    const texts = [
      "nope",
      frame("nope", {}),
      ...COMMANDS.flatMap((command) =>
        COMMAND_VECTORS[command.type].invalid.map((v) => frame(command.type, v.payload))
      )
    ]
    const reasons = new Set(texts.map((text) => reject(text).reason))
    expect([...reasons].sort()).toEqual([...METRIC_REASONS].sort())
    for (const reason of reasons) expect(closeCodeFor(reason).reason).toBe(reason)
  })
})
