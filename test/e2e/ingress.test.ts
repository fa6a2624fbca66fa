/**
 * Ingress rejections over real sockets (docs/PROTOCOL.md, Invalid input; after the original
 * gateway's rejection-counter test): each asserts the close code, the reason and the metric delta.
 */
import { describe, expect, it } from "@effect/vitest"
import { createServer, type IncomingMessage } from "node:http"
import type { AddressInfo, Socket } from "node:net"
import { Duration, Effect, TestClock } from "effect"
import WebSocket from "ws"
import { eventually } from "../deadline.js"
import { newId, startGateway, type Harness } from "../server/harness.js"

const rejection = (
  harness: Harness,
  frame: string | Buffer,
  expected: { readonly code: number; readonly reason: string },
  counter: { readonly name: string; readonly labels: Readonly<Record<string, string>> }
) =>
  Effect.gen(function* () {
    const client = yield* harness.connectReady(newId())
    const counted = yield* harness.metric(counter.name, counter.labels)
    const disconnects = yield* harness.metric("filament_ws_disconnects_total", { reason: expected.reason })
    client.socket.send(frame)
    expect(yield* client.waitClosed()).toEqual(expected)
    expect(yield* harness.metric(counter.name, counter.labels)).toBe(counted + 1)
    expect(yield* harness.metric("filament_ws_disconnects_total", { reason: expected.reason })).toBe(
      disconnects + 1
    )
  })

describe("ingress rejections", () => {
  it.scoped("not JSON -> 4001 invalid_envelope", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway()
      yield* rejection(
        harness,
        "not-json",
        { code: 4001, reason: "invalid_envelope" },
        {
          name: "filament_gateway_events_parse_rejected_total",
          labels: { scope: "ingress", reason: "invalid_envelope" }
        }
      )
      // Strict envelope: an unknown top-level key is an invalid envelope too.
      yield* rejection(
        harness,
        JSON.stringify({ v: 1, t: "subscribe", d: {}, x: 1 }),
        { code: 4001, reason: "invalid_envelope" },
        {
          name: "filament_gateway_events_parse_rejected_total",
          labels: { scope: "ingress", reason: "invalid_envelope" }
        }
      )
    })
  )

  it.scoped("unknown command -> 4003 unknown_event, label bounded to known names or `other`", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway()
      yield* rejection(
        harness,
        JSON.stringify({ v: 1, t: "unknown_ingress_event", d: {} }),
        { code: 4003, reason: "unknown_event" },
        {
          name: "filament_gateway_events_unknown_received_total",
          labels: { scope: "ingress", event_type: "other" }
        }
      )
      yield* rejection(
        harness,
        JSON.stringify({ v: 1, t: "presence_sync", d: {} }),
        { code: 4003, reason: "unknown_event" },
        {
          name: "filament_gateway_events_unknown_received_total",
          labels: { scope: "ingress", event_type: "presence_sync" }
        }
      )
      expect(yield* harness.metrics()).not.toContain('event_type="unknown_ingress_event"')
    })
  )

  it.scoped("bad subscribe payload -> 4002 invalid_subscribe_payload", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway()
      yield* rejection(
        harness,
        JSON.stringify({ v: 1, t: "subscribe", d: { guild_id: "not-a-ulid", channel_id: newId() } }),
        { code: 4002, reason: "invalid_subscribe_payload" },
        {
          name: "filament_gateway_events_parse_rejected_total",
          labels: { scope: "ingress", reason: "invalid_subscribe_payload" }
        }
      )
    })
  )

  it.scoped("bad message_create payload -> 4002 invalid_message_create_payload", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway()
      yield* rejection(
        harness,
        JSON.stringify({
          v: 1,
          t: "message_create",
          d: { guild_id: "bad", channel_id: newId(), content: "x" }
        }),
        { code: 4002, reason: "invalid_message_create_payload" },
        {
          name: "filament_gateway_events_parse_rejected_total",
          labels: { scope: "ingress", reason: "invalid_message_create_payload" }
        }
      )
    })
  )

  it.scoped("binary frames are parsed as JSON text; invalid UTF-8 is an invalid envelope", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway()
      const [user, guild, channel] = [newId(), newId(), newId()]
      const client = yield* harness.connectReady(user, { [guild]: [channel] })
      client.socket.send(
        Buffer.from(JSON.stringify({ v: 1, t: "subscribe", d: { guild_id: guild, channel_id: channel } }))
      )
      expect((yield* client.nextOfType("subscribed")).d).toEqual({ guild_id: guild, channel_id: channel })
      yield* rejection(
        harness,
        Buffer.from([0x7b, 0xff, 0xfe, 0x7d]),
        { code: 4001, reason: "invalid_envelope" },
        {
          name: "filament_gateway_events_parse_rejected_total",
          labels: { scope: "ingress", reason: "invalid_envelope" }
        }
      )
    })
  )

  it.scoped("a frame over the cap is refused by ws maxPayload: close 1009, counted as event_too_large", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway({ maxEventBytes: 1024 })
      const client = yield* harness.connectReady(newId())
      const before = yield* harness.metric("filament_ws_disconnects_total", { reason: "event_too_large" })
      client.send(JSON.stringify({ v: 1, t: "subscribe", d: { pad: "x".repeat(1100) } }))
      expect(yield* client.waitClosed()).toEqual({ code: 1009, reason: "event_too_large" })
      expect(yield* harness.metric("filament_ws_disconnects_total", { reason: "event_too_large" })).toBe(
        before + 1
      )
    })
  )
})

