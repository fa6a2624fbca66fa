/**
 * The missed-event recovery phase of `npm run bench` (issue 14; `--skip recovery` leaves it out):
 * one gateway process (bench/servers/gateway.ts with `BENCH_RECOVERY_SHAPE`, pinned like the
 * fanout runs) against one client process (bench/recovery-clients.ts, which owns the sockets, runs
 * the phases and checks every event and verdict). From its result:
 *
 * - **recovery storm**: N clients that each missed R events per stream reconnect at once: the time
 *   until the last has all its verdicts, and server CPU per replayed event = (CPU of that storm −
 *   CPU of the same storm with nothing missed) / events replayed, against CPU per live delivery of
 *   the same R rounds to the same clients (opted in) in the same process;
 * - **bytes per retained event**: the history's own `filament_gateway_history_bytes` / `_entries`
 *   gained while the clients were away, and the server's heap delta (forced GC) over those entries;
 * - **steady-state cost of opting in**: CPU per delivery and bytes per frame, the same rounds to the
 *   same clients without and with `recovery=1`, twice each in the order legacy, opted in, opted in,
 *   legacy (after a warm-up), pooled.
 */
import { createWriteStream, existsSync, readFileSync } from "node:fs"
import * as Path from "node:path"
import { FULL_RECOVERY_SHAPE, RECOVERY_SHAPE_ENV, SMOKE_RECOVERY_SHAPE } from "./RecoveryLayout.js"
import type { RecoveryClientsConfig } from "./recovery-clients.js"
import { BENCH_DIR, exited, launch, pinning, waitReady, type ServerSpec } from "./Runner.js"

interface LivePhase {
  readonly rounds: number
  readonly events: number
  readonly deliveries: number
  readonly seconds: number
  readonly serverCpuS: number
  readonly serverCpuUtil: number
  readonly serverSysShare: number
  readonly clientCpuUtil: number
  readonly cpuUsPerDelivery: number | null
  readonly bytesPerFrame: number | null
}

interface Storm {
  readonly clients: number
  readonly allRecoveredMs: number
  readonly clientMs: { readonly p50: number; readonly p99: number; readonly max: number }
  readonly replayed: number
  readonly replayedPerClient: number
  readonly streamsGiven: number
  readonly gatewayRecovered: number
  readonly gatewayNotRecovered: number
  readonly serverCpuS: number
  readonly serverCpuUtil: number
  readonly clientCpuUtil: number
  readonly connectRetries: number
  readonly bytesPerFrame: number | null
}

export interface RecoveryResult {
  readonly shape: typeof FULL_RECOVERY_SHAPE
  /** Set when the gateway answered opted-in clients without positions: nothing past the legacy phase ran. */
  readonly skipped?: string
  /** The steady-state phases, in run order: legacy 1, 2 and opted in 1, 2 (ABBA). */
  readonly legacy?: ReadonlyArray<LivePhase>
  readonly optedIn?: ReadonlyArray<LivePhase>
  readonly baselineStorm?: Storm
  readonly away?: LivePhase
  readonly history?: {
    readonly entries: number
    readonly bytes: number
    readonly addedEntries: number
    readonly addedBytes: number
    readonly heapDeltaBytes: number
  }
  readonly recoveryStorm?: Storm
  readonly seam?: LivePhase
  readonly errors: ReadonlyArray<string>
  readonly errorCount: number
  readonly unexpectedCloses: number
  readonly otherFrames: Record<string, number>
  readonly totalS: number
}

