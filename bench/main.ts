/**
 * `npm run bench` / `npm run bench:smoke`: the whole benchmark in one invocation.
 *
 *  1. End-to-end fanout: raw `ws` baseline and the gateway, REPS × N, interleaved (every rep runs
 *     every server at a given N back to back, in rotated order, so machine noise hits both alike).
 *  2. Registry scaling: the same hot-channel broadcast with N×S extra subscriptions in M idle
 *     channels (spread over idle guilds), compared with the run without, same rep.
 *  3. Micro-benchmarks on one pinned core: in-process dispatch (512 listeners × 128 iterations on
 *     the channel / guild / user paths, enqueue only), ingress decode rate, registry churn (µs
 *     per subscribe / disconnect as one channel grows to 50 000 members), and client decode (ns per
 *     event frame, generated decoders vs Effect Schema).
 *  4. Missed-event recovery (bench/recovery.ts): a reconnect storm of opted-in clients that missed
 *     events, replay vs live CPU, bytes per retained event, and the steady-state cost of opting in.
 *  5. Optionally (`--profile`) one extra run per server at N=1000 under `node --cpu-prof`, summarized.
 *
 * Output: bench/results/<batch>/{results.json,results.md} plus every raw run file. Smoke mode runs
 * tiny sizes in seconds and fails (exit 1) if any part of the harness breaks; it asserts no speed.
 *
 * flags: --smoke  --ns 100,1000,5000  --storm-ns 1000,10000,50000  --reps 3
 *        --servers raw-ws,gateway[,gateway-recovery]  --skip fanout,storm,registry,micro,recovery
 *        --profile  --batch <name>  --server-flags "<node flags>" (diagnosis only: both servers get them,
 *        the report says so and the targets are not judged)
 */
import { spawn, spawnSync } from "node:child_process"
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { profileMarkdown, summarizeProfile, type ProfileSummary } from "./profile.js"
import {
  fanoutMarkdown,
  registryMarkdown,
  stormMarkdown,
  summarize,
  summarizeStorms,
  type RegistryRow,
  type Row,
  type RunResult,
  type StormResult,
  type StormRow
} from "./report.js"
import { recoveryFailures, recoveryMarkdown, runRecovery, type RecoveryResult } from "./recovery.js"
import {
  BENCH_DIR,
  FILE_HEADROOM,
  FILE_LIMIT,
  PINNING,
  REPO_DIR,
  runOne,
  runStorm,
  type ServerSpec
} from "./Runner.js"
import {
  FULL_SHAPE,
  SMOKE_SHAPE,
  SMOKE_STORM_LAYOUT,
  STORM_HANDSHAKES_IN_FLIGHT,
  STORM_LAYOUT
} from "./Workload.js"

const argValue = (name: string): string | undefined => {
  const at = process.argv.indexOf(`--${name}`)
  return at < 0 ? undefined : process.argv[at + 1]
}
const hasFlag = (name: string) => process.argv.includes(`--${name}`)
const listArg = (name: string, fallback: ReadonlyArray<string>) => argValue(name)?.split(",") ?? fallback

const smoke = hasFlag("smoke")
const shape = smoke ? SMOKE_SHAPE : FULL_SHAPE
const ns = listArg("ns", smoke ? ["20"] : ["100", "1000", "5000"]).map(Number)
const stormNs = listArg("storm-ns", smoke ? ["40"] : ["1000", "10000", "50000"]).map(Number)
const stormLayout = smoke ? SMOKE_STORM_LAYOUT : STORM_LAYOUT
const reps = Number(argValue("reps") ?? (smoke ? 1 : 3))
const skip = new Set(listArg("skip", []))
/** Extra node flags for every server process (e.g. `--trace-opt`): a diagnosis, not the agreed workload. */
const serverFlags = (argValue("server-flags") ?? "").split(" ").filter((flag) => flag !== "")
const registryConfig = smoke
  ? { n: 20, idleRooms: 10, subsPerConn: 2 }
  : { n: 5000, idleRooms: 1000, subsPerConn: 20 }
const batch =
  argValue("batch") ?? (smoke ? "smoke" : new Date().toISOString().replace(/[:.]/g, "-").slice(0, 19))
