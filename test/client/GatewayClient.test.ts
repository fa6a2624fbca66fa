import { describe, expect, expectTypeOf, it } from "@effect/vitest"
import * as fc from "fast-check"
import { WebSocket } from "ws"
import * as GatewayClient from "../../src/client/GatewayClient.js"
import type { FrameDropped } from "../../src/client/Decode.js"
import { withPeer } from "./peer.js"
import type { TestPeer } from "./peer.js"

const GUILD = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
const CHANNEL_A = "01ARZ3NDEKTSV4RRFFQ69G5FAW"
const CHANNEL_B = "01ARZ3NDEKTSV4RRFFQ69G5FAX"
const CHANNEL_C = "01ARZ3NDEKTSV4RRFFQ69G5FAY"
const USER = "01ARZ3NDEKTSV4RRFFQ69G5FAZ"

const subscribeFrame = (channel: string) => ({
  v: 1,
  t: "subscribe",
  d: { guild_id: GUILD, channel_id: channel }
})

/** A timer the test fires by hand: records every scheduled delay and tells the peer to re-check. */
const manualTimer = (peer: TestPeer) => {
  const pending: Array<{ readonly delayMs: number; readonly run: () => void; cancelled: boolean }> = []
  return {
    pending,
    timer: {
      schedule: (run: () => void, delayMs: number) => {
        const entry = { delayMs, run, cancelled: false }
        pending.push(entry)
        peer.notify()
        return () => {
          entry.cancelled = true
        }
      }
    } satisfies GatewayClient.Timer,
    fire: () => {
      const entry = pending.shift()
      if (entry === undefined || entry.cancelled) throw new Error("no pending reconnect to fire")
      entry.run()
    }
  }
}

/** A client of `peer` over the ws WebSocket, with the token "token" unless `options` bring a provider. */
const clientOf = (peer: TestPeer, options: Partial<GatewayClient.GatewayClientOptions> = {}) =>
  GatewayClient.make({ url: peer.url, WebSocket, accessToken: () => "token", ...options })

