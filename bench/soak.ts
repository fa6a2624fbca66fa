/**
 * Soak run (`npm run soak`, not in CI): the gateway (this process, so its heap is what is measured)
 * under mixed traffic for `--duration` seconds (default 600) from a load process (this file with
 * `--load`): healthy readers across guilds and channels, publishes of every scope through the HTTP
 * API, and misbehaving clients — garbage frames, stalled readers, peers that never pong, connect /
 * disconnect churn, ingress floods, bad tokens, half-open TCP and slowloris requests. Every
 * `--every` seconds it prints heap, RSS, connections, deliveries, evictions and closes by reason,
 * and at the end a Markdown summary (and `--out <file>` JSON).
 *
 *   npm run soak -- --duration 60
 */
import { fork } from "node:child_process"
import { writeFileSync } from "node:fs"
import { connect } from "node:net"
import { fileURLToPath } from "node:url"
import { setFlagsFromString } from "node:v8"
import { runInNewContext } from "node:vm"
import { Context, Duration, Effect, Layer, Redacted } from "effect"
import WebSocket from "ws"
import * as Auth from "../src/server/Auth.js"
import * as Config from "../src/server/Config.js"
import * as Composition from "../src/server/Composition.js"
import * as Gateway from "../src/server/core/Gateway.js"
import * as Http from "../src/server/edge/Http.js"
import { ulid } from "../src/protocol/Ids.js"
import { GatewayMetrics } from "../src/server/Metrics.js"
import { plainTextMessage } from "../test/fixtures/messages.js"

const SECRET = "soak-secret-0123456789-0123456789-abcdef"
const PUBLISH_KEY = "soak-publish-key-0123456789-0123456789"

const arg = (name: string, fallback: number) => {
  const at = process.argv.indexOf(`--${name}`)
  return at >= 0 ? Number(process.argv[at + 1]) : fallback
}
const textArg = (name: string) => {
  const at = process.argv.indexOf(`--${name}`)
  return at >= 0 ? process.argv[at + 1] : undefined
}

let seed = Date.now()
const newId = () => ulid(seed++)

// ---------------------------------------------------------------------------------------------------
// Load process
// ---------------------------------------------------------------------------------------------------

interface LoadPlan {
  readonly port: number
  readonly durationSeconds: number
  readonly healthy: number
  readonly publishesPerSecond: number
}