const dir = Path.join(BENCH_DIR, "results", batch)
// The smoke batch is rewritten each time, so stale run files cannot leak into its report.
if (smoke) rmSync(dir, { recursive: true, force: true })
mkdirSync(dir, { recursive: true })

/** HS256 secret and publish key of the bench gateway (bench-only values, never a deployment's). */
const JWT_SECRET = "bench-only-jwt-secret-0123456789abcdef"
const PUBLISH_KEY = "bench-only-publish-key-0123456789abcdef"
/** The gateway's default `GATEWAY_MAX_CONNECTIONS_PER_USER`; the bench keeps the default. */
const CONNECTIONS_PER_USER = 32

const GATEWAY: ServerSpec = {
  name: "gateway",
  entry: "servers/gateway.ts",
  env: {
    GATEWAY_JWT_SECRET: JWT_SECRET,
    GATEWAY_PUBLISH_KEY: PUBLISH_KEY,
    GATEWAY_HOST: "127.0.0.1",
    GATEWAY_PORT: "0"
  },
  jwtSecret: JWT_SECRET,
  users: (n) => Math.ceil(n / CONNECTIONS_PER_USER)
}
const SERVERS: Record<string, ServerSpec> = {
  "raw-ws": { name: "raw-ws", entry: "servers/raw-ws.ts", env: {}, jwtSecret: null, users: () => 1 },
  gateway: GATEWAY,
  // The same gateway with every client opted in to missed-event recovery: its frames carry `pos`.
  "gateway-recovery": { ...GATEWAY, name: "gateway-recovery", query: "&recovery=1" }
}
const servers = listArg("servers", ["raw-ws", "gateway"]).map((name) => {
  const spec = SERVERS[name]
  if (spec === undefined)
    throw new Error(`unknown server "${name}" (known: ${Object.keys(SERVERS).join(", ")})`)
  return spec
})

const failures: Array<string> = []
/** Sizes this machine cannot run (a server holds one descriptor per client socket), with why. */
const notRunnable: Array<string> = []
const fitsFileLimit = (what: string, n: number) => {
  if (n + FILE_HEADROOM <= FILE_LIMIT) return true
  const note = `${what} N=${n}: not run, the file-descriptor hard limit here is ${FILE_LIMIT} (\`ulimit -Hn\`) and a server needs N + ${FILE_HEADROOM}`
  if (!notRunnable.includes(note)) notRunnable.push(note)
  return false
}

const runMatrix = async (n: number, rep: number, idleRooms: number, subsPerConn: number) => {
  if (!fitsFileLimit("fanout", n)) return
  for (let k = 0; k < servers.length; k++) {
    const server = servers[(k + rep - 1) % servers.length]!
    const tag = idleRooms > 0 ? `-M${idleRooms}xS${subsPerConn}` : ""
    const out = Path.join(dir, `${server.name}-N${n}${tag}-r${rep}.json`)
    process.stdout.write(`== rep ${rep} N=${n}${tag} ${server.name}\n`)
    try {
      await runOne({ server, rep, n, shape, idleRooms, subsPerConn, out, serverNodeFlags: serverFlags })
    } catch (error) {
      failures.push(`${server.name} N=${n}${tag} rep ${rep}: ${(error as Error).message}`)
      process.stdout.write(`!! ${failures.at(-1)}\n`)
    }
  }
}

/** One connect storm of N clients per server, in rotated order (as the matrix). */
const runStorms = async (n: number, rep: number) => {
  if (!fitsFileLimit("storm", n)) return
  for (let k = 0; k < servers.length; k++) {
    const server = servers[(k + rep - 1) % servers.length]!
    process.stdout.write(`== rep ${rep} storm N=${n} ${server.name}\n`)
    try {
      await runStorm({
        server,
        rep,
        n,
        layout: stormLayout,
        out: Path.join(dir, `storm-${server.name}-N${n}-r${rep}.json`),
        serverNodeFlags: serverFlags
      })
    } catch (error) {
      failures.push(`storm ${server.name} N=${n} rep ${rep}: ${(error as Error).message}`)
      process.stdout.write(`!! ${failures.at(-1)}\n`)
    }
  }
}

