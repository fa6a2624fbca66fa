/**
 * Flood run, in its own process (`node --expose-gc --import tsx`, started by flood.test.ts) so the
 * heap it measures is the gateway's alone: 20k connect/disconnect cycles and 10k
 * subscribe/unsubscribe cycles over real sockets, then every registry index, the presence of every
 * guild used, the per-IP state and the gauges must be empty, and the heap back near its start.
 * Prints one JSON line with the measurements.
 */
import { Context, Effect, HashMap, Layer, Redacted } from "effect"
import WebSocket from "ws"
import * as Auth from "../../src/server/Auth.js"
import * as Config from "../../src/server/Config.js"
import * as Composition from "../../src/server/Composition.js"
import * as Gateway from "../../src/server/core/Gateway.js"
import * as Http from "../../src/server/edge/Http.js"
import { ulid } from "../../src/protocol/Ids.js"
import { GatewayMetrics } from "../../src/server/Metrics.js"
import { VoiceParticipantJoin, VoiceParticipantLeave } from "../../src/protocol/events/voice.js"
import type { ChannelId, GuildId, UserId } from "../../src/protocol/Ids.js"
import { Presence } from "../../src/server/chat/Presence.js"
import { VoiceParticipants } from "../../src/server/chat/Voice.js"
import { SubscriptionRegistry } from "../../src/server/registry/Subscriptions.js"
import { eventually, within } from "../deadline.js"
import { seriesValue } from "../server/harness.js"

const CONNECT_CYCLES = Number(process.env["FLOOD_CONNECT_CYCLES"] ?? 20_000)
const SUBSCRIBE_CYCLES = Number(process.env["FLOOD_SUBSCRIBE_CYCLES"] ?? 10_000)
/** Voice join/leave pairs, each in a fresh channel: more channels than the projection's 1024 cap. */
const VOICE_CYCLES = Number(process.env["FLOOD_VOICE_CYCLES"] ?? 5_000)
const CONCURRENCY = 32
const SECRET = Redacted.make("flood-secret-0123456789-0123456789-abcdef")

const gc = (globalThis as { gc?: () => void }).gc
if (gc === undefined) throw new Error("run with --expose-gc")

const heapAfterGc = () => {
  for (let i = 0; i < 3; i++) gc()
  return process.memoryUsage().heapUsed
}

/** Bound on one step of a cycle (and on the connections closing after a flood). */
const STEP_DEADLINE_MS = 10_000

let seed = Date.now()
const newId = () => ulid(seed++)

/** Opens a socket, waits for `ready`, closes it and waits until the close handshake is done. */
const cycle = (url: string) =>
  within(
    "cycle",
    new Promise<void>((resolve, reject) => {
      const socket = new WebSocket(url)
      socket.once("message", () => socket.close(1000))
      socket.once("close", () => resolve())
      socket.once("error", reject)
    }),
    STEP_DEADLINE_MS
  )

/** Opens a socket and resolves once `ready` arrived; frames after it go to `onFrame`. */
const open = (url: string, onFrame: (text: string) => void) =>
  new Promise<WebSocket>((resolve, reject) => {
    const socket = new WebSocket(url)
    socket.once("message", () => {
      socket.on("message", (data) => onFrame(data.toString()))
      resolve(socket)
    })
    socket.once("error", reject)
  })