/** The figures the report and the docs quote, derived once from a result. */
export const recoveryFigures = (result: RecoveryResult) => {
  const { legacy, optedIn, baselineStorm, recoveryStorm, history } = result
  if (
    legacy === undefined ||
    optedIn === undefined ||
    baselineStorm === undefined ||
    recoveryStorm === undefined
  )
    return null
  /** CPU µs per delivery and bytes per frame over phases pooled. */
  const pooled = (phases: ReadonlyArray<LivePhase>) => {
    const deliveries = phases.reduce((sum, phase) => sum + phase.deliveries, 0)
    return {
      cpuUs: (phases.reduce((sum, phase) => sum + phase.serverCpuS, 0) * 1e6) / deliveries,
      bytesPerFrame:
        phases.reduce((sum, phase) => sum + phase.bytesPerFrame! * phase.deliveries, 0) / deliveries
    }
  }
  const live = pooled(optedIn)
  const legacyPooled = pooled(legacy)
  const replayCpuUs = ((recoveryStorm.serverCpuS - baselineStorm.serverCpuS) * 1e6) / recoveryStorm.replayed
  return {
    allRecoveredMs: recoveryStorm.allRecoveredMs,
    baselineAllRecoveredMs: baselineStorm.allRecoveredMs,
    replayed: recoveryStorm.replayed,
    replayCpuUs,
    stormCpuUsPerReplayed: (recoveryStorm.serverCpuS * 1e6) / recoveryStorm.replayed,
    liveCpuUs: live.cpuUs,
    replayVsLive: replayCpuUs / live.cpuUs,
    historyBytesPerEntry: history === undefined ? null : history.addedBytes / history.addedEntries,
    heapBytesPerEntry: history === undefined ? null : history.heapDeltaBytes / history.addedEntries,
    legacyCpuUs: legacyPooled.cpuUs,
    optedInVsLegacy: live.cpuUs / legacyPooled.cpuUs,
    legacyBytesPerFrame: legacyPooled.bytesPerFrame,
    positionedBytesPerFrame: live.bytesPerFrame
  }
}

/**
 * Runs the recovery benchmark once and returns its result; throws when a process fails. The
 * history's age bound is raised to 10 minutes so that a slow machine cannot trim a position the run
 * still needs (the count bound and every other limit stay at their defaults).
 */
export const runRecovery = async (options: {
  readonly server: ServerSpec
  readonly smoke: boolean
  readonly dir: string
}): Promise<RecoveryResult> => {
  const shape = options.smoke ? SMOKE_RECOVERY_SHAPE : FULL_RECOVERY_SHAPE
  const out = Path.join(options.dir, "recovery.json")
  const log = Path.join(options.dir, "recovery.server.log")
  const logStream = createWriteStream(log)
  const server = launch(
    pinning.server,
    ["--expose-gc", "--max-old-space-size=4096", Path.join(BENCH_DIR, options.server.entry)],
    {
      ...options.server.env,
      [RECOVERY_SHAPE_ENV]: JSON.stringify(shape),
      GATEWAY_HISTORY_TTL_SECS: "600",
      BENCH_MAX_LIFETIME_MS: "300000"
    }
  )
  server.stdout!.pipe(logStream)
  server.stderr!.pipe(logStream)
  try {
    const ready = await waitReady(server, log, 30_000)
    const hardTimeoutS = 240
    const config: RecoveryClientsConfig = {
      shape,
      wsPort: ready.wsPort,
      ctrlPort: ready.ctrlPort,
      jwtSecret: options.server.jwtSecret!,
      hardTimeoutS,
      out
    }
    const clients = launch(
      pinning.generator,
      ["--max-old-space-size=4096", Path.join(BENCH_DIR, "recovery-clients.ts"), JSON.stringify(config)],
      {}
    )
    let output = ""
    clients.stdout!.on("data", (chunk: Buffer) => (output += String(chunk)))
    clients.stderr!.on("data", (chunk: Buffer) => (output += String(chunk)))
    if (!(await exited(clients, (hardTimeoutS + 10) * 1000))) clients.kill("SIGKILL")
    await exited(clients, 5000)
    process.stdout.write(output)
    if (clients.exitCode !== 0 || !existsSync(out)) {
      throw new Error(
        `recovery clients failed (exit ${clients.exitCode}); server log ${log}:\n${readFileSync(log, "utf8").slice(-2000)}`
      )
    }
    return JSON.parse(readFileSync(out, "utf8")) as RecoveryResult
  } finally {
    if (!(await exited(server, 10_000))) {
      server.kill("SIGKILL")
      await exited(server, 5000)
    }
    logStream.end()
  }
}