/** Runs a micro-benchmark in its own process on CPU 0 (same core the servers get). */
const runMicro = (script: string, args: ReadonlyArray<string>, out: string): Promise<unknown> =>
  new Promise((resolve, reject) => {
    const pin = PINNING === "none" ? [] : ["taskset", "-c", "0"]
    const argv = [
      ...pin,
      process.execPath,
      "--expose-gc",
      "--import",
      "tsx",
      Path.join(BENCH_DIR, "micro", script),
      ...args,
      "--out",
      out
    ]
    const child = spawn(argv[0]!, argv.slice(1), { cwd: REPO_DIR, stdio: ["ignore", "inherit", "inherit"] })
    const timer = setTimeout(() => child.kill("SIGKILL"), 300_000)
    child.once("exit", (code) => {
      clearTimeout(timer)
      if (code !== 0) return reject(new Error(`${script} exited with ${code}`))
      resolve(JSON.parse(readFileSync(out, "utf8")))
    })
  })

const readJson = <A>(pattern: RegExp): Array<A> =>
  readdirSync(dir)
    .filter((f) => pattern.test(f))
    .map((f) => JSON.parse(readFileSync(Path.join(dir, f), "utf8")) as A)
const readRuns = () => readJson<RunResult>(/^(?!storm-).*-r\d+\.json$/)
const readStorms = () => readJson<StormResult>(/^storm-.*-r\d+\.json$/)

/** Smoke checks: the harness produced every run, nothing was lost, nothing closed unexpectedly. */
const checkRuns = (runs: ReadonlyArray<RunResult>) => {
  for (const run of runs) {
    const where = `${run.meta.server} N=${run.meta.n} M=${run.meta.idleRooms} rep ${run.meta.rep}`
    for (const phase of [run.phases.warmup, run.phases.rate, run.phases.burst, run.phases.steady]) {
      if (phase.lost > 0 || phase.timedOut)
        failures.push(`${where}: ${phase.name} lost ${phase.lost} deliveries`)
      if (!Number.isFinite(phase.server.cpuUsPerDelivery) || !(phase.latencyMs.p99! >= 0)) {
        failures.push(`${where}: ${phase.name} produced no numbers`)
      }
    }
    if (run.meta.unexpectedCloses > 0)
      failures.push(`${where}: ${run.meta.unexpectedCloses} sockets closed unexpectedly`)
    if (run.meta.stray > 0) failures.push(`${where}: ${run.meta.stray} deliveries outside any phase`)
  }
}

interface DispatchResult {
  readonly listeners: number
  readonly iterations: number
  readonly paths: ReadonlyArray<{
    readonly path: string
    readonly totalMs: number
    readonly nsPerDispatch: number
  }>
}
interface ChurnTimes {
  readonly subscribeUs: number
  readonly disconnectUs: number
}
interface ChurnResult {
  readonly cases: ReadonlyArray<{
    readonly members: number
    readonly registry: ChurnTimes
    readonly mapSet: ChurnTimes
  }>
}
interface IngressResult {
  readonly cases: ReadonlyArray<{
    readonly name: string
    readonly valid: boolean
    readonly perSec: number
    readonly nsPerOp: number
  }>
  readonly valid: { readonly perSec: number }
  readonly rejected: { readonly perSec: number }
}

interface DecodeTimes {
  readonly generatedNs: number
  readonly effectNs: number
  readonly speedup: number
}
interface DecodeResult {
  readonly mixes: ReadonlyArray<{
    readonly name: string
    readonly frames: number
    readonly meanBytes: number
    readonly frame: DecodeTimes
    readonly payload: DecodeTimes
  }>
}

