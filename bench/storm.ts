/**
 * The connect-storm generator: a separate process that opens N client sockets at once (at most
 * `STORM_HANDSHAKES_IN_FLIGHT` handshakes pending, under both servers' listen backlogs), each
 * authenticating (the gateway: an HS256 token per user in `?access_token=`) and subscribing to its
 * channels of the storm layout (Workload.ts) as soon as the upgrade is answered. It measures, per
 * run:
 *
 * - the time until every connection holds every `subscribed` ack, and each connection's time from
 *   its TCP connect to its last ack (p50 / p99 / max);
 * - server CPU per connection, from before the storm until the server has gone quiet (no presence
 *   frame for `QUIET_MS`), read from the server's own `process.cpuUsage()`;
 * - peak heap and RSS per connection (the server's `/stats` polled every `PEAK_POLL_MS` during the
 *   storm), and settled heap and RSS per connection (at rest once quiet: Control.ts `settledStats`),
 *   with the server's memory by V8 space at each of those points;
 * - the presence traffic the clients received: `presence_sync` frames and bytes, `presence_update`
 *   frames (what the server sent: every frame is read).
 *
 * Sockets come from LeanClient.ts (cheap per socket, so the generator is not what a storm measures),
 * spread over loopback source addresses. Every wait is bounded; the process always exits.
 *
 * usage: node --import tsx bench/storm.ts '<StormConfig as JSON>'
 */
import { writeFileSync } from "node:fs"
import { setTimeout as sleep } from "node:timers/promises"
import { SignJWT } from "jose"
import * as LeanClient from "./LeanClient.js"
import type { ServerStats } from "./servers/Control.js"
import {
  benchUlid,
  nowUs,
  sourceAddressOf,
  STORM_HANDSHAKES_IN_FLIGHT,
  stormChannelsOf,
  stormGuildOf,
  stormUserOf,
  subscribeFrame,
  type StormLayout
} from "./Workload.js"

export interface StormConfig {
  readonly server: string
  readonly rep: number
  readonly n: number
  readonly layout: StormLayout
  readonly wsPort: number
  readonly ctrlPort: number
  /** HS256 secret to mint one token per user; none for servers that do not check. */
  readonly jwtSecret: string | null
  readonly hardTimeoutS: number
  readonly out: string
}

const PEAK_POLL_MS = 100
const QUIET_MS = 500
const QUIET_MAX_MS = 20_000

const cfg = JSON.parse(process.argv[2] ?? "null") as StormConfig
if (cfg === null) throw new Error("usage: storm.ts '<config json>'")

setTimeout(() => {
  process.stderr.write(`[storm] hard timeout ${cfg.hardTimeoutS}s reached, exiting\n`)
  process.exit(4)
}, cfg.hardTimeoutS * 1000).unref()