/** What makes a run fail: a check missed, a socket closed, or no numbers. */
export const recoveryFailures = (result: RecoveryResult): Array<string> => [
  ...result.errors.map((error) => `recovery: ${error}`),
  ...(result.errorCount > result.errors.length
    ? [`recovery: ${result.errorCount - result.errors.length} more check(s) missed`]
    : []),
  ...(result.skipped === undefined && recoveryFigures(result) === null ? ["recovery: no numbers"] : [])
]

const f = (value: number | null | undefined, digits = 2) =>
  value === null || value === undefined || !Number.isFinite(value) ? "–" : value.toFixed(digits)

const pct = (value: number) => `${(value * 100).toFixed(0)}%`

/** A steady-state phase: CPU µs per delivery (server / clients CPU share, kernel share of the server's). */
const steady = (phases: ReadonlyArray<LivePhase>) =>
  phases.map(
    (phase) =>
      `${f(phase.cpuUsPerDelivery)} (${pct(phase.serverCpuUtil)}/${pct(phase.clientCpuUtil)}, sys ${pct(phase.serverSysShare)})`
  )

export const recoveryMarkdown = (result: RecoveryResult): Array<string> => {
  const { shape } = result
  const layout =
    `${shape.clients} clients (one user each) in ${shape.guilds} guilds × ${shape.channelsPerGuild} channels, ` +
    `2 channels each; user events to ${shape.userGroup} users at a time; ${shape.rounds} events per stream per phase.`
  if (result.skipped !== undefined) return [layout, "", `skipped: ${result.skipped}`]
  const figures = recoveryFigures(result)
  if (figures === null) return [layout, "", "no numbers (see FAILURES)"]
  const storm = result.recoveryStorm!
  const base = result.baselineStorm!
  return [
    layout,
    "",
    "| measure | value |",
    "|---|---:|",
    `| recovery storm: time until all ${storm.clients} have every verdict | ${f(storm.allRecoveredMs, 0)} ms (client p50 ${f(storm.clientMs.p50, 0)}, p99 ${f(storm.clientMs.p99, 0)}) |`,
    `| same storm with nothing missed | ${f(base.allRecoveredMs, 0)} ms (client p50 ${f(base.clientMs.p50, 0)}, p99 ${f(base.clientMs.p99, 0)}) |`,
    `| events replayed (exact, every offset checked) | ${storm.replayed} (${storm.replayedPerClient} per client) |`,
    `| server CPU: recovery storm / nothing-missed storm | ${f(storm.serverCpuS, 3)} s / ${f(base.serverCpuS, 3)} s |`,
    `| CPU share of one core in the recovery storm: server / clients | ${pct(storm.serverCpuUtil)} / ${pct(storm.clientCpuUtil)} |`,
    `| server CPU µs per replayed event (storm minus nothing-missed storm) | ${f(figures.replayCpuUs)} |`,
    `| server CPU µs per live delivery (same rounds, same clients, opted in) | ${f(figures.liveCpuUs)} |`,
    `| replayed / live | ${f(figures.replayVsLive)}x |`,
    `| history bytes per retained event (\`filament_gateway_history_bytes\` / \`_entries\`) | ${f(figures.historyBytesPerEntry, 0)} |`,
    `| heap bytes per retained event (forced GC, ${result.history!.addedEntries} entries) | ${f(figures.heapBytesPerEntry, 0)} |`,
    `| steady state, CPU µs per delivery: legacy / opted in (run order L ${steady(result.legacy!)[0]}, O ${steady(result.optedIn!).join(", O ")}, L ${steady(result.legacy!)[1]}) | ${f(figures.legacyCpuUs)} / ${f(figures.liveCpuUs)} |`,
    `| opted in / legacy | ${f(figures.optedInVsLegacy)}x |`,
    `| bytes per frame: legacy / opted in | ${f(figures.legacyBytesPerFrame, 0)} / ${f(figures.positionedBytesPerFrame, 0)} |`,
    `| connect retries, unexpected closes | ${storm.connectRetries}, ${result.unexpectedCloses} |`
  ]
}
