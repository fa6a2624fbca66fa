/**
 * The load generator: a separate process that owns every client socket, subscribes them over the
 * wire, drives the server's control port through the phases of one run, counts deliveries and
 * measures end-to-end latency. Writes one JSON result. Every loop is bounded in count and time and
 * the process always exits (hard timeout).
 *
 * usage: node --import tsx bench/generator.ts '<GeneratorConfig as JSON>'
 */
import { writeFileSync } from "node:fs"
import * as Os from "node:os"
import { setTimeout as sleep } from "node:timers/promises"
import { SignJWT } from "jose"
import WebSocket from "ws"
import type { PublishReport, ServerStats } from "./servers/Control.js"
import {
  benchUlid,
  channelsFor,
  guildsOf,
  makeStampReader,
  nowUs,
  sourceAddressOf,
  subscribeFrame,
  type Shape
} from "./Workload.js"

export interface GeneratorConfig {
  readonly server: string
  readonly rep: number
  readonly n: number
  readonly wsPort: number
  readonly ctrlPort: number
  readonly shape: Shape
  readonly idleRooms: number
  readonly subsPerConn: number
  /** Distinct users the connections belong to (connection i is user i mod users). */
  readonly users: number
  /** HS256 secret to mint one access token per client; none for servers that do not check. */
  readonly jwtSecret: string | null
  /** Appended to the upgrade query after the token (e.g. `&recovery=1`). */
  readonly query: string
  readonly concurrency: number
  readonly hardTimeoutS: number
  readonly pinning: string
  readonly out: string
}

const cfg = JSON.parse(process.argv[2] ?? "null") as GeneratorConfig
if (cfg === null) throw new Error("usage: generator.ts '<config json>'")

setTimeout(() => {
  process.stderr.write(`[gen] hard timeout ${cfg.hardTimeoutS}s reached, exiting\n`)
  process.exit(4)
}, cfg.hardTimeoutS * 1000).unref()

// ------------------------------------------------------------------ recording
interface Phase {
  readonly expected: number
  received: number
  readonly latencyUs: Float64Array
  minStamp: number
  lastReceive: number
  readonly done: Promise<void>
  readonly resolve: () => void
}
let current: Phase | null = null
let stray = 0
let payloadBytes = 0

const newPhase = (expected: number): Phase => {
  let resolve!: () => void
  const done = new Promise<void>((r) => (resolve = r))
  return {
    expected,
    received: 0,
    latencyUs: new Float64Array(expected),
    minStamp: Infinity,
    lastReceive: 0,
    done,
    resolve
  }
}

const record = (stamp: number) => {
  const now = nowUs()
  const phase = current
  if (phase === null) {
    stray++
    return
  }
  if (phase.received < phase.expected) phase.latencyUs[phase.received] = now - stamp
  if (stamp < phase.minStamp) phase.minStamp = stamp
  phase.lastReceive = now
  if (++phase.received === phase.expected) phase.resolve()
}

// ------------------------------------------------------------------ clients
const readStamp = makeStampReader()
const clients: Array<WebSocket> = []
let unexpectedCloses = 0
/** Set once the generator itself asks the server to stop, so the closes that follow are expected. */
let shuttingDown = false
const closeReasons = new Map<string, number>()

const mintToken = async (i: number): Promise<string | null> => {
  if (cfg.jwtSecret === null) return null
  const guilds = Object.fromEntries(guildsOf(cfg.idleRooms).map((guild) => [guild, "*"]))
  return new SignJWT({ guilds })
    .setProtectedHeader({ alg: "HS256" })
    .setSubject(benchUlid("user", i % cfg.users))
    .setIssuedAt()
    .setExpirationTime("1h")
    .sign(new TextEncoder().encode(cfg.jwtSecret))
}

const connectOne = async (i: number): Promise<WebSocket> => {
  const token = await mintToken(i)
  const channels = channelsFor(i, cfg.idleRooms, cfg.subsPerConn)
  const query = token === null ? "" : `?access_token=${encodeURIComponent(token)}${cfg.query}`
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(`ws://127.0.0.1:${cfg.wsPort}/gateway/ws${query}`, {
      perMessageDeflate: false,
      localAddress: sourceAddressOf(i)
    })
    let acks = 0
    let subscribed = false
    socket.on("message", (data: Buffer) => {
      const stamp = readStamp(data)
      if (stamp >= 0) {
        payloadBytes = data.length
        return record(stamp)
      }
      const frame = JSON.parse(String(data)) as { t?: string }
      if (frame.t === "subscribed" && ++acks === channels.length) {
        subscribed = true
        resolve(socket)
      }
    })
    socket.on("error", () => {})
    socket.once("open", () => {
      for (const channel of channels) socket.send(subscribeFrame(channel))
    })
    socket.once("close", (code, reason) => {
      if (!subscribed) return reject(new Error(`closed before subscribed: ${code} ${String(reason)}`))
      if (!shuttingDown) {
        unexpectedCloses++
        const key = `${code} ${String(reason)}`
        closeReasons.set(key, (closeReasons.get(key) ?? 0) + 1)
      }
    })
  })
}

