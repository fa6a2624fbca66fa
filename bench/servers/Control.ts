/**
 * The control plane every server under test runs, identical for all of them so that only the fanout
 * differs: a publisher loop living in the server process and a small HTTP port (127.0.0.1, port 0)
 * the load generator drives.
 *
 *   GET /stats[?gc=1]             memory + this process's own CPU usage (gc=1: at rest, `settledStats`)
 *   GET /publish?count=E&rate=R   run the publisher; reply when its loop is done
 *   GET /shutdown                 reply, then exit (so `--cpu-prof` writes its profile)
 *
 * On listening it prints one line `READY {"name",...,"wsPort","ctrlPort","pid"}` that the runner
 * waits for. The process always ends by itself after `BENCH_MAX_LIFETIME_MS`.
 */
import * as Http from "node:http"
import { setTimeout as sleep } from "node:timers/promises"
import * as V8 from "node:v8"
import { nowUs } from "../Workload.js"

/** Publishes event number `seq`; a returned promise is awaited before the next event. */
export type Publish = (seq: number) => void | Promise<void>

const MAX_EVENTS_PER_PUBLISH = 1_000_000

const envNumber = (key: string, fallback: number): number => {
  const raw = process.env[key]
  const value = raw === undefined ? fallback : Number(raw)
  if (!Number.isFinite(value)) throw new Error(`${key} must be a number, got "${raw}"`)
  return value
}

const maxLifetimeMs = envNumber("BENCH_MAX_LIFETIME_MS", 180_000)

const percentile = (sorted: Float64Array, p: number): number =>
  sorted.length === 0
    ? 0
    : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!

const stats = () => {
  const memory = process.memoryUsage()
  const cpu = process.cpuUsage()
  // Committed bytes per V8 space: tells a young generation grown by the connect burst from live data.
  const spaces = Object.fromEntries(V8.getHeapSpaceStatistics().map((s) => [s.space_name, s.space_size]))
  return {
    spaces,
    rss: memory.rss,
    heapUsed: memory.heapUsed,
    heapTotal: memory.heapTotal,
    external: memory.external,
    arrayBuffers: memory.arrayBuffers,
    cpuUserUs: cpu.user,
    cpuSystemUs: cpu.system,
    tUs: nowUs()
  }
}

const RSS_POLL_MS = 100
const RSS_STABLE_POLLS = 5
const RSS_SETTLE_MAX_MS = 3000

/**
 * Memory at rest: two forced GCs, then RSS once it has not fallen for `RSS_STABLE_POLLS` polls (at
 * most `RSS_SETTLE_MAX_MS`). V8 sweeps and returns the pages a GC freed to the OS on background
 * threads after `gc()` returns: RSS read at once still counts them (up to 40 MB after a storm).
 */
const settledStats = async () => {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc !== undefined) {
    gc()
    gc()
  }
  const from = nowUs()
  let lowest = process.memoryUsage().rss
  let stablePolls = 0
  while (stablePolls < RSS_STABLE_POLLS && nowUs() - from < RSS_SETTLE_MAX_MS * 1000) {
    await sleep(RSS_POLL_MS)
    const rss = process.memoryUsage().rss
    stablePolls = rss < lowest ? 0 : stablePolls + 1
    lowest = Math.min(lowest, rss)
  }
  return { ...stats(), settleMs: (nowUs() - from) / 1000 }
}

export type ServerStats = ReturnType<typeof stats> & {
  readonly settleMs?: number
  readonly name: string
  readonly gcAvailable: boolean
  readonly info: Record<string, unknown>
}

/**
 * `rate > 0`: event i is due at t0 + i/rate (late events go at once, their lag is recorded);
 * `rate == 0` (burst): back to back, one event per macrotask so socket I/O interleaves.
 */
