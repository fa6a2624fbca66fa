/**
 * Aggregates the generator's result files of one batch: per (server, N, registry config) the
 * median over repetitions of each metric, and the median of same-repetition ratios against the
 * baseline (raw `ws`), which is more robust on a noisy machine than a ratio of medians. Registry
 * scaling compares each server's run with idle subscriptions to its own run without, same rep.
 */
import type { PhaseResult } from "./generator.js"

export interface RunResult {
  readonly meta: {
    readonly server: string
    readonly rep: number
    readonly n: number
    readonly idleRooms: number
    readonly subsPerConn: number
    readonly users: number
    readonly payloadBytes: number
    readonly unexpectedCloses: number
    readonly stray: number
  }
  readonly connect: { readonly perSec: number; readonly failures: number }
  readonly memory: {
    readonly rssPerConnKB: number
    readonly heapPerConnKB: number
    readonly heapDeltaBytes: number
    readonly rssDeltaBytes: number
    readonly connectCpuUsPerConn: number
  }
  readonly phases: {
    readonly warmup: PhaseResult
    readonly rate: PhaseResult
    readonly burst: PhaseResult
    readonly steady: PhaseResult
  }
}

export const BASELINE = "raw-ws"

const METRICS = {
  burstCpuUs: (r: RunResult) => r.phases.burst.server.cpuUsPerDelivery,
  burstDps: (r: RunResult) => r.phases.burst.deliveriesPerSec,
  burstSrvUtil: (r: RunResult) => r.phases.burst.server.cpuUtil,
  burstGenUtil: (r: RunResult) => r.phases.burst.generator.cpuUtil,
  burstSysShare: (r: RunResult) => r.phases.burst.server.sysShare,
  rateP50: (r: RunResult) => r.phases.rate.latencyMs.p50 ?? NaN,
  rateP99: (r: RunResult) => r.phases.rate.latencyMs.p99 ?? NaN,
  rateDps: (r: RunResult) => r.phases.rate.deliveriesPerSec,
  steadyP50: (r: RunResult) => r.phases.steady.latencyMs.p50 ?? NaN,
  steadyP99: (r: RunResult) => r.phases.steady.latencyMs.p99 ?? NaN,
  rateCpuUtil: (r: RunResult) => r.phases.rate.server.cpuUtil,
  rateLagP99: (r: RunResult) => r.phases.rate.server.publishLagP99Ms ?? NaN,
  ratePublishCallUs: (r: RunResult) => r.phases.rate.server.publishCallP50Us,
  heapPerConnKB: (r: RunResult) => r.memory.heapPerConnKB,
  rssPerConnKB: (r: RunResult) => r.memory.rssPerConnKB,
  connectCpuUs: (r: RunResult) => r.memory.connectCpuUsPerConn,
  payloadBytes: (r: RunResult) => r.meta.payloadBytes
} as const
type Metric = keyof typeof METRICS
const RATIO_METRICS: ReadonlyArray<Metric> = [
  "burstCpuUs",
  "burstDps",
  "rateP50",
  "rateP99",
  "steadyP50",
  "steadyP99",
  "heapPerConnKB",
  "rssPerConnKB"
]

export const median = (values: ReadonlyArray<number>): number | null => {
  const sorted = values.filter(Number.isFinite).sort((a, b) => a - b)
  if (sorted.length === 0) return null
  const half = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[half]! : (sorted[half - 1]! + sorted[half]!) / 2
}

export interface Row {
  readonly server: string
  readonly n: number
  readonly idleRooms: number
  readonly subsPerConn: number
  readonly reps: number
  readonly lost: number
  readonly value: Record<Metric, number | null>
  /** Median of same-rep ratios vs the baseline (same N, same registry config). */
  readonly vsBaseline: Partial<Record<Metric, number | null>>
}

export interface RegistryRow {
  readonly server: string
  readonly n: number
  readonly extraSubscriptions: number
  /** Median of same-rep ratios: burst CPU/delivery with the idle subscriptions / without. */
  readonly cpuRatio: number | null
  readonly p99Ratio: number | null
  /** Median over reps of (idle heap with − without) / extra subscriptions. */
  readonly heapBytesPerSubscription: number | null
  readonly rssBytesPerSubscription: number | null
}

const sameConfig = (a: RunResult, b: RunResult) =>
  a.meta.n === b.meta.n && a.meta.idleRooms === b.meta.idleRooms && a.meta.subsPerConn === b.meta.subsPerConn

