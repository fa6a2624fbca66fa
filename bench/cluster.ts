/**
 * `npx tsx bench/cluster.ts [--n 5000] [--reps 1] [--client-procs 1]`: the raw `ws` baseline
 * (bench/servers/raw-ws.ts, one process), one gateway process and `GATEWAY_WORKERS=2` joined by a
 * real `redis-server`, same workload (the fanout bench's hot channel and message, from Workload.ts),
 * same N, same run.
 *
 * Three kinds of process: the server under test (`npm start`: one process, or a node:cluster
 * primary with two workers sharing the port; or the raw `ws` server), client processes owning the
 * sockets in equal shares (forked from this file with `--clients`, sockets from LeanClient.ts: every
 * server shares the two cores with them, so they must cost far less per delivery than `ws` clients),
 * and this driver. The driver publishes to the gateway through `POST /v1/publish` (so each event
 * enters whichever worker takes the HTTP connection; the other delivers it from the bus); the raw
 * `ws` server has no publish API, so its own in-process publisher (Control.ts, as in the main
 * matrix) runs the same event counts and rate — it skips the HTTP request per event, which only
 * makes the baseline stronger.
 *
 * Phases: warm-up; a rate phase (10 000 deliveries/s for 5 s: its p50/p99 latency, stamp at event
 * creation to receipt, both on CLOCK_MONOTONIC); a burst (200 000 deliveries, events back to back:
 * deliveries/s from the first publish to the last receipt). Server CPU is read from /proc for the
 * server process and its workers (and, separately, redis-server and the client processes) around the
 * burst: with both cores shared, two workers can at best reach 2s/(s+c) times one process's
 * throughput (s, c: server and client CPU per delivery), printed as the bound.
 * Output: a Markdown table on stdout and bench/results/cluster-<time>.json.
 */
import { fork, spawn, spawnSync, type ChildProcess } from "node:child_process"
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import { createServer } from "node:net"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { SignJWT } from "jose"
import * as LeanClient from "./LeanClient.js"
import { waitReady } from "./Runner.js"
import {
  benchUlid,
  HOT_CHANNEL,
  HOT_GUILD,
  makeStampReader,
  messageSnapshot,
  nowUs,
  subscribeFrame
} from "./Workload.js"

const BENCH_DIR = Path.dirname(fileURLToPath(import.meta.url))
const REPO_DIR = Path.dirname(BENCH_DIR)
const JWT_SECRET = "bench-only-jwt-secret-0123456789abcdef"
const PUBLISH_KEY = "bench-only-publish-key-0123456789abcdef"
const BUS_SECRET = "bench-only-bus-secret-0123456789abcdef"
const CONNECTIONS_PER_USER = 32
const RATE_DELIVERIES_PER_SEC = 10_000
const RATE_SECONDS = 5
const BURST_DELIVERIES = 200_000
const WARMUP_EVENTS = 20
const DEADLINE_MS = 120_000

const argValue = (name: string) => {
  const at = process.argv.indexOf(`--${name}`)
  return at < 0 ? undefined : process.argv[at + 1]
}
/**
 * Client processes sharing the N sockets. One is the default: on 2 cores every client CPU-second is
 * taken from the servers, and one process that falls behind reads several frames per read.
 */
const clientProcesses = Number(argValue("client-procs") ?? 1)

const percentile = (sorted: ReadonlyArray<number>, p: number) =>
  sorted.length === 0
    ? 0
    : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!

// ---------------------------------------------------------------------------------------------
// Client process: N sockets subscribed to the hot channel; records (stamp, receipt) per delivery.
// ---------------------------------------------------------------------------------------------

interface Window {
  readonly from: number
  readonly to: number
}
type ToClients = { readonly cmd: "report"; readonly rate: Window; readonly burst: Window }
interface ClientReport {
  /** Every rate-phase delivery's latency (µs): the driver merges the client processes' samples. */
  readonly rateLatenciesUs: ReadonlyArray<number>
  readonly burstCount: number
  readonly burstLastReceiptUs: number
  /** Sockets that closed during the run: any is a failed run. */
  readonly closes: number
}