describe("GatewayClient (callbacks, real ws peer)", () => {
  it("subscribes every channel of its set on open and on every reconnect, deduplicated", () =>
    withPeer(async (peer) => {
      const clock = manualTimer(peer)
      const openStates: Array<boolean> = []
      const client = clientOf(peer, {
        // The same channel twice (once lowercase) is one subscription.
        channels: [
          { guild_id: GUILD, channel_id: CHANNEL_A },
          { guild_id: GUILD.toLowerCase(), channel_id: CHANNEL_A.toLowerCase() },
          { guild_id: GUILD, channel_id: CHANNEL_B }
        ],
        timer: clock.timer,
        random: () => 0.5,
        onOpenChange: (open) => openStates.push(open)
      })
      try {
        const first = await peer.waitFor("first connection with 2 frames", () => {
          const connection = peer.connections[0]
          return connection !== undefined && connection.frames.length >= 2 && connection
        })
        expect(first.frames).toEqual([subscribeFrame(CHANNEL_A), subscribeFrame(CHANNEL_B)])
        expect(client.isOpen()).toBe(true)

        client.subscribe(GUILD, CHANNEL_C)
        client.subscribe(GUILD, CHANNEL_C.toLowerCase())
        await peer.waitFor("subscribe C", () => first.frames.length >= 3)

        first.close(1001, "going_away")
        await peer.waitFor("reconnect scheduled", () => clock.pending.length === 1)
        expect(client.state()).toBe("reconnecting")
        clock.fire()
        const second = await peer.waitFor("second connection with 3 frames", () => {
          const connection = peer.connections[1]
          return connection !== undefined && connection.frames.length >= 3 && connection
        })
        expect(second.frames).toEqual([
          subscribeFrame(CHANNEL_A),
          subscribeFrame(CHANNEL_B),
          subscribeFrame(CHANNEL_C)
        ])
        expect(first.frames).toEqual([
          subscribeFrame(CHANNEL_A),
          subscribeFrame(CHANNEL_B),
          subscribeFrame(CHANNEL_C)
        ])
        expect(openStates).toEqual([true, false, true])
      } finally {
        client.close()
      }
    }))

  it("calls the token provider again after 4010 and connects with the fresh token", () =>
    withPeer(async (peer) => {
      const clock = manualTimer(peer)
      const requests: Array<GatewayClient.TokenRequest> = []
      const client = clientOf(peer, {
        accessToken: async (request) => {
          requests.push(request)
          return `token-${requests.length}`
        },
        timer: clock.timer,
        random: () => 0
      })
      try {
        const first = await peer.waitFor("first connection", () => peer.connections[0])
        expect(first.token).toBe("token-1")
        first.close(4010, "token_expired")
        await peer.waitFor("reconnect scheduled", () => clock.pending.length === 1)
        clock.fire()
        const second = await peer.waitFor("second connection", () => peer.connections[1])
        expect(second.token).toBe("token-2")
        expect(requests).toEqual([
          { refresh: false, retry: 0 },
          { refresh: true, retry: 1 }
        ])
      } finally {
        client.close()
      }
    }))

  it("does not reconnect after a 1000 close", () =>
    withPeer(async (peer) => {
      const clock = manualTimer(peer)
      const closes: Array<GatewayClient.CloseInfo> = []
      const client = clientOf(peer, {
        timer: clock.timer,
        onOpenChange: peer.notify,
        onClose: (close) => {
          closes.push(close)
          peer.notify()
        }
      })
      const first = await peer.waitFor("first connection", () => peer.connections[0])
      await peer.waitFor("client open", () => client.isOpen())
      first.close(1000, "normal")
      await peer.waitFor("client closed", () => client.state() === "closed")
      expect(closes).toEqual([{ code: 1000, reason: "normal", reconnect: false }])
      expect(clock.pending).toEqual([])
      expect(client.isOpen()).toBe(false)
    }))

  it("backs off with full jitter while attempts fail before open, and resets after an open", () =>
    withPeer(async (peer) => {
      const clock = manualTimer(peer)
      const closes: Array<GatewayClient.CloseInfo> = []
      const client = clientOf(peer, {
        timer: clock.timer,
        random: () => 0.999,
        onOpenChange: peer.notify,
        onClose: (close) => closes.push(close)
      })
      try {
        await peer.waitFor("first connection", () => peer.connections[0])
        peer.refuse = true
        peer.connections[0]!.close(1011, "internal_error")
        await peer.waitFor("first reconnect scheduled", () => clock.pending.length === 1)
        for (let refusals = 1; refusals <= 6; refusals++) {
          clock.fire()
          await peer.waitFor(`refusal ${refusals} scheduled`, () => clock.pending.length === 1)
        }
        expect(peer.refused).toBe(6)
        // Ceilings 2 s, 4 s, ... capped at 30 s; 0.999 of each, floored.
        expect(closes.map((close) => close.delayMs)).toEqual([1998, 3996, 7992, 15984, 29970, 29970, 29970])
        expect(closes.every((close) => close.reconnect)).toBe(true)

        peer.refuse = false
        clock.fire()
        const second = await peer.waitFor("second connection", () => peer.connections[1])
        await peer.waitFor("client open", () => client.isOpen())
        second.close(1011, "internal_error")
        await peer.waitFor("reconnect scheduled after open", () => clock.pending.length === 1)
        expect(closes.at(-1)).toEqual({
          code: 1011,
          reason: "internal_error",
          reconnect: true,
          delayMs: 1998
        })
      } finally {
        client.close()
      }
    }))

  it("ignores binary frames, drops invalid ones and keeps dispatching later valid ones", () =>
    withPeer(async (peer) => {
      const ready: Array<string> = []
      const drops: Array<FrameDropped> = []
      const client = clientOf(peer, {
        on: {
          ready: (payload) => {
            ready.push(payload.user_id)
            peer.notify()
          }
        },
        onDrop: (dropped) => drops.push(dropped)
      })
      try {
        const connection = await peer.waitFor("connection", () => peer.connections[0])
        connection.socket.send(Buffer.from(JSON.stringify({ v: 1, t: "ready", d: { user_id: USER } })))
        connection.send({ v: 1, t: "ready", d: { user_id: "not-a-ulid" } })
        connection.send({ v: 1, t: "__proto__", d: {} })
        connection.send("x".repeat(70 * 1024))
        connection.send({ v: 1, t: "ready", d: { user_id: USER, added_later: true } })
        await peer.waitFor("ready dispatched", () => ready.length === 1)
        expect(ready).toEqual([USER])
        expect(drops.map((dropped) => [dropped.reason, dropped.eventType])).toEqual([
          ["invalid_payload", "ready"],
          ["unknown_event", "__proto__"],
          ["oversized", undefined]
        ])
      } finally {
        client.close()
      }
    }))

  it("sends unsubscribe, diffs setSubscribedChannels, sends messages and closes with 1000 client_close", () =>
    withPeer(async (peer) => {
      const closes: Array<GatewayClient.CloseInfo> = []
      const client = clientOf(peer, {
        channels: [{ guild_id: GUILD, channel_id: CHANNEL_A }],
        onOpenChange: peer.notify,
        onClose: (close) => {
          closes.push(close)
          peer.notify()
        }
      })
      const connection = await peer.waitFor("connection", () => peer.connections[0])
      await peer.waitFor("open", () => client.isOpen())
      client.setSubscribedChannels([
        { guild_id: GUILD, channel_id: CHANNEL_B },
        { guild_id: GUILD, channel_id: CHANNEL_A },
        { guild_id: GUILD, channel_id: CHANNEL_B }
      ])
      client.unsubscribe(GUILD, CHANNEL_A)
      expect(client.sendMessage(GUILD, CHANNEL_B, "hello")).toBe(true)
      expect(() => client.sendMessage(GUILD, CHANNEL_B, "")).toThrow(GatewayClient.GatewayClientError)
      expect(() => client.subscribe("nope", CHANNEL_B)).toThrow(/ULID/)
      await peer.waitFor("4 frames", () => connection.frames.length >= 4)
      expect(connection.frames).toEqual([
        subscribeFrame(CHANNEL_A),
        subscribeFrame(CHANNEL_B),
        { v: 1, t: "unsubscribe", d: { guild_id: GUILD, channel_id: CHANNEL_A } },
        {
          v: 1,
          t: "message_create",
          d: { guild_id: GUILD, channel_id: CHANNEL_B, content: "hello", attachment_ids: [] }
        }
      ])
      expect(client.subscribedChannels()).toEqual([{ guild_id: GUILD, channel_id: CHANNEL_B }])
      client.close()
      await peer.waitFor("peer saw the close", () => connection.closed)
      expect(connection.closed).toEqual({ code: 1000, reason: "client_close" })
      await peer.waitFor("client closed", () => closes.length === 1)
      expect(closes).toEqual([{ code: 1000, reason: "client_close", reconnect: false }])
      expect(client.sendMessage(GUILD, CHANNEL_B, "late")).toBe(false)
    }))

  it("reports a throwing handler and keeps dispatching", () =>
    withPeer(async (peer) => {
      const errors: Array<unknown> = []
      const ready: Array<string> = []
      const client = clientOf(peer, {
        on: {
          ready: (payload) => {
            ready.push(payload.user_id)
            peer.notify()
            if (ready.length === 1) throw new Error("handler bug")
          }
        },
        onError: (error) => errors.push(error)
      })
      try {
        const connection = await peer.waitFor("connection", () => peer.connections[0])
        connection.send({ v: 1, t: "ready", d: { user_id: USER } })
        connection.send({ v: 1, t: "ready", d: { user_id: GUILD } })
        await peer.waitFor("both dispatched", () => ready.length === 2)
        expect(ready).toEqual([USER, GUILD])
        expect(errors).toEqual([new Error("handler bug")])
        expect(client.isOpen()).toBe(true)
      } finally {
        client.close()
      }
    }))

  it("bounds the subscription set", () =>
    withPeer(async (peer) => {
      const client = clientOf(peer, {
        maxSubscriptions: 1,
        channels: [{ guild_id: GUILD, channel_id: CHANNEL_A }]
      })
      try {
        expect(() => client.subscribe(GUILD, CHANNEL_B)).toThrow(/over the limit of 1/)
        expect(client.subscribedChannels()).toEqual([{ guild_id: GUILD, channel_id: CHANNEL_A }])
      } finally {
        client.close()
      }
    }))
})