export const summarize = (
  runs: ReadonlyArray<RunResult>
): { rows: Array<Row>; registry: Array<RegistryRow> } => {
  const groups = new Map<string, Array<RunResult>>()
  for (const run of runs) {
    const key = `${run.meta.server}|${run.meta.n}|${run.meta.idleRooms}|${run.meta.subsPerConn}`
    groups.set(key, [...(groups.get(key) ?? []), run])
  }
  const rows: Array<Row> = []
  for (const group of groups.values()) {
    const { server, n, idleRooms, subsPerConn } = group[0]!.meta
    const value = {} as Record<Metric, number | null>
    for (const metric of Object.keys(METRICS) as Array<Metric>)
      value[metric] = median(group.map(METRICS[metric]))
    const vsBaseline: Partial<Record<Metric, number | null>> = {}
    for (const metric of RATIO_METRICS) {
      vsBaseline[metric] = median(
        group.map((run) => {
          const base = runs.find(
            (b) => b.meta.server === BASELINE && b.meta.rep === run.meta.rep && sameConfig(b, run)
          )
          return base === undefined ? NaN : METRICS[metric](run) / METRICS[metric](base)
        })
      )
    }
    const lost = group.reduce(
      (sum, r) =>
        sum + r.phases.warmup.lost + r.phases.rate.lost + r.phases.burst.lost + r.phases.steady.lost,
      0
    )
    rows.push({ server, n, idleRooms, subsPerConn, reps: group.length, lost, value, vsBaseline })
  }
  const order = (server: string) => (server === BASELINE ? 0 : 1)
  rows.sort(
    (a, b) =>
      a.idleRooms - b.idleRooms ||
      a.n - b.n ||
      order(a.server) - order(b.server) ||
      a.server.localeCompare(b.server)
  )

  const registry: Array<RegistryRow> = []
  for (const row of rows.filter((r) => r.idleRooms > 0)) {
    const withIdle = runs.filter(
      (r) =>
        r.meta.server === row.server &&
        sameConfig(r, groups.get(`${row.server}|${row.n}|${row.idleRooms}|${row.subsPerConn}`)![0]!)
    )
    const pairs = withIdle.flatMap((run) => {
      const without = runs.find(
        (r) =>
          r.meta.server === run.meta.server &&
          r.meta.rep === run.meta.rep &&
          r.meta.n === run.meta.n &&
          r.meta.idleRooms === 0
      )
      return without === undefined ? [] : [{ run, without }]
    })
    const extra = row.n * Math.min(row.subsPerConn, row.idleRooms)
    registry.push({
      server: row.server,
      n: row.n,
      extraSubscriptions: extra,
      cpuRatio: median(
        pairs.map(({ run, without }) => METRICS.burstCpuUs(run) / METRICS.burstCpuUs(without))
      ),
      p99Ratio: median(pairs.map(({ run, without }) => METRICS.rateP99(run) / METRICS.rateP99(without))),
      heapBytesPerSubscription: median(
        pairs.map(({ run, without }) => (run.memory.heapDeltaBytes - without.memory.heapDeltaBytes) / extra)
      ),
      rssBytesPerSubscription: median(
        pairs.map(({ run, without }) => (run.memory.rssDeltaBytes - without.memory.rssDeltaBytes) / extra)
      )
    })
  }
  return { rows, registry }
}

// ------------------------------------------------------------------ markdown
const f0 = (v: number | null) => (v === null ? "–" : Math.round(v).toLocaleString("en-US"))
const f1 = (v: number | null) => (v === null ? "–" : v.toFixed(1))
const f2 = (v: number | null) => (v === null ? "–" : v.toFixed(2))
const pct = (v: number | null) => (v === null ? "–" : `${(v * 100).toFixed(0)}%`)
const rx = (v: number | null | undefined) =>
  v === null || v === undefined || !Number.isFinite(v) ? "–" : `${v.toFixed(2)}x`

