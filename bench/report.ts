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
  readonly phases: { readonly warmup: PhaseResult; readonly rate: PhaseResult; readonly burst: PhaseResult }
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
      (sum, r) => sum + r.phases.warmup.lost + r.phases.rate.lost + r.phases.burst.lost,
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
    "| N | server | srv CPU µs/delivery | vs ws | deliveries/s (burst) | vs ws | p50 ms @10k/s | vs ws | p99 ms @10k/s | vs ws | heap/conn KB | vs ws | RSS/conn KB | vs ws |",
    "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  )
  for (const r of main) {
    const v = r.value
    const x = r.vsBaseline
    lines.push(
      `| ${r.n} | ${r.server} | ${f2(v.burstCpuUs)} | ${rx(x.burstCpuUs)} | ${f0(v.burstDps)} | ${rx(x.burstDps)} | ${f2(v.rateP50)} | ${rx(x.rateP50)} | ${f2(v.rateP99)} | ${rx(x.rateP99)} | ${f2(v.heapPerConnKB)} | ${rx(x.heapPerConnKB)} | ${f1(v.rssPerConnKB)} | ${rx(x.rssPerConnKB)} |`
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
