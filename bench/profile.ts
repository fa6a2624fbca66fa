/**
 * Reads a V8 `.cpuprofile` (from `node --cpu-prof` on the server process) and attributes self time
 * to functions and to coarse buckets (our server code, protocol, effect, ws, node internals, GC,
 * native/"program"), so docs/BENCHMARKS.md can say where the time goes.
 */
import { readFileSync } from "node:fs"

interface ProfileNode {
  readonly id: number
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number }
  readonly hitCount?: number
}
interface CpuProfile {
  readonly nodes: ReadonlyArray<ProfileNode>
  readonly startTime: number
  readonly endTime: number
  readonly samples: ReadonlyArray<number>
  readonly timeDeltas: ReadonlyArray<number>
}

const bucketOf = (url: string, functionName: string): string => {
  if (url === "") {
    if (functionName === "(garbage collector)") return "GC"
    if (functionName === "(idle)") return "idle"
    if (functionName === "(program)") return "(program): native, incl. syscalls"
    return `native: ${functionName || "(anonymous)"}`
  }
  const packageMatch = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)
  if (packageMatch !== null) return `npm: ${packageMatch[1]}`
  const srcMatch = /\/src\/(server|protocol|client)\/([^/]+)$/.exec(url)
  if (srcMatch !== null) return `src/${srcMatch[1]}/${srcMatch[2]}`
  if (url.includes("/bench/")) return "bench harness"
  if (url.startsWith("node:")) return `node: ${url.slice(5).split("/")[0]}`
  return url
}

export interface ProfileSummary {
  readonly file: string
  readonly totalMs: number
  readonly busyMs: number
  /** Shares of busy (non-idle) time. */
  readonly buckets: ReadonlyArray<{ readonly bucket: string; readonly ms: number; readonly share: number }>
  readonly functions: ReadonlyArray<{
    readonly name: string
    readonly where: string
    readonly ms: number
    readonly share: number
  }>
}

/**
 * `window` (CLOCK_MONOTONIC µs, the clock V8 stamps samples with) keeps only the samples of the
 * measured phases, so process start-up, module loading and the connect phase do not dilute them.
 */
export const summarizeProfile = (
  file: string,
  window: readonly [number, number] | null,
  top = 25
): ProfileSummary => {
  const profile = JSON.parse(readFileSync(file, "utf8")) as CpuProfile
  const byId = new Map(profile.nodes.map((node) => [node.id, node]))
  const selfUs = new Map<number, number>()
  let at = profile.startTime
  for (let i = 0; i < profile.samples.length; i++) {
    const delta = profile.timeDeltas[i] ?? 0
    at += delta
    if (window !== null && (at < window[0] || at > window[1])) continue
    const id = profile.samples[i]!
    selfUs.set(id, (selfUs.get(id) ?? 0) + delta)
  }
  const buckets = new Map<string, number>()
  const functions = new Map<string, { name: string; where: string; us: number }>()
  let idleUs = 0
  let totalUs = 0
  for (const [id, us] of selfUs) {
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame
    totalUs += us
    const bucket = bucketOf(url, functionName)
    if (bucket === "idle") {
      idleUs += us
      continue
    }
    buckets.set(bucket, (buckets.get(bucket) ?? 0) + us)
    const where =
      url === "" ? "" : `${url.replace(/^.*\/(node_modules|src|bench)\//, "$1/")}:${lineNumber + 1}`
    const key = `${functionName}|${where}`
    const entry = functions.get(key) ?? { name: functionName || "(anonymous)", where, us: 0 }
    entry.us += us
    functions.set(key, entry)
  }
  const busyUs = totalUs - idleUs
  return {
    file,
    totalMs: totalUs / 1000,
    busyMs: busyUs / 1000,
    buckets: [...buckets]
      .sort((a, b) => b[1] - a[1])
      .map(([bucket, us]) => ({ bucket, ms: us / 1000, share: us / busyUs })),
    functions: [...functions.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, top)
      .map((f) => ({ name: f.name, where: f.where, ms: f.us / 1000, share: f.us / busyUs }))
  }
}

/** `deliveries` in the profiled window turns milliseconds into µs per delivery. */
export const profileMarkdown = (summary: ProfileSummary, deliveries: number): string => {
  const pct = (share: number) => `${(share * 100).toFixed(1)}%`
  const perDelivery = (ms: number) => ((ms * 1000) / deliveries).toFixed(3)
  const lines = [
    `Measured phases (warmup, 10k/s, burst, steady 10k/s; ${deliveries.toLocaleString("en-US")} deliveries): ` +
      `${summary.busyMs.toFixed(0)} ms busy of ${summary.totalMs.toFixed(0)} ms sampled = ` +
      `${perDelivery(summary.busyMs)} µs per delivery; shares are of busy time.`,
    "",
    "| bucket | ms | µs/delivery | share |",
    "|---|---:|---:|---:|",
    ...summary.buckets
      .filter((b) => b.share >= 0.002)
      .map((b) => `| ${b.bucket} | ${b.ms.toFixed(0)} | ${perDelivery(b.ms)} | ${pct(b.share)} |`),
    "",
    "| self time: function | where | ms | share |",
    "|---|---|---:|---:|",
    ...summary.functions.map(
      (f) => `| \`${f.name}\` | ${f.where || "native"} | ${f.ms.toFixed(0)} | ${pct(f.share)} |`
    )
  ]
  return lines.join("\n")
}