export const fanoutMarkdown = (rows: ReadonlyArray<Row>): string => {
  const lines: Array<string> = []
  const main = rows.filter((r) => r.idleRooms === 0)
  lines.push(
    `Medians of ${Math.max(...rows.map((r) => r.reps))} reps; "vs ws" = median of same-rep ratios against \`${BASELINE}\`.`,
    "",
    "| N | server | srv CPU µs/delivery | vs ws | deliveries/s (burst) | vs ws | p50 ms @10k/s cold | vs ws | p99 ms @10k/s cold | vs ws | p50 ms @10k/s steady | vs ws | p99 ms @10k/s steady | vs ws | heap/conn KB | vs ws | RSS/conn KB | vs ws |",
    "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  )
  for (const r of main) {
    const v = r.value
    const x = r.vsBaseline
    lines.push(
      `| ${r.n} | ${r.server} | ${f2(v.burstCpuUs)} | ${rx(x.burstCpuUs)} | ${f0(v.burstDps)} | ${rx(x.burstDps)} | ${f2(v.rateP50)} | ${rx(x.rateP50)} | ${f2(v.rateP99)} | ${rx(x.rateP99)} | ${f2(v.steadyP50)} | ${rx(x.steadyP50)} | ${f2(v.steadyP99)} | ${rx(x.steadyP99)} | ${f2(v.heapPerConnKB)} | ${rx(x.heapPerConnKB)} | ${f1(v.rssPerConnKB)} | ${rx(x.rssPerConnKB)} |`
    )
  }
  lines.push(
    "",
    "Context per cell (medians): server/generator CPU share in the burst, kernel share of server CPU, achieved rate, publisher lag and the wall time of one publish call (per-event work + send loop) in the 10k/s phase, connect cost, payload size, lost deliveries (sum).",
    "",
    "| N | server | rooms M×S | srv CPU (burst) | gen CPU (burst) | srv sys% | achieved/s @10k | srv CPU @10k/s | pub lag p99 ms | publish call p50 µs @10k/s | connect CPU µs/conn | payload B | lost |",
    "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  )
  for (const r of rows) {
    const v = r.value
    lines.push(
      `| ${r.n} | ${r.server} | ${r.idleRooms > 0 ? `${r.idleRooms}×${r.subsPerConn}` : "–"} | ${pct(v.burstSrvUtil)} | ${pct(v.burstGenUtil)} | ${pct(v.burstSysShare)} | ${f0(v.rateDps)} | ${pct(v.rateCpuUtil)} | ${f1(v.rateLagP99)} | ${f0(v.ratePublishCallUs)} | ${f0(v.connectCpuUs)} | ${f0(v.payloadBytes)} | ${r.lost} |`
    )
  }
  return lines.join("\n")
}

export const registryMarkdown = (rows: ReadonlyArray<Row>, registry: ReadonlyArray<RegistryRow>): string => {
  const lines = [
    "| server | N | extra idle subscriptions | srv CPU µs/delivery (with) | vs without (same rep) | p99 @10k/s vs without | vs ws (with) | heap B/subscription | RSS B/subscription |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
  ]
  for (const g of registry) {
    const row = rows.find((r) => r.server === g.server && r.n === g.n && r.idleRooms > 0)
    lines.push(
      `| ${g.server} | ${g.n} | ${f0(g.extraSubscriptions)} | ${f2(row?.value.burstCpuUs ?? null)} | ${rx(g.cpuRatio)} | ${rx(g.p99Ratio)} | ${rx(row?.vsBaseline.burstCpuUs)} | ${f0(g.heapBytesPerSubscription)} | ${f0(g.rssBytesPerSubscription)} |`
    )
  }
  return lines.join("\n")
}

// ------------------------------------------------------------------ connect storm
export interface StormResult {
  readonly meta: {
    readonly server: string
    readonly rep: number
    readonly n: number
    readonly users: number
    readonly subscriptions: number
    readonly failures: number
    readonly unexpectedCloses: number
  }
  readonly timeToAllSubscribedMs: number
  readonly connectToSubscribedMs: { readonly p50: number; readonly p99: number; readonly max: number }
  readonly cpuUsPerConn: number
  readonly cpuShare: { readonly server: number; readonly generator: number }
  readonly memory: {
    readonly peakHeapPerConnKB: number
    readonly peakRssPerConnKB: number
    readonly settledHeapPerConnKB: number
    readonly settledRssPerConnKB: number
  }
  readonly presence: {
    readonly syncFrames: number
    readonly syncBytes: number
    readonly updateFrames: number
  }
}

const STORM_METRICS = {
  timeToAllMs: (r: StormResult) => r.timeToAllSubscribedMs,
  p99Ms: (r: StormResult) => r.connectToSubscribedMs.p99,
  cpuUsPerConn: (r: StormResult) => r.cpuUsPerConn,
  serverCpuShare: (r: StormResult) => r.cpuShare.server,
  generatorCpuShare: (r: StormResult) => r.cpuShare.generator,
  peakHeapKB: (r: StormResult) => r.memory.peakHeapPerConnKB,
  peakRssKB: (r: StormResult) => r.memory.peakRssPerConnKB,
  settledHeapKB: (r: StormResult) => r.memory.settledHeapPerConnKB,
  settledRssKB: (r: StormResult) => r.memory.settledRssPerConnKB,
  presenceSyncFrames: (r: StormResult) => r.presence.syncFrames,
  presenceSyncBytes: (r: StormResult) => r.presence.syncBytes,
  presenceUpdateFrames: (r: StormResult) => r.presence.updateFrames
} as const
type StormMetric = keyof typeof STORM_METRICS
const STORM_RATIOS: ReadonlyArray<StormMetric> = [
  "timeToAllMs",
  "p99Ms",
  "cpuUsPerConn",
  "peakHeapKB",
  "peakRssKB",
  "settledHeapKB",
  "settledRssKB"
]

export interface StormRow {
  readonly server: string
  readonly n: number
  readonly reps: number
  readonly users: number
  readonly subscriptions: number
  readonly value: Record<StormMetric, number | null>
  /** Median of same-rep ratios vs the baseline at the same N. */
  readonly vsBaseline: Partial<Record<StormMetric, number | null>>
}

export const summarizeStorms = (runs: ReadonlyArray<StormResult>): Array<StormRow> => {
  const groups = new Map<string, Array<StormResult>>()
  for (const run of runs) {
    const key = `${run.meta.server}|${run.meta.n}`
    groups.set(key, [...(groups.get(key) ?? []), run])
  }
  const rows: Array<StormRow> = []
  for (const group of groups.values()) {
    const { server, n, users, subscriptions } = group[0]!.meta
    const value = {} as Record<StormMetric, number | null>
    for (const metric of Object.keys(STORM_METRICS) as Array<StormMetric>)
      value[metric] = median(group.map(STORM_METRICS[metric]))
    const vsBaseline: Partial<Record<StormMetric, number | null>> = {}
    for (const metric of STORM_RATIOS) {
      vsBaseline[metric] = median(
        group.map((run) => {
          const base = runs.find(
            (b) => b.meta.server === BASELINE && b.meta.rep === run.meta.rep && b.meta.n === run.meta.n
          )
          return base === undefined ? NaN : STORM_METRICS[metric](run) / STORM_METRICS[metric](base)
        })
      )
    }
    rows.push({ server, n, reps: group.length, users, subscriptions, value, vsBaseline })
  }
  return rows.sort((a, b) => a.n - b.n || (a.server === BASELINE ? -1 : b.server === BASELINE ? 1 : 0))
}

export const stormMarkdown = (rows: ReadonlyArray<StormRow>): string => {
  const lines = [
    "| N | server | users | subscriptions | all subscribed ms | vs ws | connect→subscribed p99 ms | vs ws | srv CPU µs/conn | vs ws | srv / gen CPU share | peak heap KB/conn | vs ws | peak RSS KB/conn | vs ws | settled heap KB/conn | vs ws | settled RSS KB/conn | vs ws | presence_sync frames | presence_sync bytes | presence_update frames |",
    "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  ]
  for (const r of rows) {
    const v = r.value
    const x = r.vsBaseline
    lines.push(
      `| ${r.n} | ${r.server} | ${f0(r.users)} | ${f0(r.subscriptions)} | ${f0(v.timeToAllMs)} | ${rx(x.timeToAllMs)} | ${f1(v.p99Ms)} | ${rx(x.p99Ms)} | ${f0(v.cpuUsPerConn)} | ${rx(x.cpuUsPerConn)} | ${pct(v.serverCpuShare)} / ${pct(v.generatorCpuShare)} | ${f2(v.peakHeapKB)} | ${rx(x.peakHeapKB)} | ${f1(v.peakRssKB)} | ${rx(x.peakRssKB)} | ${f2(v.settledHeapKB)} | ${rx(x.settledHeapKB)} | ${f1(v.settledRssKB)} | ${rx(x.settledRssKB)} | ${f0(v.presenceSyncFrames)} | ${f0(v.presenceSyncBytes)} | ${f0(v.presenceUpdateFrames)} |`
    )
  }
  return lines.join("\n")
}