/** Client process owning sockets `from` .. `from + count - 1` of `n` (the user of socket i: i mod users). */
const runClients = async (port: number, n: number, from: number, count: number) => {
  const stamps = new Float64Array(4_000_000)
  const receipts = new Float64Array(4_000_000)
  let recorded = 0
  const users = Math.ceil(n / CONNECTIONS_PER_USER)
  const key = new TextEncoder().encode(JWT_SECRET)
  const tokens = await Promise.all(
    Array.from({ length: users }, (_, u) =>
      new SignJWT({ guilds: { [HOT_GUILD]: "*" } })
        .setProtectedHeader({ alg: "HS256" })
        .setSubject(benchUlid("user", 1 + u))
        .setExpirationTime("1h")
        .sign(key)
    )
  )
  const readStamp = makeStampReader()
  let closes = 0
  const open = (i: number) =>
    new Promise<void>((resolve, reject) => {
      let subscribed = false
      LeanClient.connect(
        {
          host: "127.0.0.1",
          port,
          path: `/gateway/ws?access_token=${tokens[i % users]}`,
          timeoutMs: 30_000
        },
        {
          onMessage: (data, receivedUs) => {
            const stamp = readStamp(data)
            if (stamp >= 0) {
              if (recorded < stamps.length) {
                stamps[recorded] = stamp
                receipts[recorded++] = receivedUs
              }
            } else if (!subscribed && data.includes('"t":"subscribed"')) {
              subscribed = true
              resolve()
            }
          },
          onClose: (code, reason) => {
            closes++
            if (!subscribed) reject(new Error(`closed before subscribed: ${code} ${reason}`))
          }
        }
      ).then(
        (socket) => socket.send(subscribeFrame({ guild_id: HOT_GUILD, channel_id: HOT_CHANNEL })),
        reject
      )
    })
  // 200 at a time, as the fanout bench's generator does.
  for (let i = from; i < from + count; i += 200) {
    await Promise.all(Array.from({ length: Math.min(200, from + count - i) }, (_, k) => open(i + k)))
  }
  process.send!({ ready: true })
  process.on("message", (message: ToClients) => {
    const rate: Array<number> = []
    let burstCount = 0
    let burstLast = 0
    for (let i = 0; i < recorded; i++) {
      const stamp = stamps[i]!
      if (stamp >= message.rate.from && stamp <= message.rate.to) rate.push(receipts[i]! - stamp)
      else if (stamp >= message.burst.from && stamp <= message.burst.to) {
        burstCount++
        if (receipts[i]! > burstLast) burstLast = receipts[i]!
      }
    }
    const report: ClientReport = {
      rateLatenciesUs: rate,
      burstCount,
      burstLastReceiptUs: burstLast,
      closes
    }
    process.send!(report, () => process.exit(0))
  })
}

// ---------------------------------------------------------------------------------------------
// Driver
// ---------------------------------------------------------------------------------------------

const freePort = () =>
  new Promise<number>((resolve) => {
    const server = createServer()
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() => resolve(typeof address === "object" && address !== null ? address.port : 0))
    })
  })

const within = <A>(label: string, promise: Promise<A>, ms = DEADLINE_MS) =>
  Promise.race([
    promise,
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`deadline: ${label}`)), ms).unref())
  ])

const exited = (child: ChildProcess) =>
  child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve()
    : new Promise<void>((resolve) => child.once("exit", () => resolve()))

const TICKS_PER_SECOND = Number(spawnSync("getconf", ["CLK_TCK"]).stdout?.toString().trim() || 100)

/** CPU seconds (user + system) of `pid` and every descendant, from /proc. */
const cpuSeconds = (pid: number): number => {
  const stats = new Map<number, { ppid: number; ticks: number }>()
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const text = readFileSync(`/proc/${entry}/stat`, "utf8")
      const fields = text.slice(text.lastIndexOf(")") + 2).split(" ")
      stats.set(Number(entry), { ppid: Number(fields[1]), ticks: Number(fields[11]) + Number(fields[12]) })
    } catch {
      // the process ended meanwhile
    }
  }
  let total = 0
  const walk = (id: number) => {
    total += stats.get(id)?.ticks ?? 0
    for (const [child, stat] of stats) if (stat.ppid === id) walk(child)
  }
  walk(pid)
  return total / TICKS_PER_SECOND
}

const startRedis = async () => {
  const port = await freePort()
  const child = spawn("redis-server", [
    "--port",
    String(port),
    "--bind",
    "127.0.0.1",
    "--save",
    "",
    "--appendonly",
    "no"
  ])
  await within(
    "redis ready",
    new Promise<void>((resolve) => {
      let output = ""
      child.stdout.on("data", (chunk: Buffer) => {
        output += chunk.toString()
        if (output.includes("Ready to accept connections")) resolve()
      })
    })
  )
  return { port, child }
}