const program = Effect.gen(function* () {
  const context = yield* Layer.build(
    Http.layer.pipe(
      Layer.provideMerge(Composition.layerGateway),
      Layer.provideMerge(
        Config.layerWith({
          host: "127.0.0.1",
          port: 0,
          jwtSecret: SECRET,
          devMode: false,
          ingressEventsPerWindow: 1_000_000,
          // Both HTTP-layer limits on, so their per-IP state is exercised (and must empty too).
          maxConnectionsPerIp: 10_000,
          rateLimitPerMinute: 100_000_000
        })
      )
    )
  )
  const server = Context.get(context, Http.GatewayServer)
  const gateway = Context.get(context, Gateway.Gateway)
  const registry = Context.get(context, SubscriptionRegistry)
  const presence = Context.get(context, Presence)
  const voice = Context.get(context, VoiceParticipants)
  const metrics = Context.get(context, GatewayMetrics)
  const base = `ws://127.0.0.1:${server.port}/gateway/ws?access_token=`
  const users = Array.from({ length: CONCURRENCY }, newId)
  const guilds = Array.from({ length: 8 }, newId)
  const grants = Object.fromEntries(guilds.map((guild) => [guild, "*" as const]))
  const urls: Array<string> = []
  for (const userId of users) {
    const token = yield* Auth.signToken({
      secret: SECRET,
      userId,
      expiresAt: Math.floor(Date.now() / 1000) + 3600,
      guilds: grants
    })
    urls.push(base + token)
  }

  const connectFlood = (cycles: number) =>
    Effect.promise(async () => {
      let next = 0
      await Promise.all(
        urls.map(async (url) => {
          while (next < cycles) {
            next++
            await cycle(url)
          }
        })
      )
    })

  // Every subscribe is to a fresh channel (keys would pile up if any were left behind), and is
  // followed by its unsubscribe; each connection waits for its last `unsubscribed` per batch.
  const subscribeFlood = (cycles: number) =>
    Effect.promise(async () => {
      const perConnection = Math.ceil(cycles / CONCURRENCY)
      await Promise.all(
        urls.map(async (url) => {
          let waiting: { channel: string; resolve: () => void } | undefined
          const socket = await open(url, (text) => {
            if (
              waiting !== undefined &&
              text.startsWith('{"v":1,"t":"unsubscribed"') &&
              text.includes(waiting.channel)
            )
              waiting.resolve()
          })
          for (let done = 0; done < perConnection;) {
            let last = ""
            for (let i = 0; i < 25 && done < perConnection; i++, done++) {
              const guild = guilds[done % guilds.length]!
              last = newId()
              socket.send(JSON.stringify({ v: 1, t: "subscribe", d: { guild_id: guild, channel_id: last } }))
              socket.send(
                JSON.stringify({ v: 1, t: "unsubscribe", d: { guild_id: guild, channel_id: last } })
              )
            }
            await within(
              "unsubscribe ack",
              new Promise<void>((resolve) => {
                waiting = { channel: last, resolve }
              }),
              STEP_DEADLINE_MS
            )
          }
          await new Promise<void>((resolve) => {
            socket.once("close", () => resolve())
            socket.close(1000)
          })
        })
      )
    })

  // Through the publish path, so the projection is driven by the follow-ups as in production. A
  // channel left behind would make joins into new channels fail at the cap (PublishRefused).
  const voiceChannels: Array<string> = []
  const voiceFlood = (cycles: number) =>
    Effect.gen(function* () {
      for (let i = 0; i < cycles; i++) {
        const guild = guilds[i % guilds.length] as GuildId
        const channel = newId() as ChannelId
        const user = users[i % users.length] as UserId
        const identity = `u.${user}.${channel}`
        if (voiceChannels.length < 64) voiceChannels.push(channel)
        yield* gateway.publish(VoiceParticipantJoin, {
          guild_id: guild,
          channel_id: channel,
          participant: {
            user_id: user,
            identity,
            joined_at_unix: 1_700_000_000,
            updated_at_unix: 1_700_000_000,
            is_muted: false,
            is_deafened: false,
            is_speaking: false,
            is_video_enabled: false,
            is_screen_share_enabled: false
          }
        } as never)
        yield* gateway.publish(VoiceParticipantLeave, {
          guild_id: guild,
          channel_id: channel,
          user_id: user,
          identity,
          left_at_unix: 1_700_000_001
        } as never)
      }
    })

  // Bounded, not asserted: the measurements say what was left.
  const settled = Effect.ignore(
    eventually("connections closed", () => gateway.connectionCount() === 0, STEP_DEADLINE_MS)
  )

  // Warm-up: JIT, lazily built caches and metric series exist before the baseline.
  yield* connectFlood(500)
  yield* subscribeFlood(500)
  yield* voiceFlood(500)
  yield* settled
  const heapStart = heapAfterGc()
  const rssStart = process.memoryUsage().rss

  const connectStarted = performance.now()
  yield* connectFlood(CONNECT_CYCLES)
  const connectSeconds = (performance.now() - connectStarted) / 1000
  yield* settled
  const subscribeStarted = performance.now()
  yield* subscribeFlood(SUBSCRIBE_CYCLES)
  const subscribeSeconds = (performance.now() - subscribeStarted) / 1000
  yield* voiceFlood(VOICE_CYCLES)
  yield* settled

  const state = yield* registry.state
  const onlineSomewhere: Array<number> = []
  for (const guild of guilds)
    onlineSomewhere.push((yield* presence.snapshot(guild as never, users[0] as never, 1024)).userIds.length)
  let voiceParticipants = 0
  for (const [i, channel] of voiceChannels.entries())
    voiceParticipants += (yield* voice.snapshot(guilds[i % guilds.length] as GuildId, channel as ChannelId))
      .length
  const text = metrics.render()
  const heapEnd = heapAfterGc()
  return {
    connectCycles: CONNECT_CYCLES,
    subscribeCycles: SUBSCRIBE_CYCLES,
    connectSeconds,
    subscribeSeconds,
    openConnections: gateway.connectionCount(),
    registry: {
      connections: HashMap.size(state.connections),
      channels: HashMap.size(state.channels),
      guilds: HashMap.size(state.guilds),
      users: HashMap.size(state.users)
    },
    presenceOnline: onlineSomewhere.reduce((a, b) => a + b, 0),
    voiceCycles: VOICE_CYCLES,
    voiceParticipants,
    httpLimits: server.limits.sizes(),
    gauges: {
      connections: seriesValue(text, "filament_gateway_connections"),
      subscriptions: seriesValue(text, "filament_gateway_subscriptions")
    },
    heapStart,
    heapEnd,
    rssStart,
    rssEnd: process.memoryUsage().rss
  }
})

Effect.runPromise(Effect.scoped(program)).then(
  (result) => {
    process.stdout.write(`${JSON.stringify(result)}\n`)
    process.exit(0)
  },
  (error: unknown) => {
    process.stderr.write(`${String(error)}\n`)
    process.exit(1)
  }
)
