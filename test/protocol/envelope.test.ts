/** The `{v,t,d}` envelope (docs/PROTOCOL.md, Envelope) and the original web client's envelope tests. */
import { Either } from "effect"
import { describe, expect, it } from "vitest"
import { decodeCommand } from "../../src/protocol/Commands.js"
import {
  hasDuplicateKeys,
  MAX_EVENT_BYTES,
  parseEnvelope,
  utf8ByteLength
} from "../../src/protocol/Envelope.js"
import { decodeEvent } from "../../src/protocol/Manifest.js"

const both = [{ strict: true }, { strict: false }] as const
const frame = (envelope: unknown) => JSON.stringify(envelope)

const rejection = (text: string, strict: boolean) => {
  const result = parseEnvelope(text, { strict })
  return Either.isLeft(result) ? result.left.reason : "accepted"
}

describe("parseEnvelope", () => {
  it.each(both)("accepts a valid envelope (strict: $strict)", ({ strict }) => {
    expect(parseEnvelope(frame({ v: 1, t: "message_create", d: { a: 1 } }), { strict })).toEqual(
      Either.right({ v: 1, t: "message_create", d: { a: 1 } })
    )
    expect(rejection(frame({ v: 1, t: "a.b_c9", d: {} }), strict)).toBe("accepted")
    expect(rejection(frame({ v: 1, t: "x".repeat(64), d: {} }), strict)).toBe("accepted")
  })

  it.each(both)("rejects the web client's cases (strict: $strict)", ({ strict }) => {
    const cases: ReadonlyArray<[string, string]> = [
      [frame({ v: 2, t: "ready", d: {} }), "invalid_envelope"],
      [frame({ v: "1", t: "ready", d: {} }), "invalid_envelope"],
      [frame({ v: 0, t: "ready", d: {} }), "invalid_envelope"],
      [frame({ v: 1, t: "presence-sync", d: {} }), "invalid_envelope"],
      [frame({ v: 1, t: "INVALID_TYPE", d: {} }), "invalid_envelope"],
      [frame({ v: 1, t: "x".repeat(65), d: {} }), "invalid_envelope"],
      [frame({ v: 1, t: "", d: {} }), "invalid_envelope"],
      [frame({ v: 1, t: 42, d: {} }), "invalid_envelope"],
      [frame({ v: 1, d: {} }), "invalid_envelope"],
      [frame({ v: 1, t: "ready" }), "invalid_envelope"],
      [frame({ t: "ready", d: {} }), "invalid_envelope"],
      [frame({ v: 1, t: "ready", d: null }), "invalid_envelope"],
      [frame({ v: 1, t: "ready", d: [] }), "invalid_envelope"],
      [frame({ v: 1, t: "ready", d: "x" }), "invalid_envelope"],
      [frame([1, "ready", {}]), "invalid_envelope"],
      ["null", "invalid_envelope"],
      ['"text"', "invalid_envelope"],
      ["not-json", "invalid_json"],
      ['{"v":1,"t":"ready","d":{}', "invalid_json"],
      ["", "invalid_json"],
      ["x".repeat(70 * 1024), "oversized"],
      [frame({ v: 1, t: "ready", d: { pad: "x".repeat(70 * 1024) } }), "oversized"]
    ]
    for (const [text, reason] of cases) expect(rejection(text, strict), text.slice(0, 80)).toBe(reason)
  })

  it.each(both)("caps the frame at exactly 65536 UTF-8 bytes (strict: $strict)", ({ strict }) => {
    const padded = (bytes: number, unit: string) => {
      const base = frame({ v: 1, t: "ready", d: { pad: "" } })
      const unitBytes = utf8ByteLength(unit)
      const text = frame({
        v: 1,
        t: "ready",
        d: { pad: unit.repeat(Math.floor((bytes - base.length) / unitBytes)) }
      })
      return text
    }
    const ascii = padded(MAX_EVENT_BYTES, "x")
    expect(utf8ByteLength(ascii)).toBe(MAX_EVENT_BYTES)
    expect(rejection(ascii, strict)).toBe("accepted")
    expect(rejection(padded(MAX_EVENT_BYTES + 1, "x"), strict)).toBe("oversized")
    // Multi-byte text: the byte count, not the string length, is what is capped.
    const euros = padded(MAX_EVENT_BYTES, "€")
    expect(utf8ByteLength(euros)).toBeLessThanOrEqual(MAX_EVENT_BYTES)
    expect(rejection(euros, strict)).toBe("accepted")
    const over = frame({ v: 1, t: "ready", d: { pad: "€".repeat(22_000) } })
    expect(over.length).toBeLessThan(MAX_EVENT_BYTES)
    expect(rejection(over, strict)).toBe("oversized")
  })

  it("ingress rejects unknown top-level keys; client decoding tolerates them", () => {
    const extra = frame({ v: 1, t: "ready", d: {}, trace: "x" })
    expect(rejection(extra, true)).toBe("invalid_envelope")
    expect(parseEnvelope(extra, { strict: false })).toEqual(Either.right({ v: 1, t: "ready", d: {} }))
    const proto = '{"v":1,"t":"ready","d":{},"__proto__":{"polluted":true}}'
    expect(rejection(proto, true)).toBe("invalid_envelope")
    expect(rejection(proto, false)).toBe("accepted")
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
  })

  it("ingress rejects duplicate keys anywhere in the frame; client decoding takes JSON.parse's view", () => {
    const duplicates = [
      '{"v":1,"t":"subscribe","d":{},"d":{}}',
      '{"v":1,"t":"subscribe","d":{"guild_id":"A","guild_id":"B"}}',
      '{"v":1,"t":"x","d":{"a":{"b":1, "b" :2}}}',
      '{"v":1,"t":"x","d":{"list":[{"k":1},{"k":2,"k":3}]}}',
      '{"v":1,"t":"x","d":{"a":1,"\\u0061":2}}',
      '{"v":1,"\\u0076":1,"t":"x","d":{}}'
    ]
    for (const text of duplicates) {
      expect(hasDuplicateKeys(text), text).toBe(true)
      expect(rejection(text, true), text).toBe("invalid_envelope")
    }
    expect(rejection(duplicates[1]!, false)).toBe("accepted")
    const distinct = [
      '{"v":1,"t":"x","d":{"a":{"a":1},"b":[{"a":1},{"a":2}]}}',
      '{"v":1,"t":"x","d":{"s":"\\"a\\":1,\\"a\\":2","a":"{\\"a\\":1}"}}',
      '{"v":1,"t":"x","d":{"a":"a","b":["a","a"]}}',
      '{ "v" : 1 , "t" : "x" , "d" : { "A" : 1 , "a" : 2 } }'
    ]
    for (const text of distinct) {
      expect(hasDuplicateKeys(text), text).toBe(false)
      expect(rejection(text, true), text).toBe("accepted")
    }
  })

  it("keeps an own __proto__ key of d visible to the payload decoders", () => {
    const result = parseEnvelope('{"v":1,"t":"subscribe","d":{"__proto__":{"guild_id":"x"}}}', {
      strict: true
    })
    const d = Either.getOrThrow(result).d
    expect(Object.keys(d)).toEqual(["__proto__"])
    expect(Object.getPrototypeOf(d)).toBe(Object.prototype)
  })

  it("accepts prototype-chain names as envelope types, which then resolve to no event or command", () => {
    for (const t of ["__proto__", "constructor", "tostring", "hasownproperty"]) {
      const text = frame({ v: 1, t, d: {} })
      expect(rejection(text, true)).toBe("accepted")
      const event = decodeEvent(t, {}, { strict: false })
      expect(Either.isLeft(event) && event.left.reason).toBe("unknown_event")
      const command = decodeCommand(text)
      expect(Either.isLeft(command) && command.left.reason).toBe("unknown_event")
    }
  })

  it("utf8ByteLength counts UTF-8 bytes, including surrogate pairs and lone surrogates", () => {
    for (const text of ["", "abc", "é", "€", "😀", "a😀é€", "\ud800", "\udc00x", "\ud800\ud800"]) {
      expect(utf8ByteLength(text), JSON.stringify(text)).toBe(new TextEncoder().encode(text).length)
    }
  })
})