interface ModeResult {
  readonly mode: Mode
  readonly n: number
  readonly rateP50Ms: number
  readonly rateP99Ms: number
  readonly rateDeliveries: number
  readonly burstDeliveries: number
  readonly deliveriesPerSec: number
  readonly serverCpuUsPerDelivery: number
  readonly redisCpuUsPerDelivery: number | null
  readonly clientCpuUsPerDelivery: number
}

const MODES = ["raw ws", "1 process", "2 workers"] as const
type Mode = (typeof MODES)[number]

/** How events enter the server under test; every event is `messageSnapshot(seq)` on the hot channel. */
interface Publisher {
  /** `count` events back to back. */
  readonly burst: (count: number) => Promise<void>
  /** `count` events evenly spread over `seconds`. */
  readonly paced: (count: number, seconds: number) => Promise<void>
}

interface ServerUnderTest {
  readonly process: ChildProcess
  readonly wsPort: number
  readonly publisher: Publisher
}

const publish = async (port: number, seq: number) => {
  const response = await fetch(`http://127.0.0.1:${port}/v1/publish`, {
    method: "POST",
    headers: { authorization: `Bearer ${PUBLISH_KEY}`, "content-type": "application/json" },
    body: JSON.stringify({ t: "message_create", d: messageSnapshot(seq) })
  })
  if (response.status !== 202)
    throw new Error(`publish answered ${response.status}: ${await response.text()}`)
  await response.arrayBuffer()
}

/** `npm start` with one process or two node:cluster workers; events enter through `POST /v1/publish`. */
const startGateway = async (
  workers: number,
  redis: { port: number; child: ChildProcess },
  onSpawn: (child: ChildProcess) => void
): Promise<ServerUnderTest> => {
  const port = await freePort()
  const server = spawn(process.execPath, ["--import", "tsx", "src/server/main.ts"], {
    cwd: REPO_DIR,
    env: {
      ...Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("GATEWAY_"))),
      WS_NO_BUFFER_UTIL: "1",
      WS_NO_UTF_8_VALIDATE: "1",
      GATEWAY_PORT: String(port),
      GATEWAY_JWT_SECRET: JWT_SECRET,
      GATEWAY_PUBLISH_KEY: PUBLISH_KEY,
      GATEWAY_WORKERS: String(workers),
      ...(workers > 1
        ? { GATEWAY_REDIS_URL: `redis://127.0.0.1:${redis.port}`, GATEWAY_BUS_SECRET: BUS_SECRET }
        : {})
    },
    stdio: ["ignore", "pipe", "pipe"]
  })
  onSpawn(server)
  let log = ""
  server.stdout!.on("data", (chunk: Buffer) => (log += chunk.toString()))
  server.stderr!.on("data", (chunk: Buffer) => (log += chunk.toString()))
  await within(
    "server listening",
    new Promise<void>((resolve) => {
      const check = () => {
        if (log.split("filament-gateway listening on").length > workers) resolve()
      }
      server.stdout!.on("data", check)
      server.stderr!.on("data", check)
    })
  )
  let seq = 0
  return {
    process: server,
    wsPort: port,
    publisher: {
      burst: async (count) => {
        for (let i = 0; i < count; i++) await publish(port, seq++)
      },
      paced: async (count, seconds) => {
        const interval = (seconds * 1000) / count
        const started = Date.now()
        for (let i = 0; i < count; i++) {
          const due = started + i * interval
          if (due > Date.now()) await new Promise((resolve) => setTimeout(resolve, due - Date.now()))
          await publish(port, seq++)
        }
      }
    }
  }
}

/** bench/servers/raw-ws.ts, launched as bench/Runner.ts does; its Control.ts publisher runs the events. */
const startRawWs = async (onSpawn: (child: ChildProcess) => void): Promise<ServerUnderTest> => {
  const server = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      "--expose-gc",
      "--max-old-space-size=4096",
      Path.join(BENCH_DIR, "servers", "raw-ws.ts")
    ],
    {
      cwd: REPO_DIR,
      env: {
        ...process.env,
        WS_NO_BUFFER_UTIL: "1",
        WS_NO_UTF_8_VALIDATE: "1",
        BENCH_MAX_LIFETIME_MS: "300000"
      },
      stdio: ["ignore", "pipe", "pipe"]
    }
  )
  onSpawn(server)
  let log = ""
  server.stderr!.on("data", (chunk: Buffer) => (log += chunk.toString()))
  const ready = await waitReady(server, "raw-ws stderr below", 30_000).catch((error: unknown) => {
    throw new Error(`${String(error)}\n${log}`)
  })
  const control = async (count: number, rate: number) => {
    const response = await fetch(`http://127.0.0.1:${ready.ctrlPort}/publish?count=${count}&rate=${rate}`)
    if (response.status !== 200)
      throw new Error(`raw-ws publish answered ${response.status}: ${await response.text()}`)
    await response.arrayBuffer()
  }
  return {
    process: server,
    wsPort: ready.wsPort,
    publisher: {
      burst: (count) => control(count, 0),
      paced: (count, seconds) => control(count, count / seconds)
    }
  }
}