describe("ingress rate window (sliding log)", () => {
  const window = Duration.seconds(10)
  const limit = 3

  const fill = (harness: Harness) =>
    Effect.gen(function* () {
      const [user, guild] = [newId(), newId()]
      const client = yield* harness.connectReady(user, { [guild]: "*" })
      for (let i = 0; i < limit; i++) yield* client.subscribe(guild, newId())
      return { client, guild }
    })

  it.scoped("a frame exactly one window after the oldest still counts: 4008 ingress_rate_limited", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway({ ingressEventsPerWindow: limit, ingressWindow: window })
      const { client, guild } = yield* fill(harness)
      const before = yield* harness.metric("filament_ws_disconnects_total", {
        reason: "ingress_rate_limited"
      })
      const hits = () =>
        harness.metric("filament_rate_limit_hits_total", {
          surface: "ingress",
          reason: "ingress_rate_limited"
        })
      const hits0 = yield* hits()
      yield* TestClock.adjust(window)
      client.send({ v: 1, t: "subscribe", d: { guild_id: guild, channel_id: newId() } })
      expect(yield* client.waitClosed()).toEqual({ code: 4008, reason: "ingress_rate_limited" })
      expect(yield* harness.metric("filament_ws_disconnects_total", { reason: "ingress_rate_limited" })).toBe(
        before + 1
      )
      expect(yield* hits()).toBe(hits0 + 1)
    })
  )

  it.scoped("one millisecond later the oldest frame has left the window: accepted", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway({ ingressEventsPerWindow: limit, ingressWindow: window })
      const { client, guild } = yield* fill(harness)
      yield* TestClock.adjust(Duration.sum(window, Duration.millis(1)))
      expect((yield* client.subscribe(guild, newId())).t).toBe("subscribed")
      expect(client.closed).toBeUndefined()
    })
  )

  it.scoped("malformed frames count toward the window (counted before parsing)", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway({ ingressEventsPerWindow: 1, ingressWindow: window })
      const [user, guild, channel] = [newId(), newId(), newId()]
      const client = yield* harness.connectReady(user, { [guild]: "*" })
      yield* client.subscribe(guild, channel)
      client.send("not-json")
      expect(yield* client.waitClosed()).toEqual({ code: 4008, reason: "ingress_rate_limited" })
    })
  )
})