const runLoad = async (plan: LoadPlan) => {
  const base = `127.0.0.1:${plan.port}`
  const guilds = Array.from({ length: 10 }, newId)
  const channels = guilds.map(() => Array.from({ length: 5 }, newId))
  const grants = Object.fromEntries(guilds.map((guild) => [guild, "*" as const]))
  const token = (userId: string, expiresIn = 3600) =>
    Effect.runPromise(
      Auth.signToken({
        secret: Redacted.make(SECRET),
        userId,
        expiresAt: Math.floor(Date.now() / 1000) + expiresIn,
        guilds: grants
      })
    )
  const stats = {
    received: 0,
    healthyClosed: 0,
    misbehaving: 0,
    publishes: 0,
    publishRefused: 0,
    publishErrors: 0
  }
  const sockets = new Set<WebSocket>()
  const url = (accessToken: string) => `ws://${base}/gateway/ws?access_token=${accessToken}`
  const open = (accessToken: string, options: WebSocket.ClientOptions = {}) => {
    const socket = new WebSocket(url(accessToken), options)
    sockets.add(socket)
    socket.on("error", () => undefined)
    socket.on("close", () => sockets.delete(socket))
    return socket
  }
  const subscribeAll = (socket: WebSocket, g: number) => {
    for (const channel of channels[g]!)
      socket.send(JSON.stringify({ v: 1, t: "subscribe", d: { guild_id: guilds[g], channel_id: channel } }))
  }

  // Healthy readers: each in one guild, all its channels (5 subscribes, well under the ingress limit).
  const users = Array.from({ length: plan.healthy }, newId)
  for (const [i, userId] of users.entries()) {
    const socket = open(await token(userId))
    socket.on("open", () => subscribeAll(socket, i % guilds.length))
    socket.on("message", () => stats.received++)
    socket.on("close", () => stats.healthyClosed++)
  }

  const publish = async (body: unknown) => {
    try {
      const response = await fetch(`http://${base}/v1/publish`, {
        method: "POST",
        headers: { authorization: `Bearer ${PUBLISH_KEY}`, "content-type": "application/json" },
        body: JSON.stringify(body)
      })
      await response.arrayBuffer()
      if (response.status === 202) stats.publishes++
      else stats.publishRefused++
    } catch {
      // A network-level failure (reset, refused), not an HTTP answer.
      stats.publishErrors++
    }
  }
  let seq = 0
  const publishOne = () => {
    const g = seq % guilds.length
    const kind = seq++ % 10
    if (kind < 6) {
      return publish({
        t: "message_create",
        d: plainTextMessage(
          {
            message_id: newId(),
            guild_id: guilds[g]!,
            channel_id: channels[g]![seq % 5]!,
            author_id: users[seq % users.length]!
          },
          `soak ${seq} ${"x".repeat(1500)}`,
          Math.floor(Date.now() / 1000)
        )
      })
    }
    if (kind < 9)
      return publish({
        t: "channel_create",
        d: { guild_id: guilds[g], channel: { channel_id: newId(), name: `c${seq}`, kind: "text" } }
      })
    return publish({
      t: "profile_update",
      d: {
        user_id: users[seq % users.length],
        updated_fields: { username: `u${seq}` },
        updated_at_unix: 1_700_000_000
      },
      users: [users[seq % users.length], users[(seq * 7) % users.length]]
    })
  }

  const misbehave = async (round: number) => {
    stats.misbehaving++
    switch (round % 8) {
      case 0: {
        // Garbage frames: closed 4001 / 4002 / 4003.
        const socket = open(await token(newId()))
        socket.on("open", () => {
          const frames = [
            "not json",
            '{"v":1,"t":"subscribe","d":{"guild_id":1}}',
            '{"v":1,"t":"nope","d":{}}'
          ]
          socket.send(frames[round % frames.length]!)
        })
        break
      }
      case 1: {
        // A stalled reader in every guild: evicted 1008 once its outbox is full.
        const socket = open(await token(newId()))
        socket.on("open", () => {
          for (let g = 0; g < guilds.length; g++) subscribeAll(socket, g)
          socket.pause()
        })
        break
      }
      case 2: {
        // Never answers pings: closed 4009.
        const socket = open(await token(newId()), { autoPong: false })
        socket.on("open", () => subscribeAll(socket, round % guilds.length))
        break
      }
      case 3: {
        // Churn: connect, subscribe, disconnect.
        const socket = open(await token(newId()))
        socket.on("open", () => {
          subscribeAll(socket, round % guilds.length)
          socket.close(1000)
        })
        break
      }
      case 4: {
        // Ingress flood: closed 4008.
        const socket = open(await token(newId()))
        socket.on("open", () => {
          for (let i = 0; i < 80; i++)
            socket.send(
              JSON.stringify({ v: 1, t: "unsubscribe", d: { guild_id: guilds[0], channel_id: newId() } })
            )
        })
        break
      }
      case 5: {
        // Bad and expired tokens: 401.
        open("not-a-token")
        open(await token(newId(), -60))
        break
      }
      case 6: {
        // Half-open TCP: no request at all (408 after the request timeout).
        const socket = connect(plan.port, "127.0.0.1")
        socket.on("error", () => undefined)
        break
      }
      case 7: {
        // Slowloris headers on the upgrade path (408).
        const socket = connect(plan.port, "127.0.0.1", () => {
          socket.write("GET /gateway/ws HTTP/1.1\r\nHost: soak\r\n")
          const trickle = setInterval(
            () => (socket.writable ? socket.write("X-Slow: 1\r\n") : clearInterval(trickle)),
            500
          )
          socket.on("close", () => clearInterval(trickle))
        })
        socket.on("error", () => undefined)
        break
      }
    }
  }

  const started = Date.now()
  const end = started + plan.durationSeconds * 1000
  let round = 0
  const publishTimer = setInterval(() => {
    for (let i = 0; i < plan.publishesPerSecond / 10; i++) void publishOne()
  }, 100)
  const misbehaveTimer = setInterval(() => void misbehave(round++), 200)
  const reportTimer = setInterval(() => process.send?.({ load: stats }), 1000)
  await new Promise((resolve) => setTimeout(resolve, end - Date.now()))
  clearInterval(publishTimer)
  clearInterval(misbehaveTimer)
  clearInterval(reportTimer)
  process.send?.({ load: stats, done: true })
  for (const socket of sockets) socket.terminate()
  setTimeout(() => process.exit(0), 500)
}

// ---------------------------------------------------------------------------------------------------
// Gateway process
// ---------------------------------------------------------------------------------------------------

interface Sample {
  readonly seconds: number
  readonly heapMb: number
  readonly rssMb: number
  readonly connections: number
  readonly delivered: number
  readonly evicted: number
  readonly closes: Readonly<Record<string, number>>
  readonly httpRejected: number
}

const sumFamily = (text: string, name: string, filter?: (labels: string) => boolean) => {
  let sum = 0
  for (const line of text.split("\n")) {
    const match = new RegExp(`^${name}(\\{([^}]*)\\})? (\\S+)$`).exec(line)
    if (match !== null && (filter === undefined || filter(match[2] ?? ""))) sum += Number(match[3])
  }
  return sum
}

const closesByReason = (text: string) => {
  const closes: Record<string, number> = {}
  for (const match of text.matchAll(/^filament_ws_disconnects_total\{reason="([a-z_]+)"\} (\S+)$/gm))
    closes[match[1]!] = Number(match[2])
  return closes
}