const targetLines = (
  rows: ReadonlyArray<Row>,
  storms: ReadonlyArray<StormRow>,
  registry: ReadonlyArray<RegistryRow>,
  dispatch: DispatchResult | null
) => {
  const lines: Array<string> = []
  const check = (label: string, value: number | null | undefined, bound: number) => {
    const ok = value !== null && value !== undefined && value <= bound
    lines.push(
      `- ${ok ? "met" : "MISSED"}: ${label} = ${value === null || value === undefined ? "n/a" : value.toFixed(2)} (target ≤ ${bound})`
    )
  }
  for (const row of rows.filter((r) => r.server === "gateway" && r.idleRooms === 0)) {
    if (row.n >= 1000) check(`CPU/delivery vs ws at N=${row.n}`, row.vsBaseline.burstCpuUs, 1.0)
    check(`p99 @10k/s (cold) vs ws at N=${row.n}`, row.vsBaseline.rateP99, 1.2)
    // Issue 18: the large-N broadcast must match raw `ws` outright.
    check(`p99 @10k/s (steady) vs ws at N=${row.n}`, row.vsBaseline.steadyP99, row.n >= 10_000 ? 1.0 : 1.2)
    if (row.n >= 1000) {
      // Issue 18 tightens the idle-memory bound to 1.3x from N = 5000 up.
      const bound = row.n >= 5000 ? 1.3 : 1.5
      check(`heap/conn vs ws at N=${row.n}`, row.vsBaseline.heapPerConnKB, bound)
      check(`RSS/conn vs ws at N=${row.n}`, row.vsBaseline.rssPerConnKB, bound)
    }
  }
  for (const s of storms.filter((r) => r.server === "gateway")) {
    check(`storm connect CPU/conn vs ws at N=${s.n}`, s.vsBaseline.cpuUsPerConn, 1.5)
    if (s.n === 10_000) check(`storm time to all subscribed vs ws at N=${s.n}`, s.vsBaseline.timeToAllMs, 1.5)
  }
  for (const g of registry.filter((r) => r.server === "gateway")) {
    check(`hot broadcast CPU with ${g.extraSubscriptions} idle subscriptions vs without`, g.cpuRatio, 1.1)
  }
  for (const p of dispatch?.paths ?? []) check(`in-process dispatch ns (${p.path})`, p.nsPerDispatch, 500)
  return lines
}

/** A report section: its title, then "not run" or the lines of its result. */
const section = <A>(title: string, result: A | null, lines: (result: A) => ReadonlyArray<string>) => [
  "",
  `## ${title}`,
  "",
  ...(result === null ? ["not run"] : lines(result))
]