const connectAll = async (n: number): Promise<number> => {
  let next = 0
  let failures = 0
  const worker = async () => {
    while (next < n) {
      const i = next++
      for (let attempt = 0; ; attempt++) {
        try {
          clients.push(await connectOne(i))
          break
        } catch (error) {
          failures++
          if (attempt >= 3) throw new Error(`connect ${i} failed: ${(error as Error).message}`)
          await sleep(50 * (attempt + 1))
        }
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(cfg.concurrency, n) }, worker))
  return failures
}

// ------------------------------------------------------------------ control
const control = async <A>(path: string, timeoutMs = 60_000): Promise<A> => {
  const response = await fetch(`http://127.0.0.1:${cfg.ctrlPort}${path}`, {
    signal: AbortSignal.timeout(timeoutMs)
  })
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status} ${await response.text()}`)
  return (await response.json()) as A
}

const percentile = (sorted: Float64Array, p: number): number | null =>
  sorted.length === 0
    ? null
    : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!

const runPhase = async (name: string, events: number, rate: number) => {
  const expected = events * cfg.n
  const phase = newPhase(expected)
  const s0 = await control<ServerStats>("/stats")
  const g0 = process.cpuUsage()
  const w0 = nowUs()
  current = phase
  const published = await control<PublishReport>(`/publish?count=${events}&rate=${rate}`, 90_000)
  const waitMs = Math.max(20_000, (expected / 5_000) * 1000)
  const timedOut = await Promise.race([phase.done.then(() => false), sleep(waitMs).then(() => true)])
  const w1 = nowUs()
  const generatorCpu = process.cpuUsage(g0)
  const s1 = await control<ServerStats>("/stats")
  current = null
  const n = Math.min(phase.received, expected)
  const sorted = phase.latencyUs.subarray(0, n).sort()
  const ms = (us: number | null) => (us === null ? null : us / 1000)
  const spanUs = phase.lastReceive - phase.minStamp
  const serverCpuUs = s1.cpuUserUs + s1.cpuSystemUs - (s0.cpuUserUs + s0.cpuSystemUs)
  return {
    name,
    events,
    eventRate: rate,
    expected,
    delivered: phase.received,
    lost: Math.max(0, expected - phase.received),
    timedOut,
    deliveriesPerSec: n / (spanUs / 1e6),
    latencyMs: {
      p50: ms(percentile(sorted, 50)),
      p90: ms(percentile(sorted, 90)),
      p99: ms(percentile(sorted, 99)),
      max: ms(n > 0 ? sorted[n - 1]! : null)
    },
    server: {
      cpuS: serverCpuUs / 1e6,
      sysShare: (s1.cpuSystemUs - s0.cpuSystemUs) / Math.max(1, serverCpuUs),
      cpuUtil: serverCpuUs / (s1.tUs - s0.tUs),
      cpuUsPerDelivery: serverCpuUs / Math.max(1, phase.received),
      publishLoopMs: published.publishLoopMs,
      publishCallP50Us: published.publishCallP50Us,
      publishCallP99Us: published.publishCallP99Us,
      publishLagP99Ms: published.lagP99Ms,
      publishLagMaxMs: published.lagMaxMs
    },
    generator: {
      cpuUtil: (generatorCpu.user + generatorCpu.system) / (w1 - w0)
    }
  }
}
export type PhaseResult = Awaited<ReturnType<typeof runPhase>>

// ------------------------------------------------------------------ main

const main = async () => {
  const t0 = nowUs()
  const base = await control<ServerStats>("/stats?gc=1", 5000)
  if (!base.gcAvailable) throw new Error("server runs without --expose-gc: memory figures would be noise")
  const c0 = nowUs()
  const connectFailures = await connectAll(cfg.n)
  const connectS = (nowUs() - c0) / 1e6
  await sleep(cfg.shape.idleWaitMs)
  const idle = await control<ServerStats>("/stats?gc=1")
  const perConnection = (key: "rss" | "heapUsed" | "external") => (idle[key] - base[key]) / cfg.n
  const memory = {
    baseRssMB: base.rss / 2 ** 20,
    idleRssMB: idle.rss / 2 ** 20,
    idleHeapMB: idle.heapUsed / 2 ** 20,
    rssPerConnKB: perConnection("rss") / 1024,
    heapPerConnKB: perConnection("heapUsed") / 1024,
    externalPerConnKB: perConnection("external") / 1024,
    heapDeltaBytes: idle.heapUsed - base.heapUsed,
    heapTotalDeltaBytes: idle.heapTotal - base.heapTotal,
    spaceDeltaBytes: Object.fromEntries(
      Object.entries(idle.spaces).map(([space, size]) => [space, size - (base.spaces[space] ?? 0)])
    ),
    rssDeltaBytes: idle.rss - base.rss,
    connectCpuUsPerConn: (idle.cpuUserUs + idle.cpuSystemUs - base.cpuUserUs - base.cpuSystemUs) / cfg.n
  }

  const { shape } = cfg
  const measuredFromUs = nowUs()
  const warmup = await runPhase("warmup", Math.max(10, Math.ceil(shape.warmupDeliveries / cfg.n)), 0)
  await sleep(300)
  const eventRate = shape.rateDeliveriesPerSec / cfg.n
  const rate = await runPhase("rate", Math.max(1, Math.round(eventRate * shape.rateSeconds)), eventRate)
  await sleep(300)
  const burst = await runPhase("burst", Math.max(10, Math.ceil(shape.burstDeliveries / cfg.n)), 0)
  await sleep(300)
  // The rate phase again, now that warmup, rate and burst have settled both servers (JIT, heap):
  // the steady-state latency; the first rate phase is the cold-start tail.
  const steady = await runPhase("steady", Math.max(1, Math.round(eventRate * shape.rateSeconds)), eventRate)
  const measuredToUs = nowUs()
  const cpu = Os.cpus()
  const result = {
    meta: {
      server: cfg.server,
      rep: cfg.rep,
      n: cfg.n,
      idleRooms: cfg.idleRooms,
      subsPerConn: cfg.subsPerConn,
      users: cfg.users,
      payloadBytes,
      node: process.version,
      cpus: cpu.length,
      cpuModel: cpu[0]?.model ?? "unknown",
      pinning: cfg.pinning,
      date: new Date().toISOString(),
      stray,
      unexpectedCloses,
      closeReasons: Object.fromEntries(closeReasons),
      totalS: (nowUs() - t0) / 1e6,
      /** CLOCK_MONOTONIC µs around warmup..burst: a server CPU profile is cut to this window. */
      measuredWindowUs: [measuredFromUs, measuredToUs],
      serverInfo: idle.info
    },
    connect: { seconds: connectS, perSec: cfg.n / connectS, failures: connectFailures },
    memory,
    phases: { warmup, rate, burst, steady }
  }
  writeFileSync(cfg.out, JSON.stringify(result, null, 2))
  process.stdout.write(
    `[gen] ${cfg.server} N=${cfg.n}${cfg.idleRooms > 0 ? ` +${cfg.n * cfg.subsPerConn} idle subs` : ""} ` +
      `heap/conn=${memory.heapPerConnKB.toFixed(1)}KB rss/conn=${memory.rssPerConnKB.toFixed(1)}KB | ` +
      `rate p50=${rate.latencyMs.p50?.toFixed(2)} p99=${rate.latencyMs.p99?.toFixed(2)}ms ` +
      `steady p99=${steady.latencyMs.p99?.toFixed(2)}ms | ` +
      `burst ${burst.deliveriesPerSec.toFixed(0)}/s ${burst.server.cpuUsPerDelivery.toFixed(2)}us/delivery ` +
      `gen=${(burst.generator.cpuUtil * 100).toFixed(0)}% lost=${warmup.lost + rate.lost + burst.lost + steady.lost}\n`
  )
  shuttingDown = true
  await control("/shutdown", 5000).catch(() => undefined)
  process.exit(0)
}

main().catch(async (error: unknown) => {
  process.stderr.write(`[gen] error: ${error instanceof Error ? error.stack : String(error)}\n`)
  shuttingDown = true
  await control("/shutdown", 2000).catch(() => undefined)
  process.exit(1)
})