describe("backoff", () => {
  const policy = GatewayClient.DEFAULT_BACKOFF

  it("doubles the ceiling before each retry from 2 s and caps it at 30 s", () => {
    expect([1, 2, 3, 4, 5, 6, 50, 5000].map((retry) => GatewayClient.backoffCeiling(retry, policy))).toEqual([
      2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000
    ])
  })

  it("full jitter stays in [0, ceiling) for any random value", () =>
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 10_000 }), fc.double({ min: 0, max: 1 }), (retry, unit) => {
        const delay = GatewayClient.backoffDelay(retry, policy, () => unit)
        const ceiling = GatewayClient.backoffCeiling(retry, policy)
        return Number.isInteger(delay) && delay >= 0 && delay < ceiling
      }),
      { numRuns: 200 }
    ))
})

describe("endpoint and WebSocket seam", () => {
  it("builds /gateway/ws?access_token=... from an origin or keeps a full endpoint", () => {
    expect(GatewayClient.gatewayUrl("https://chat.example.com", "a b&c")).toBe(
      "wss://chat.example.com/gateway/ws?access_token=a+b%26c"
    )
    expect(GatewayClient.gatewayUrl("http://127.0.0.1:8080/", "t")).toBe(
      "ws://127.0.0.1:8080/gateway/ws?access_token=t"
    )
    expect(GatewayClient.gatewayUrl("wss://edge.example.com/realtime/gateway/ws?region=eu", "t")).toBe(
      "wss://edge.example.com/realtime/gateway/ws?region=eu&access_token=t"
    )
  })

  it("accepts the browser WebSocket and the ws WebSocket as constructors", () => {
    expectTypeOf(WebSocket).toMatchTypeOf<GatewayClient.WebSocketConstructor>()
    expectTypeOf<typeof globalThis.WebSocket>().toMatchTypeOf<GatewayClient.WebSocketConstructor>()
  })

  it("fails with invalid_url at construction instead of retrying a URL that cannot be built", () => {
    expect(() => GatewayClient.make({ url: "not a url", WebSocket, accessToken: () => "t" })).toThrow(
      /invalid_url/
    )
  })

  it("fails with no_websocket when there is neither an injected nor a global WebSocket", () => {
    const global = globalThis as { WebSocket?: unknown }
    const saved = global.WebSocket
    delete global.WebSocket
    try {
      expect(() => GatewayClient.make({ url: "ws://127.0.0.1:1", accessToken: () => "t" })).toThrow(
        /no_websocket/
      )
    } finally {
      if (saved !== undefined) global.WebSocket = saved
    }
  })
})