describe("subscription cap", () => {
  it.scoped("over the per-connection cap the subscribe is refused, counted, connection kept", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway({ maxSubscriptionsPerConnection: 2 })
      const [user, guild] = [newId(), newId()]
      const client = yield* harness.connectReady(user, { [guild]: "*" })
      const [a, b] = [newId(), newId()]
      yield* client.subscribe(guild, a)
      yield* client.subscribe(guild, b)
      const before = yield* harness.metric("filament_gateway_subscribe_rejected_total", {
        reason: "subscription_limit"
      })
      client.send({ v: 1, t: "subscribe", d: { guild_id: guild, channel_id: newId() } })
      // Re-subscribing a held channel is idempotent and still acked, proving the refused one was skipped.
      expect((yield* client.subscribe(guild, a)).d).toEqual({ guild_id: guild, channel_id: a })
      expect(
        yield* harness.metric("filament_gateway_subscribe_rejected_total", { reason: "subscription_limit" })
      ).toBe(before + 1)
      expect(client.closed).toBeUndefined()
    })
  )
})

/** How corked `socket` is at each write from now on (one writev: every write corked). */
const recordCorking = (socket: Socket): Array<number> => {
  const corkedAtWrite: Array<number> = []
  const write = socket.write.bind(socket) as (chunk: Buffer | string) => boolean
  socket.write = ((chunk: Buffer | string) => {
    corkedAtWrite.push(socket.writableCorked)
    return write(chunk)
  }) as typeof socket.write
  return corkedAtWrite
}

describe("writes per connection", () => {
  it.scoped("the 101 response and `ready` are written while the socket is corked: one writev", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway()
      const token = yield* harness.token({ userId: newId() })
      // A server of the test's own hands each upgrade to the gateway: the socket is seen before ws.
      let upgraded: { socket: Socket; corkedAtWrite: Array<number> } | undefined
      const server = createServer()
      server.on("upgrade", (request: IncomingMessage, socket: Socket, head: Buffer) => {
        upgraded = { socket, corkedAtWrite: recordCorking(socket) }
        harness.gateway.handleUpgrade(request, socket, head)
      })
      yield* Effect.acquireRelease(
        Effect.async<void>((resume) => void server.listen(0, "127.0.0.1", () => resume(Effect.void))),
        () => Effect.sync(() => server.close())
      )
      const { port } = server.address() as AddressInfo
      const frames: Array<string> = []
      const client = new WebSocket(`ws://127.0.0.1:${port}/gateway/ws?access_token=${token}`)
      client.on("message", (data) => frames.push(String(data)))
      yield* Effect.addFinalizer(() => Effect.sync(() => client.terminate()))
      yield* eventually("ready", () => frames.length === 1)
      expect(JSON.parse(frames[0]!).t).toBe("ready")
      // The 101 response (ws writes it whole), then `ready`.
      expect(upgraded!.corkedAtWrite).toHaveLength(2)
      expect(upgraded!.corkedAtWrite.every((corked) => corked > 0)).toBe(true)
      expect(upgraded!.socket.writableCorked).toBe(0)
    })
  )

  it.scoped(
    "the answers to the commands of one read are written while the socket is corked: one writev",
    () =>
      Effect.gen(function* () {
        const harness = yield* startGateway()
        const [user, guild] = [newId(), newId()]
        const client = yield* harness.connectReady(user, { [guild]: "*" })
        const [connection] = yield* harness.serverConnections(user)
        // The server's own TCP socket.
        const socket = connection!.transport as Socket
        const corkedAtWrite = recordCorking(socket)
        for (let i = 0; i < 4; i++)
          client.send({ v: 1, t: "subscribe", d: { guild_id: guild, channel_id: newId() } })
        yield* eventually(
          "four acks",
          () => client.frames.filter((frame) => frame.t === "subscribed").length === 4
        )
        expect(corkedAtWrite).toHaveLength(4)
        expect(corkedAtWrite.every((corked) => corked > 0)).toBe(true)
        // Uncorked once the tick is over: nothing waits for a later write.
        expect(socket.writableCorked).toBe(0)
      })
  )
})
