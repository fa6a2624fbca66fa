/** Outbound: one complete text frame per broadcast, decodable by a real ws receiver at every length class. */
import { describe, expect, it } from "@effect/vitest"
import { Either, Schema } from "effect"
import type { Writable } from "node:stream"
import * as ws from "ws"
import { defineEvent } from "../../src/protocol/EventDefinition.js"
import { Ready } from "../../src/protocol/events/connection.js"
import type { UserId } from "../../src/protocol/Ids.js"
import { batch, encode, textFrame } from "../../src/server/core/Outbound.js"

// ws exports its frame parser, but @types/ws does not declare it.
const { Receiver } = ws as unknown as {
  Receiver: new (options: { isServer: boolean; maxPayload: number }) => Writable
}

const decodeFrames = (wire: Buffer): Promise<Array<string>> =>
  new Promise((resolve, reject) => {
    const receiver = new Receiver({ isServer: false, maxPayload: 0 })
    const messages: Array<string> = []
    receiver.on("message", (data: Buffer, isBinary: boolean) => {
      expect(isBinary).toBe(false)
      messages.push(data.toString("utf8"))
    })
    receiver.on("error", reject)
    receiver.write(wire, () => resolve(messages))
  })

const Blob = defineEvent({
  type: "test_blob",
  version: 1,
  scope: "channel",
  description: "test",
  payload: Schema.Struct({ text: Schema.String })
})

describe("Outbound", () => {
  it("frames decode with ws's own receiver for 7-bit, 16-bit and 64-bit lengths, multibyte text included", async () => {
    for (const length of [0, 125, 126, 65_535, 65_536, 70_000]) {
      const text = "é".repeat(Math.floor(length / 2)) + "x".repeat(length % 2)
      expect(Buffer.byteLength(text)).toBe(length)
      expect(await decodeFrames(textFrame(text))).toEqual([text])
    }
  })

  it("encodes the envelope once: compact JSON, v/t/d order, byte count checked against the cap", async () => {
    const frame = Either.getOrThrow(
      encode(Ready, { user_id: "01HZY0K4W8Q1Z9X2V3T4R5S6P7" as UserId }, 65_536)
    )
    const text = '{"v":1,"t":"ready","d":{"user_id":"01HZY0K4W8Q1Z9X2V3T4R5S6P7"}}'
    expect(frame).toMatchObject({ eventType: "ready", scope: "connection", bytes: text.length })
    expect(await decodeFrames(frame.wire)).toEqual([text])
    const oversized = encode(Blob, { text: "é".repeat(100) }, 200)
    expect(Either.isLeft(oversized) && oversized.left).toMatchObject({
      _tag: "OversizedOutbound",
      reason: "oversized_outbound",
      maxBytes: 200
    })
  })

  it("a payload that does not encode with its schema is a SerializeError, never a frame", () => {
    const result = encode(Ready, { user_id: "not-a-ulid" as UserId }, 65_536)
    expect(Either.isLeft(result) && result.left).toMatchObject({
      _tag: "SerializeError",
      reason: "serialize_error"
    })
    const badType = encode({ ...Blob, type: "Bad-Type" }, { text: "x" }, 65_536)
    expect(Either.isLeft(badType) && badType.left._tag).toBe("SerializeError")
  })

  it("a batch is its frames back to back: one buffer, each frame decoded on its own, in order, counted as its events", async () => {
    const texts = ["a", "é".repeat(100), "x".repeat(70_000)]
    const frames = texts.map((text) => Either.getOrThrow(encode(Blob, { text }, 100_000)))
    const batched = batch(frames)
    expect(batched).toMatchObject({
      eventType: "test_blob",
      scope: "channel",
      bytes: frames.reduce((sum, frame) => sum + frame.bytes, 0),
      events: 3
    })
    expect(await decodeFrames(batched.wire)).toEqual(
      frames.map((frame) => frame.wire.subarray(frame.wire.length - frame.bytes).toString())
    )
    // One frame is no batch: the same object.
    expect(batch([frames[0]!])).toBe(frames[0])
  })
})