const control = async <A>(path: string, timeoutMs = 60_000): Promise<A> => {
  const response = await fetch(`http://127.0.0.1:${cfg.ctrlPort}${path}`, {
    signal: AbortSignal.timeout(timeoutMs)
  })
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status} ${await response.text()}`)
  return (await response.json()) as A
}

const percentile = (sorted: Float64Array, p: number): number =>
  sorted.length === 0
    ? NaN
    : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!

/** The event type of a server frame `{"v":1,"t":"<type>",...`, read without parsing the JSON. */
const TYPE_AT = '{"v":1,"t":"'.length
const typeIs = (data: Buffer, type: Buffer) =>
  data.length > TYPE_AT + type.length &&
  data[TYPE_AT + type.length] === 0x22 &&
  data.compare(type, 0, type.length, TYPE_AT, TYPE_AT + type.length) === 0
const SUBSCRIBED = Buffer.from("subscribed")
const PRESENCE_SYNC = Buffer.from("presence_sync")
const PRESENCE_UPDATE = Buffer.from("presence_update")

const mintTokens = async (): Promise<ReadonlyArray<string>> => {
  if (cfg.jwtSecret === null) return []
  const key = new TextEncoder().encode(cfg.jwtSecret)
  const users = stormUserOf(cfg.layout, cfg.n - 1) + 1
  const tokens: Array<string> = []
  for (let user = 0; user < users; user++) {
    tokens.push(
      await new SignJWT({ guilds: { [stormGuildOf(cfg.layout, user)]: "*" } })
        .setProtectedHeader({ alg: "HS256" })
        .setSubject(benchUlid("user", 1 + user))
        .setIssuedAt()
        .setExpirationTime("1h")
        .sign(key)
    )
  }
  return tokens
}

const main = async () => {
  // Before the storm and outside its measurement: one token per user, the subscribe frames.
  const tokens = await mintTokens()
  const frames = Array.from({ length: cfg.n }, (_, i) => stormChannelsOf(cfg.layout, i).map(subscribeFrame))
  const base = await control<ServerStats>("/stats?gc=1", 10_000)
  if (!base.gcAvailable) throw new Error("server runs without --expose-gc: memory figures would be noise")

  const startedUs = new Float64Array(cfg.n)
  const subscribedUs = new Float64Array(cfg.n)
  const sockets: Array<LeanClient.LeanSocket> = []
  let subscribedCount = 0
  let failures = 0
  let unexpectedCloses = 0
  let shuttingDown = false
  let presenceSyncFrames = 0
  let presenceSyncBytes = 0
  let presenceUpdateFrames = 0
  let lastPresenceUs = 0
  const closeReasons = new Map<string, number>()
  let allSettled!: () => void
  const everyoneSettled = new Promise<void>((resolve) => (allSettled = resolve))
  /** Every client either holds all its acks or failed (refused, closed before its acks). */
  const settle = () => {
    if (subscribedCount + failures === cfg.n) allSettled()
  }

  const open = (i: number) => {
    let acks = 0
    startedUs[i] = nowUs()
    return LeanClient.connect(
      {
        host: "127.0.0.1",
        port: cfg.wsPort,
        path: `/gateway/ws${cfg.jwtSecret === null ? "" : `?access_token=${tokens[stormUserOf(cfg.layout, i)]}`}`,
        timeoutMs: 60_000,
        localAddress: sourceAddressOf(i)
      },
      {
        onMessage: (data, receivedUs) => {
          if (typeIs(data, PRESENCE_UPDATE)) {
            presenceUpdateFrames++
            lastPresenceUs = receivedUs
          } else if (typeIs(data, PRESENCE_SYNC)) {
            presenceSyncFrames++
            presenceSyncBytes += data.length
            lastPresenceUs = receivedUs
          } else if (typeIs(data, SUBSCRIBED) && ++acks === frames[i]!.length) {
            subscribedUs[i] = receivedUs
            subscribedCount++
            settle()
          }
        },
        onClose: (code, reason) => {
          if (shuttingDown) return
          if (acks < frames[i]!.length) {
            failures++
            settle()
          }
          unexpectedCloses++
          const key = `${code} ${reason}`
          closeReasons.set(key, (closeReasons.get(key) ?? 0) + 1)
        }
      }
    ).then((socket) => {
      sockets.push(socket)
      for (const frame of frames[i]!) socket.send(frame)
    })
  }

  // Peak memory: the server's /stats (no GC) every PEAK_POLL_MS until everyone is subscribed.
  let peakRss = base.rss
  let peakHeapUsed = base.heapUsed
  let peak = base
  let polling = true
  const poll = (async () => {
    while (polling) {
      const stats = await control<ServerStats>("/stats", 10_000)
      if (stats.rss > peakRss) peak = stats
      peakRss = Math.max(peakRss, stats.rss)
      peakHeapUsed = Math.max(peakHeapUsed, stats.heapUsed)
      await sleep(PEAK_POLL_MS)
    }
  })()

  const t0 = nowUs()
  const generatorCpu0 = process.cpuUsage()
  let next = 0
  const worker = async () => {
    while (next < cfg.n) {
      const i = next++
      await open(i).catch(() => {
        failures++
        settle()
      })
    }
  }
  await Promise.all(Array.from({ length: Math.min(STORM_HANDSHAKES_IN_FLIGHT, cfg.n) }, worker))
  const complete = await Promise.race([
    everyoneSettled.then(() => true),
    sleep(Math.max(30_000, cfg.n * 5)).then(() => false)
  ])
  const allUs = nowUs()
  const generatorCpu = process.cpuUsage(generatorCpu0)
  polling = false
  await poll
  if (!complete) throw new Error(`${cfg.n - subscribedCount - failures} of ${cfg.n} clients never settled`)
  if (failures > 0)
    throw new Error(`${failures} of ${cfg.n} clients failed: ${JSON.stringify([...closeReasons])}`)

  // Quiet: the presence ticks that follow the last subscribe are part of the storm's cost.
  const quietFrom = nowUs()
  while (
    nowUs() - Math.max(lastPresenceUs, allUs) < QUIET_MS * 1000 &&
    nowUs() - quietFrom < QUIET_MAX_MS * 1000
  )
    await sleep(50)
  const quietUs = nowUs()
  const quiet = await control<ServerStats>("/stats")
  const settled = await control<ServerStats>("/stats?gc=1")

  const latencies = new Float64Array(cfg.n)
  for (let i = 0; i < cfg.n; i++) latencies[i] = (subscribedUs[i]! - startedUs[i]!) / 1000
  latencies.sort()
  const perConnKB = (bytes: number) => bytes / cfg.n / 1024
  const result = {
    meta: {
      server: cfg.server,
      rep: cfg.rep,
      n: cfg.n,
      layout: cfg.layout,
      users: stormUserOf(cfg.layout, cfg.n - 1) + 1,
      subscriptions: frames.reduce((sum, list) => sum + list.length, 0),
      handshakesInFlight: STORM_HANDSHAKES_IN_FLIGHT,
      date: new Date().toISOString(),
      failures,
      unexpectedCloses,
      closeReasons: Object.fromEntries(closeReasons),
      serverInfo: settled.info
    },
    timeToAllSubscribedMs: (allUs - t0) / 1000,
    connectToSubscribedMs: {
      p50: percentile(latencies, 50),
      p99: percentile(latencies, 99),
      max: latencies[cfg.n - 1]!
    },
    cpuUsPerConn: (quiet.cpuUserUs + quiet.cpuSystemUs - base.cpuUserUs - base.cpuSystemUs) / cfg.n,
    /** Busy shares of the storm's wall time (first connect to all subscribed): ≥ 0.9 is a bottleneck. */
    cpuShare: {
      server: (quiet.cpuUserUs + quiet.cpuSystemUs - base.cpuUserUs - base.cpuSystemUs) / (quietUs - t0),
      generator: (generatorCpu.user + generatorCpu.system) / (allUs - t0)
    },
    quietAfterMs: (nowUs() - allUs) / 1000,
    /** CLOCK_MONOTONIC µs from the first connect to quiet: a server CPU profile is cut to this window. */
    windowUs: [t0, quietUs],
    memory: {
      peakHeapPerConnKB: perConnKB(peakHeapUsed - base.heapUsed),
      peakRssPerConnKB: perConnKB(peakRss - base.rss),
      settledHeapPerConnKB: perConnKB(settled.heapUsed - base.heapUsed),
      settledRssPerConnKB: perConnKB(settled.rss - base.rss),
      /** The server's memory (process.memoryUsage, V8 committed bytes per space) at each point. */
      samples: Object.fromEntries(
        Object.entries({ base, peakRss: peak, quiet, settled }).map(([at, s]) => [
          at,
          {
            settleMs: s.settleMs,
            rss: s.rss,
            heapTotal: s.heapTotal,
            heapUsed: s.heapUsed,
            external: s.external,
            arrayBuffers: s.arrayBuffers,
            spaces: s.spaces
          }
        ])
      )
    },
    presence: {
      syncFrames: presenceSyncFrames,
      syncBytes: presenceSyncBytes,
      updateFrames: presenceUpdateFrames
    }
  }
  writeFileSync(cfg.out, JSON.stringify(result, null, 2))
  process.stdout.write(
    `[storm] ${cfg.server} N=${cfg.n} all subscribed in ${result.timeToAllSubscribedMs.toFixed(0)} ms, ` +
      `p99 ${result.connectToSubscribedMs.p99.toFixed(0)} ms, ${result.cpuUsPerConn.toFixed(0)} µs CPU/conn, ` +
      `settled heap/RSS ${result.memory.settledHeapPerConnKB.toFixed(1)}/${result.memory.settledRssPerConnKB.toFixed(1)} KB/conn, ` +
      `presence_sync ${presenceSyncFrames} (${presenceSyncBytes} B), presence_update ${presenceUpdateFrames}\n`
  )
  shuttingDown = true
  await control("/shutdown", 5000).catch(() => undefined)
  for (const socket of sockets) socket.destroy()
  process.exit(0)
}

main().catch(async (error: unknown) => {
  process.stderr.write(`[storm] error: ${error instanceof Error ? error.stack : String(error)}\n`)
  await control("/shutdown", 2000).catch(() => undefined)
  process.exit(1)
})