const runPublisher = async (count: number, rate: number, publish: Publish, firstSeq: number) => {
  const lags = new Float64Array(count)
  // Wall time of each publish call: the per-event fixed cost (encode, routing) plus the send loop.
  const calls = new Float64Array(count)
  const intervalUs = rate > 0 ? 1e6 / rate : 0
  const t0 = nowUs() + 2000
  const startUs = nowUs()
  for (let i = 0; i < count; i++) {
    if (rate > 0) {
      const due = t0 + i * intervalUs
      let now = nowUs()
      if (due > now) {
        await sleep(Math.max(1, Math.round((due - now) / 1000)))
        now = nowUs()
      }
      lags[i] = Math.max(0, now - due)
    } else {
      await new Promise<void>((resolve) => setImmediate(resolve))
    }
    const callStart = nowUs()
    const pending = publish(firstSeq + i)
    if (pending !== undefined) await pending
    calls[i] = nowUs() - callStart
  }
  const endUs = nowUs()
  lags.sort()
  calls.sort()
  return {
    count,
    rate,
    publishLoopMs: (endUs - startUs) / 1000,
    publishCallP50Us: percentile(calls, 50),
    publishCallP99Us: percentile(calls, 99),
    lagP99Ms: rate > 0 ? percentile(lags, 99) / 1000 : null,
    lagMaxMs: rate > 0 ? lags[count - 1]! / 1000 : null
  }
}
export type PublishReport = Awaited<ReturnType<typeof runPublisher>> & { readonly loopCpuUs: number }

export interface ControlOptions {
  readonly name: string
  readonly wsPort: number
  readonly publish: Publish
  /** Extra facts for the result file (evaluated at each /stats). */
  readonly info?: () => Record<string, unknown>
}

export const startControl = (options: ControlOptions): Http.Server => {
  let seq = 0
  let busy = false
  const server = Http.createServer((request, response) => {
    const url = new URL(request.url ?? "/", "http://control")
    const reply = (code: number, body: unknown) => {
      response.writeHead(code, { "content-type": "application/json", connection: "close" })
      response.end(JSON.stringify(body))
    }
    if (url.pathname === "/stats") {
      const common = {
        name: options.name,
        gcAvailable: typeof (globalThis as { gc?: unknown }).gc === "function"
      }
      if (url.searchParams.get("gc") !== "1")
        return reply(200, { ...common, ...stats(), info: options.info?.() ?? {} })
      void settledStats().then((settled) =>
        reply(200, { ...common, ...settled, info: options.info?.() ?? {} })
      )
      return
    }
    if (url.pathname === "/publish") {
      if (busy) return reply(409, { error: "busy" })
      const count = Math.min(Math.max(1, Number(url.searchParams.get("count") ?? 1)), MAX_EVENTS_PER_PUBLISH)
      const rate = Math.max(0, Number(url.searchParams.get("rate") ?? 0))
      if (!Number.isFinite(count) || !Number.isFinite(rate)) return reply(400, { error: "bad count or rate" })
      busy = true
      const cpu0 = process.cpuUsage()
      runPublisher(count, rate, options.publish, seq).then(
        (report) => {
          seq += count
          busy = false
          const cpu = process.cpuUsage(cpu0)
          reply(200, { ...report, loopCpuUs: cpu.user + cpu.system })
        },
        (error: unknown) => {
          busy = false
          reply(500, { error: String(error instanceof Error ? error.stack : error) })
        }
      )
      return
    }
    if (url.pathname === "/shutdown") {
      reply(200, { ok: true })
      setTimeout(() => process.exit(0), 50)
      return
    }
    reply(404, { error: "not found" })
  })
  server.listen(0, "127.0.0.1", () => {
    const address = server.address()
    const ctrlPort = typeof address === "object" && address !== null ? address.port : -1
    process.stdout.write(
      `READY ${JSON.stringify({ name: options.name, wsPort: options.wsPort, ctrlPort, pid: process.pid })}\n`
    )
  })
  setTimeout(() => {
    process.stderr.write(`[${options.name}] max lifetime ${maxLifetimeMs} ms reached, exiting\n`)
    process.exit(3)
  }, maxLifetimeMs).unref()
  return server
}