const runGateway = Effect.gen(function* () {
  const durationSeconds = arg("duration", 600)
  const every = arg("every", 10)
  const healthy = arg("healthy", 500)
  const publishesPerSecond = arg("rate", 200)
  const context = yield* Layer.build(
    Http.layer.pipe(
      Layer.provideMerge(Composition.layerGateway),
      Layer.provideMerge(
        Config.layerWith({
          host: "127.0.0.1",
          port: 0,
          jwtSecret: Redacted.make(SECRET),
          publishKey: Redacted.make(PUBLISH_KEY),
          devMode: false,
          // Short enough that the misbehaving peers meet every timeout within a short run.
          pingInterval: Duration.seconds(15),
          pongTimeout: Duration.seconds(15),
          requestTimeout: Duration.seconds(3),
          socketHighWaterBytes: 16_384,
          outboundQueue: 64
        })
      )
    )
  )
  const server = Context.get(context, Http.GatewayServer)
  const metrics = Context.get(context, GatewayMetrics)
  const gateway = Context.get(context, Gateway.Gateway)

  const loadScript = fileURLToPath(import.meta.url)
  const load = fork(
    loadScript,
    ["--load", String(server.port), String(durationSeconds), String(healthy), String(publishesPerSecond)],
    {
      execArgv: ["--import", "tsx"]
    }
  )
  let loadStats: Record<string, number> = {}
  const loadDone = new Promise<void>((resolve) =>
    load.on("message", (message: { load: Record<string, number>; done?: boolean }) => {
      loadStats = message.load
      if (message.done === true) resolve()
    })
  )

  const started = performance.now()
  const samples: Array<Sample> = []
  // Heap after a full GC, so samples compare live memory rather than where the collector happened to be.
  setFlagsFromString("--expose-gc")
  const gc = runInNewContext("gc") as () => void
  const sample = () => {
    gc()
    const text = metrics.render()
    const memory = process.memoryUsage()
    const entry: Sample = {
      seconds: Math.round((performance.now() - started) / 1000),
      heapMb: Math.round(memory.heapUsed / 1e5) / 10,
      rssMb: Math.round(memory.rss / 1e5) / 10,
      connections: gateway.connectionCount(),
      delivered: sumFamily(text, "filament_gateway_events_emitted_total"),
      evicted: sumFamily(
        text,
        "filament_ws_disconnects_total",
        (labels) => labels === 'reason="slow_consumer"'
      ),
      closes: closesByReason(text),
      httpRejected: sumFamily(text, "filament_gateway_http_rejected_total")
    }
    samples.push(entry)
    console.log(
      `${String(entry.seconds).padStart(5)} s  heap ${entry.heapMb} MB  rss ${entry.rssMb} MB  conns ${entry.connections}  delivered ${entry.delivered}  evicted ${entry.evicted}  http_rejected ${entry.httpRejected}  load ${JSON.stringify(loadStats)}`
    )
  }
  const timer = setInterval(sample, every * 1000)
  yield* Effect.promise(() => loadDone)
  clearInterval(timer)
  sample()

  const last = samples[samples.length - 1]!
  const heap = samples.map((entry) => entry.heapMb)
  const rss = samples.map((entry) => entry.rssMb)
  const summary = [
    `## Soak: ${durationSeconds} s, ${healthy} healthy readers, ${publishesPerSecond} publishes/s, misbehaving peers 5/s`,
    "",
    `heap after GC ${Math.min(...heap)}–${Math.max(...heap)} MB (last ${last.heapMb}), RSS ${Math.min(...rss)}–${Math.max(...rss)} MB (last ${last.rssMb});`,
    `deliveries ${last.delivered}, publishes accepted ${loadStats["publishes"] ?? 0} (refused ${loadStats["publishRefused"] ?? 0}, network errors ${loadStats["publishErrors"] ?? 0}),`,
    `evictions ${last.evicted}, HTTP-layer refusals ${last.httpRejected}, healthy readers closed ${loadStats["healthyClosed"] ?? 0}.`,
    "",
    "| close reason | count |",
    "| --- | --- |",
    ...Object.entries(last.closes)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([reason, count]) => `| \`${reason}\` | ${count} |`),
    "",
    "| s | heap MB | RSS MB | connections | delivered | evicted |",
    "| --- | --- | --- | --- | --- | --- |",
    ...samples.map(
      (entry) =>
        `| ${entry.seconds} | ${entry.heapMb} | ${entry.rssMb} | ${entry.connections} | ${entry.delivered} | ${entry.evicted} |`
    )
  ].join("\n")
  console.log(`\n${summary}`)
  const out = textArg("out")
  if (out !== undefined) writeFileSync(out, JSON.stringify({ samples, load: loadStats, summary }, null, 2))
})

if (process.argv[2] === "--load") {
  const [port, durationSeconds, healthy, publishesPerSecond] = process.argv.slice(3).map(Number)
  void runLoad({
    port: port!,
    durationSeconds: durationSeconds!,
    healthy: healthy!,
    publishesPerSecond: publishesPerSecond!
  })
} else {
  Effect.runPromise(Effect.scoped(runGateway)).then(
    () => process.exit(0),
    (error: unknown) => {
      console.error(error)
      process.exit(1)
    }
  )
}
