/**
 * The benchmark harness cannot rot: `bench/main.ts --smoke` runs every part (raw `ws` and the
 * gateway at a tiny N with every phase, a tiny connect storm, the registry-scaling pair, the
 * dispatch, ingress, churn and client decode micro-benchmarks, the missed-event recovery storm) in
 * real processes and exits 0 only when every run produced numbers, lost no delivery, closed no
 * socket unexpectedly and missed no recovery check. No speed is asserted.
 */
import { spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import type { RecoveryResult } from "../../bench/recovery.js"

const REPO = join(import.meta.dirname, "..", "..")
const BATCH = "smoke-test"

const runSmokeOnce = () =>
  new Promise<{ code: number | null; output: string }>((resolve) => {
    const child = spawn(process.execPath, ["--import", "tsx", "bench/main.ts", "--smoke", "--batch", BATCH], {
      cwd: REPO,
      stdio: ["ignore", "pipe", "pipe"]
    })
    let output = ""
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()))
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()))
    child.once("exit", (code) => resolve({ code, output }))
  })

/** One smoke run for every test of this file. */
let smoke: ReturnType<typeof runSmokeOnce> | undefined
const runSmoke = () => (smoke ??= runSmokeOnce())

const readResults = () =>
  JSON.parse(readFileSync(join(REPO, "bench", "results", BATCH, "results.json"), "utf8")) as {
    readonly failures: ReadonlyArray<string>
    readonly rows: ReadonlyArray<{ readonly server: string; readonly idleRooms: number }>
    readonly registry: ReadonlyArray<{ readonly server: string }>
    readonly storms: ReadonlyArray<{
      readonly server: string
      readonly value: Record<string, number | null>
    }>
    readonly dispatch: { readonly paths: ReadonlyArray<{ readonly nsPerDispatch: number }> } | null
    readonly ingress: { readonly cases: ReadonlyArray<unknown> } | null
    readonly churn: { readonly cases: ReadonlyArray<unknown> } | null
    readonly decode: { readonly mixes: ReadonlyArray<unknown> } | null
    readonly recovery: RecoveryResult | null
  }

describe("bench smoke", () => {
  it("every part of the harness runs and reports; nothing lost", { timeout: 180_000 }, async () => {
    const { code, output } = await runSmoke()
    expect(code, output.slice(-4000)).toBe(0)
    const results = readResults()
    expect(results.failures).toEqual([])
    expect(new Set(results.rows.map((row) => `${row.server}/${row.idleRooms > 0}`))).toEqual(
      new Set(["raw-ws/false", "gateway/false", "raw-ws/true", "gateway/true"])
    )
    expect(results.registry.map((row) => row.server).sort()).toEqual(["gateway", "raw-ws"])
    // The storm ran against both servers; only the gateway speaks presence.
    expect(results.storms.map((row) => row.server).sort()).toEqual(["gateway", "raw-ws"])
    for (const row of results.storms) expect(row.value["cpuUsPerConn"]).toBeGreaterThan(0)
    const presenceSyncFrames = (server: string) =>
      results.storms.find((row) => row.server === server)?.value["presenceSyncFrames"]
    expect(presenceSyncFrames("gateway")).toBeGreaterThan(0)
    expect(presenceSyncFrames("raw-ws")).toBe(0)
    expect(results.dispatch?.paths).toHaveLength(3)
    expect(results.ingress?.cases.length).toBeGreaterThan(0)
    expect(results.churn?.cases).toHaveLength(1)
    expect(results.decode?.mixes).toHaveLength(2)
  })

  // Any check the recovery storm missed is a failure above and here.
  it("the recovery storm replays exactly every missed event", { timeout: 180_000 }, async () => {
    const { code, output } = await runSmoke()
    expect(code, output.slice(-4000)).toBe(0)
    const { failures, recovery } = readResults()
    expect(failures).toEqual([])
    expect(recovery).not.toBeNull()
    // The gateway answers opted-in clients with positions: a run that saw none is a failure here.
    expect(recovery!.skipped).toBeUndefined()
    expect(recovery!.errorCount).toBe(0)
    const { clients, rounds } = recovery!.shape
    // Every client missed `rounds` events on each of its 4 streams (user, guild, 2 channels).
    expect(recovery!.recoveryStorm?.replayed).toBe(clients * 4 * rounds)
    expect(recovery!.baselineStorm?.replayed).toBe(0)
    expect(recovery!.seam?.deliveries).toBe(clients * 4)
    expect(recovery!.history?.addedBytes).toBeGreaterThan(0)
  })
})
