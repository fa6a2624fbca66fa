/**
 * Frames that break RFC 6455, written by hand on a raw TCP socket (ws refuses them itself, before
 * the gateway sees a message): each closes with its documented code and a non-empty reason, and
 * counts one disconnect under that reason, never `socket_error`.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { closeCodeFor, type CloseReason } from "../../src/protocol/CloseCodes.js"
import { newId, seriesValue, startGateway } from "../server/harness.js"
import { encodeFrame, familySum, rawWebSocket } from "./support.js"

const TEXT = 0x1
const BINARY = 0x2
const CLOSE = 0x8
const PING = 0x9
const CONTINUATION = 0x0

const bytes = (count: number) => new Uint8Array(count).fill(0x61)
const closePayload = (code: number) => Uint8Array.from([code >> 8, code & 0xff])
const ENVELOPE = new TextEncoder().encode('{"v":1,"t":"unsubscribe","d":{}}')

/** 70 000 one-byte fragments of one text message: a first frame, then continuations. */
const fragmentFlood = Buffer.concat(
  Array.from({ length: 70_000 }, (_, i) =>
    encodeFrame({ opcode: i === 0 ? TEXT : CONTINUATION, fin: false, payload: bytes(1) })
  )
)

const CASES: ReadonlyArray<readonly [string, ReadonlyArray<Buffer>, CloseReason]> = [
  ["control frame over 125 bytes", [encodeFrame({ opcode: PING, payload: bytes(126) })], "protocol_error"],
  ["unmasked frame", [encodeFrame({ opcode: TEXT, payload: ENVELOPE, masked: false })], "protocol_error"],
  ["reserved opcode 0x3", [encodeFrame({ opcode: 0x3, payload: bytes(1) })], "protocol_error"],
  ["reserved control opcode 0xB", [encodeFrame({ opcode: 0xb })], "protocol_error"],
  [
    "RSV1 without a negotiated extension",
    [encodeFrame({ opcode: TEXT, payload: ENVELOPE, rsv: 4 })],
    "protocol_error"
  ],
  ["RSV2 and RSV3", [encodeFrame({ opcode: TEXT, payload: ENVELOPE, rsv: 3 })], "protocol_error"],
  [
    "continuation without a message",
    [encodeFrame({ opcode: CONTINUATION, payload: bytes(1) })],
    "protocol_error"
  ],
  [
    "a new message inside a fragmented one",
    [
      encodeFrame({ opcode: TEXT, fin: false, payload: bytes(1) }),
      encodeFrame({ opcode: BINARY, payload: bytes(1) })
    ],
    "protocol_error"
  ],
  ["fragmented control frame", [encodeFrame({ opcode: PING, fin: false })], "protocol_error"],
  [
    "close frame with a one-byte payload",
    [encodeFrame({ opcode: CLOSE, payload: bytes(1) })],
    "protocol_error"
  ],
  [
    "close frame with code 1005",
    [encodeFrame({ opcode: CLOSE, payload: closePayload(1005) })],
    "protocol_error"
  ],
  [
    "close frame with code 999",
    [encodeFrame({ opcode: CLOSE, payload: closePayload(999) })],
    "protocol_error"
  ],
  [
    "text frame that is not UTF-8",
    [encodeFrame({ opcode: TEXT, payload: Uint8Array.from([0x7b, 0xc0, 0xaf, 0x7d]) })],
    "invalid_envelope"
  ],
  [
    "close frame whose reason is not UTF-8",
    [encodeFrame({ opcode: CLOSE, payload: Uint8Array.from([0x03, 0xe8, 0xc0, 0xaf]) })],
    "invalid_envelope"
  ],
  ["70 000 one-byte fragments", [fragmentFlood], "too_many_fragments"],
  [
    "a header claiming 2^62 bytes",
    [encodeFrame({ opcode: TEXT, claimedLength: 2n ** 62n })],
    "event_too_large"
  ],
  [
    "a header claiming the cap + 1",
    [encodeFrame({ opcode: BINARY, claimedLength: 65_537n })],
    "event_too_large"
  ]
]

describe("protocol errors", () => {
  it.scoped("each refused frame: documented code, its reason, one disconnect under that reason", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway()
      for (const [label, frames, reason] of CASES) {
        const token = yield* harness.token({ userId: newId() })
        const before = yield* harness.metrics()
        const session = yield* rawWebSocket(harness.port, token, frames)
        const after = yield* harness.metrics()
        expect(JSON.parse(session.texts[0]!).t, label).toBe("ready")
        expect(session.close, label).toEqual({ code: closeCodeFor(reason).code, reason })
        const disconnects = (text: string) => seriesValue(text, "filament_ws_disconnects_total", { reason })
        expect(disconnects(after), label).toBe(disconnects(before) + 1)
        expect(familySum(after, "filament_ws_disconnects_total"), label).toBe(
          familySum(before, "filament_ws_disconnects_total") + 1
        )
        const parseRejected = (text: string) =>
          seriesValue(text, "filament_gateway_events_parse_rejected_total", {
            scope: "ingress",
            reason: "invalid_envelope"
          })
        expect(parseRejected(after) - parseRejected(before), label).toBe(
          reason === "invalid_envelope" ? 1 : 0
        )
      }
      expect((yield* harness.http("/healthz")).status).toBe(200)
    })
  )
})