const main = async () => {
  const started = Date.now()
  if (!skip.has("fanout")) {
    for (let rep = 1; rep <= reps; rep++) for (const n of ns) await runMatrix(n, rep, 0, 0)
  }
  if (!skip.has("storm")) {
    for (let rep = 1; rep <= reps; rep++) for (const n of stormNs) await runStorms(n, rep)
  }
  if (!skip.has("registry")) {
    const { n, idleRooms, subsPerConn } = registryConfig
    for (let rep = 1; rep <= reps; rep++) {
      // The registry comparison needs the run without idle subscriptions at the same N and rep.
      if (skip.has("fanout") || !ns.includes(n)) await runMatrix(n, rep, 0, 0)
      await runMatrix(n, rep, idleRooms, subsPerConn)
    }
  }
  /** One micro-benchmark's result (`bench/micro/<name>.ts`), or null with the failure recorded. */
  const micro = async <A>(name: string, args: ReadonlyArray<string>): Promise<A | null> => {
    if (skip.has("micro")) return null
    try {
      return (await runMicro(`${name}.ts`, args, Path.join(dir, `micro-${name}.json`))) as A
    } catch (error) {
      failures.push(`${name} micro-benchmark: ${(error as Error).message}`)
      return null
    }
  }
  const dispatch = await micro<DispatchResult>(
    "dispatch",
    smoke ? ["--listeners", "64", "--iterations", "8", "--rounds", "1"] : []
  )
  const ingress = await micro<IngressResult>("ingress", ["--seconds", smoke ? "0.05" : "1"])
  const churn = await micro<ChurnResult>("churn", ["--members", smoke ? "200" : "5000,50000"])
  const decode = await micro<DecodeResult>("decode", ["--seconds", smoke ? "0.05" : "1"])
  let recovery: RecoveryResult | null = null
  if (!skip.has("recovery")) {
    process.stdout.write("== missed-event recovery\n")
    try {
      recovery = await runRecovery({ server: GATEWAY, smoke, dir })
      failures.push(...recoveryFailures(recovery))
    } catch (error) {
      failures.push(`recovery: ${(error as Error).message}`)
    }
  }
  const profiles: Array<{
    readonly server: string
    readonly deliveries: number
    readonly summary: ProfileSummary
  }> = []
  if (hasFlag("profile")) {
    // One extra run per server under `node --cpu-prof`, so the gateway's profile reads against the baseline's.
    for (const server of servers) {
      const profileDir = Path.join(dir, "profile", server.name)
      rmSync(profileDir, { recursive: true, force: true })
      mkdirSync(profileDir, { recursive: true })
      try {
        const profiled = await runOne({
          server,
          rep: 0,
          n: smoke ? 20 : 1000,
          shape,
          idleRooms: 0,
          subsPerConn: 0,
          out: Path.join(profileDir, "profiled-run.json"),
          serverNodeFlags: [...serverFlags, "--cpu-prof", `--cpu-prof-dir=${profileDir}`]
        })
        const file = readdirSync(profileDir).find((f) => f.endsWith(".cpuprofile"))
        if (file === undefined) throw new Error("no .cpuprofile written")
        const run = JSON.parse(readFileSync(profiled, "utf8")) as RunResult & {
          meta: { measuredWindowUs: [number, number] }
        }
        const { warmup, rate, burst, steady } = run.phases
        profiles.push({
          server: server.name,
          deliveries: warmup.delivered + rate.delivered + burst.delivered + steady.delivered,
          summary: summarizeProfile(Path.join(profileDir, file), run.meta.measuredWindowUs)
        })
      } catch (error) {
        failures.push(`profile ${server.name}: ${(error as Error).message}`)
      }
    }
  }

  const runs = readRuns()
  checkRuns(runs)
  const { rows, registry } = summarize(runs)
  const stormRuns = readStorms()
  for (const run of stormRuns) {
    if (run.meta.failures > 0 || run.meta.unexpectedCloses > 0)
      failures.push(
        `storm ${run.meta.server} N=${run.meta.n} rep ${run.meta.rep}: ${run.meta.failures} failed, ${run.meta.unexpectedCloses} closed`
      )
  }
  const storms = summarizeStorms(stormRuns)
  const cpu = Os.cpus()
  const machine = {
    nproc: Os.availableParallelism(),
    cpuModel: cpu[0]?.model ?? "unknown",
    memGB: Math.round(Os.totalmem() / 2 ** 30),
    node: process.version,
    kernel: `${Os.type()} ${Os.release()}`,
    pinning: PINNING
  }
  const git = (...args: Array<string>) =>
    spawnSync("git", args, { cwd: REPO_DIR, encoding: "utf8" }).stdout.trim()
  // What was measured: the commit, and any uncommitted change under src/ (the server is built from it).
  const code = {
    commit: git("rev-parse", "--short", "HEAD"),
    uncommittedInSrc: git("status", "--porcelain", "--", "src").split("\n").filter(Boolean)
  }
  const targets = smoke || serverFlags.length > 0 ? [] : targetLines(rows, storms, registry, dispatch)
  const md = [
    `# Benchmark batch \`${batch}\`${smoke ? " (smoke: tiny sizes, numbers mean nothing)" : ""}`,
    "",
    `Machine: ${machine.nproc} CPUs (${machine.cpuModel}), ${machine.memGB} GB, ${machine.kernel}, Node ${machine.node}; pinning ${machine.pinning}.`,
    `Code: commit ${code.commit}${code.uncommittedInSrc.length > 0 ? ` plus uncommitted changes in ${code.uncommittedInSrc.length} file(s) under src/` : ""}.`,
    ...(serverFlags.length > 0
      ? [
          `Diagnosis: every server ran with \`node ${serverFlags.join(" ")}\`; not the agreed workload, targets not judged.`
        ]
      : []),
    `Shape: warmup ${shape.warmupDeliveries} deliveries, ${shape.rateDeliveriesPerSec}/s for ${shape.rateSeconds} s, burst ${shape.burstDeliveries} deliveries; reps ${reps}.`,
    "",
    "## Fanout",
    "",
    fanoutMarkdown(rows),
    "",
    ...section("Connect storm", storms.length === 0 ? null : storms, (rows) => [
      `N clients connect at once (at most ${STORM_HANDSHAKES_IN_FLIGHT} handshakes pending), authenticate and subscribe: guilds of ${stormLayout.usersPerGuild} users, ${stormLayout.channelsPerGuild} channels each; ${stormLayout.connectionsPerUser} connections per user, ${stormLayout.subscriptionsPerConnection} subscriptions per connection. Medians of ${Math.max(...rows.map((r) => r.reps))} reps; "vs ws" = median of same-rep ratios.`,
      "",
      stormMarkdown(rows)
    ]),
    "",
    "## Registry scaling",
    "",
    registryMarkdown(rows, registry),
    ...section("In-process dispatch (enqueue only)", dispatch, (result) => [
      `${result.listeners} listeners × ${result.iterations} iterations.`,
      "",
      "| path | total ms | ns per dispatch |",
      "|---|---:|---:|",
      ...result.paths.map((p) => `| ${p.path} | ${p.totalMs.toFixed(3)} | ${p.nsPerDispatch.toFixed(1)} |`)
    ]),
    ...section("Ingress decode (one core)", ingress, (result) => [
      "| frame | valid | decodes/s | ns/decode |",
      "|---|---|---:|---:|",
      ...result.cases.map(
        (c) =>
          `| ${c.name} | ${c.valid ? "yes" : "rejected"} | ${Math.round(c.perSec).toLocaleString("en-US")} | ${Math.round(c.nsPerOp)} |`
      ),
      `| **mix of valid frames** | | ${Math.round(result.valid.perSec).toLocaleString("en-US")} | |`,
      `| **mix of rejected frames** | | ${Math.round(result.rejected.perSec).toLocaleString("en-US")} | |`
    ]),
    ...section(
      "Registry churn (one channel, K members subscribe then disconnect; µs per change)",
      churn,
      (result) => [
        "| members | registry subscribe | registry disconnect | Map/Set subscribe | Map/Set disconnect |",
        "|---:|---:|---:|---:|---:|",
        ...result.cases.map(
          (c) =>
            `| ${c.members.toLocaleString("en-US")} | ${c.registry.subscribeUs.toFixed(2)} | ${c.registry.disconnectUs.toFixed(2)} | ${c.mapSet.subscribeUs.toFixed(3)} | ${c.mapSet.disconnectUs.toFixed(3)} |`
        )
      ]
    ),
    ...section(
      "Client decode (one core; ns per frame, generated decoders vs Effect Schema)",
      decode,
      (result) => [
        "| mix | frames | mean bytes | what | generated ns | Effect Schema ns | speed-up |",
        "|---|---:|---:|---|---:|---:|---:|",
        ...result.mixes.flatMap((mix) =>
          (["frame", "payload"] as const).map((what) => {
            const m = mix[what]
            return `| ${mix.name} | ${mix.frames} | ${mix.meanBytes} | ${what} | ${Math.round(m.generatedNs)} | ${Math.round(m.effectNs)} | ×${m.speedup.toFixed(1)} |`
          })
        )
      ]
    ),
    ...section("Missed-event recovery", recovery, recoveryMarkdown),
    ...profiles.flatMap((p) => [
      "",
      `## Server CPU profile: ${p.server} (N=${smoke ? 20 : 1000})`,
      "",
      profileMarkdown(p.summary, p.deliveries)
    ]),
    ...(targets.length === 0 ? [] : ["", "## Targets (issue 6)", "", ...targets]),
    ...(notRunnable.length === 0
      ? []
      : ["", "## Not runnable on this machine", "", ...notRunnable.map((f) => `- ${f}`)]),
    ...(failures.length === 0 ? [] : ["", "## FAILURES", "", ...failures.map((f) => `- ${f}`)]),
    ""
  ].join("\n")
  writeFileSync(
    Path.join(dir, "results.json"),
    JSON.stringify(
      {
        batch,
        smoke,
        machine,
        code,
        serverFlags,
        shape,
        reps,
        rows,
        storms,
        notRunnable,
        registry,
        dispatch,
        ingress,
        churn,
        decode,
        recovery,
        profiles,
        targets,
        failures
      },
      null,
      2
    )
  )
  writeFileSync(Path.join(dir, "results.md"), md)
  process.stdout.write(
    `\n${md}\nresults: ${Path.relative(REPO_DIR, dir)}/results.{md,json} (${((Date.now() - started) / 1000).toFixed(0)} s)\n`
  )
  if (failures.length > 0) process.exit(1)
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`)
  process.exit(1)
})