const runMode = async (mode: Mode, n: number, redis: { port: number; child: ChildProcess }) => {
  // Set as soon as the server process exists, so `finally` ends it even if it never became ready.
  const spawned: { server?: ChildProcess } = {}
  const clients: Array<ChildProcess> = []
  try {
    const underTest =
      mode === "raw ws"
        ? await startRawWs((child) => (spawned.server = child))
        : await startGateway(mode === "2 workers" ? 2 : 1, redis, (child) => (spawned.server = child))
    const { publisher, wsPort } = underTest
    const serverPid = underTest.process.pid!
    for (let k = 0; k < clientProcesses; k++) {
      const from = Math.floor((k * n) / clientProcesses)
      const count = Math.floor(((k + 1) * n) / clientProcesses) - from
      clients.push(
        fork(
          fileURLToPath(import.meta.url),
          ["--clients", String(wsPort), String(n), String(from), String(count)],
          {
            execArgv: ["--import", "tsx", "--max-old-space-size=4096"],
            env: { ...process.env, WS_NO_BUFFER_UTIL: "1", WS_NO_UTF_8_VALIDATE: "1" },
            stdio: ["ignore", "inherit", "inherit", "ipc"]
          }
        )
      )
    }
    const fromEach = <A>(label: string) =>
      within(
        label,
        Promise.all(clients.map((client) => new Promise<A>((resolve) => client.once("message", resolve))))
      )
    await fromEach("clients subscribed")
    const clientsCpu = () => clients.reduce((total, client) => total + cpuSeconds(client.pid!), 0)
    await publisher.burst(WARMUP_EVENTS)

    const rateEvents = Math.ceil((RATE_DELIVERIES_PER_SEC * RATE_SECONDS) / n)
    const rate = { from: nowUs(), to: 0 }
    await publisher.paced(rateEvents, RATE_SECONDS)
    rate.to = nowUs()
    // Let the rate phase drain before the burst.
    await new Promise((resolve) => setTimeout(resolve, 1000))

    const burstEvents = Math.ceil(BURST_DELIVERIES / n)
    const serverCpu0 = cpuSeconds(serverPid)
    const redisCpu0 = cpuSeconds(redis.child.pid!)
    const clientCpu0 = clientsCpu()
    const burst = { from: nowUs(), to: 0 }
    await publisher.burst(burstEvents)
    burst.to = nowUs()
    await new Promise((resolve) => setTimeout(resolve, 2000))
    const serverCpu = cpuSeconds(serverPid) - serverCpu0
    const redisCpu = cpuSeconds(redis.child.pid!) - redisCpu0
    const clientCpu = clientsCpu() - clientCpu0

    const reports = fromEach<ClientReport>("client reports")
    for (const client of clients) client.send({ cmd: "report", rate, burst } satisfies ToClients)
    const parts = await reports
    const latencies = parts.flatMap((part) => part.rateLatenciesUs).sort((a, b) => a - b)
    const report = {
      burstCount: parts.reduce((total, part) => total + part.burstCount, 0),
      burstLastReceiptUs: Math.max(...parts.map((part) => part.burstLastReceiptUs)),
      closes: parts.reduce((total, part) => total + part.closes, 0)
    }
    const burstSeconds = (report.burstLastReceiptUs - burst.from) / 1e6
    const result: ModeResult = {
      mode,
      n,
      rateP50Ms: percentile(latencies, 50) / 1000,
      rateP99Ms: percentile(latencies, 99) / 1000,
      rateDeliveries: latencies.length,
      burstDeliveries: report.burstCount,
      deliveriesPerSec: report.burstCount / burstSeconds,
      serverCpuUsPerDelivery: (serverCpu * 1e6) / report.burstCount,
      redisCpuUsPerDelivery: mode === "2 workers" ? (redisCpu * 1e6) / report.burstCount : null,
      clientCpuUsPerDelivery: (clientCpu * 1e6) / report.burstCount
    }
    if (report.closes > 0) throw new Error(`${mode}: ${report.closes} client sockets closed during the run`)
    if (report.burstCount !== burstEvents * n) {
      throw new Error(`${mode}: ${report.burstCount} burst deliveries, expected ${burstEvents * n}`)
    }
    return result
  } finally {
    for (const client of clients) client.kill("SIGKILL")
    const child = spawned.server
    if (child !== undefined) {
      child.kill("SIGTERM")
      await within("server exit", exited(child), 20_000).catch(() => child.kill("SIGKILL"))
    }
    await Promise.all(clients.map(exited))
  }
}

