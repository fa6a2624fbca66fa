/**
 * Connection outbox and fanout, in-process: the socket and transport are recording stand-ins for
 * the OS socket whose buffered byte count the test controls; the outbox, eviction and flush logic
 * under test is the product's.
 */
import { describe, expect, it } from "@effect/vitest"
import { Either, MutableQueue, Schema } from "effect"
import { defineEvent } from "../../src/protocol/EventDefinition.js"
import type { UserId } from "../../src/protocol/Ids.js"
import { Connection, type DisconnectReason } from "../../src/server/core/Connection.js"
import * as Fanout from "../../src/server/core/Fanout.js"
import { make as makeMetrics } from "../../src/server/Metrics.js"
import { encode, type Frame } from "../../src/server/core/Outbound.js"
import { recordingPeer } from "./harness.js"

const Tick = defineEvent({
  type: "test_tick",
  version: 1,
  scope: "channel",
  description: "test",
  payload: Schema.Struct({ n: Schema.Number })
})

const frame = (n: number): Frame => Either.getOrThrow(encode(Tick, { n }, 65_536))

const connect = (outboundQueue: number, disconnects: Array<DisconnectReason>) => {
  const { peer, socket, transport } = recordingPeer()
  const connection = new Connection(
    1,
    { userId: "U" as UserId, expiresAt: Infinity, guilds: new Map() },
    socket,
    transport,
    { outboundQueue, socketHighWaterBytes: 100, ingressEventsPerWindow: 60, ingressWindowMillis: 10_000 },
    0,
    (_connection, reason) => disconnects.push(reason)
  )
  return { connection, peer }
}

const sentTicks = (written: ReadonlyArray<Buffer>) =>
  written.map((wire) => JSON.parse(wire.subarray(2).toString()).d.n as number)

describe("Connection outbox", () => {
  it("writes through while under the high-water mark, queues above it, flushes in order on drain", () => {
    const disconnects: Array<DisconnectReason> = []
    const { connection, peer } = connect(4, disconnects)
    const results = [0, 1, 2, 3, 4].map((n) => connection.deliver(frame(n)))
    // Each frame is ~40 bytes: two fit under 100, the rest wait in the outbox.
    expect(results.filter((result) => result === "sent").length).toBeGreaterThan(0)
    expect(results.slice(results.indexOf("queued"))).toEqual(
      results.slice(results.indexOf("queued")).map(() => "queued")
    )
    const queued = MutableQueue.length(connection.outbox)
    expect(sentTicks(peer.written)).toEqual([0, 1, 2, 3, 4].slice(0, 5 - queued))
    peer.drained()
    peer.drained()
    peer.drained()
    expect(sentTicks(peer.written)).toEqual([0, 1, 2, 3, 4])
    expect(MutableQueue.length(connection.outbox)).toBe(0)
    expect(disconnects).toEqual([])
  })

  it("a full outbox evicts that connection alone with 1008 slow_consumer and releases the queue", () => {
    const disconnects: Array<DisconnectReason> = []
    const { connection, peer } = connect(2, disconnects)
    const results: Array<string> = []
    for (let n = 0; n < 10 && connection.isOpen; n++) results.push(connection.deliver(frame(n)))
    expect(results.at(-1)).toBe("evicted")
    expect(results.filter((result) => result === "queued")).toHaveLength(2)
    expect(peer.closes).toEqual([[1008, "slow_consumer"]])
    expect(disconnects).toEqual(["slow_consumer"])
    expect(MutableQueue.length(connection.outbox)).toBe(0)
    expect(connection.deliver(frame(99))).toBe("closed")
  })
})

describe("Fanout", () => {
  it("one loop: healthy recipients keep receiving in order while a full one is evicted; metrics per broadcast", () => {
    const disconnects: Array<DisconnectReason> = []
    const slow = connect(1, disconnects)
    const healthy = connect(1000, disconnects)
    const metrics = makeMetrics()
    for (let n = 0; n < 6; n++) {
      Fanout.broadcast(metrics, frame(n), [slow.connection, healthy.connection])
      healthy.peer.drained()
    }
    expect(slow.connection.disconnectReason).toBe("slow_consumer")
    expect(disconnects).toEqual(["slow_consumer"])
    expect(sentTicks(healthy.peer.written)).toEqual([0, 1, 2, 3, 4, 5])
    const result = Fanout.deliver(frame(6), [slow.connection, healthy.connection])
    expect(result).toEqual({ delivered: 1, evicted: 0, closed: 1 })
  })
})