const main = async () => {
  if (spawnSync("redis-server", ["--version"]).status !== 0) {
    console.error("redis-server is not on PATH (apt-get install redis-server)")
    process.exit(1)
  }
  const n = Number(argValue("n") ?? 5000)
  const reps = Number(argValue("reps") ?? 1)
  const redis = await startRedis()
  const results: Array<ModeResult> = []
  try {
    for (let rep = 0; rep < reps; rep++) {
      // Alternate the order so drift on a noisy machine hits every mode alike.
      const modes = rep % 2 === 0 ? MODES : [...MODES].reverse()
      for (const mode of modes) {
        const result = await runMode(mode, n, redis)
        results.push(result)
        console.log(JSON.stringify(result))
      }
    }
  } finally {
    redis.child.kill("SIGKILL")
  }
  const rows = results.map(
    (r) =>
      `| ${r.mode} | ${r.n} | ${r.rateP50Ms.toFixed(2)} | ${r.rateP99Ms.toFixed(2)} | ${Math.round(r.deliveriesPerSec)} | ${r.serverCpuUsPerDelivery.toFixed(2)} | ${r.redisCpuUsPerDelivery === null ? "—" : r.redisCpuUsPerDelivery.toFixed(3)} | ${r.clientCpuUsPerDelivery.toFixed(2)} |`
  )
  const median = (mode: Mode, pick: (r: ModeResult) => number) => {
    const values = results
      .filter((r) => r.mode === mode)
      .map(pick)
      .sort((a, b) => a - b)
    const middle = Math.floor(values.length / 2)
    return values.length % 2 === 1 ? values[middle]! : (values[middle - 1]! + values[middle]!) / 2
  }
  const ratios = (over: Mode) => ({
    throughput: median("2 workers", (r) => r.deliveriesPerSec) / median(over, (r) => r.deliveriesPerSec),
    p99: median("2 workers", (r) => r.rateP99Ms) / median(over, (r) => r.rateP99Ms)
  })
  const vsOneProcess = ratios("1 process")
  const vsRawWs = ratios("raw ws")
  // Two cores shared by the workers, redis and the client: no more than 2 CPU-seconds per second.
  const cpuPerDelivery = median(
    "2 workers",
    (r) => r.serverCpuUsPerDelivery + (r.redisCpuUsPerDelivery ?? 0) + r.clientCpuUsPerDelivery
  )
  const cpuBound = 2e6 / cpuPerDelivery / median("1 process", (r) => r.deliveriesPerSec)
  const ratioLine = (over: Mode, ratio: { throughput: number; p99: number }) =>
    `2 workers / ${over} (medians): throughput ×${ratio.throughput.toFixed(2)}, rate-phase p99 ×${ratio.p99.toFixed(2)}`
  const markdown = [
    `| mode | N | rate p50 ms | rate p99 ms | burst deliveries/s | server CPU µs/delivery | redis CPU µs/delivery | client CPU µs/delivery |`,
    `| --- | --- | --- | --- | --- | --- | --- | --- |`,
    ...rows,
    "",
    ratioLine("1 process", vsOneProcess),
    ratioLine("raw ws", vsRawWs),
    `2 workers' CPU bound on 2 cores: 2 / (server + redis + client CPU per delivery = ${cpuPerDelivery.toFixed(2)} µs) = ×${cpuBound.toFixed(2)} of 1 process`
  ].join("\n")
  console.log(`\n${markdown}`)
  mkdirSync(Path.join(BENCH_DIR, "results"), { recursive: true })
  const file = Path.join(
    BENCH_DIR,
    "results",
    `cluster-${new Date().toISOString().replace(/[:.]/g, "-").slice(0, 19)}.json`
  )
  writeFileSync(file, JSON.stringify({ results, vsOneProcess, vsRawWs, cpuBound, markdown }, null, 2))
  console.log(`\nwritten ${Path.relative(REPO_DIR, file)}`)
}

if (process.argv.includes("--clients")) {
  const at = process.argv.indexOf("--clients")
  const [port, n, from, count] = process.argv.slice(at + 1, at + 5).map(Number)
  void runClients(port!, n!, from!, count!)
} else {
  main().catch((error: unknown) => {
    console.error(error)
    process.exit(1)
  })
}
