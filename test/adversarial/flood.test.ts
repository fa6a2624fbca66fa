/**
 * Floods: 20k connect/disconnect cycles and 10k subscribe/unsubscribe cycles over real sockets,
 * and 5k voice join/leave pairs in fresh channels (past the 1024-channel cap), leave every registry
 * index, the presence of every guild used, the voice projection, the per-IP limit state and the
 * gauges empty, and the heap back near its start. The run happens in a child process started with
 * `--expose-gc` (flood.run.ts), so the heap measured is the gateway's alone.
 */
import { execFile } from "node:child_process"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"

/**
 * Heap growth allowed after the floods, measured after forced GCs. Run-to-run noise here is 0.5-3 MB;
 * a leak of 400 bytes per cycle would already show as 8 MB over the 20k connect cycles.
 */
const HEAP_TOLERANCE_BYTES = 8 * 1024 * 1024
const DEADLINE_MS = 150_000

interface FloodResult {
  readonly connectCycles: number
  readonly subscribeCycles: number
  readonly connectSeconds: number
  readonly subscribeSeconds: number
  readonly openConnections: number
  readonly registry: Readonly<Record<string, number>>
  readonly presenceOnline: number
  readonly voiceCycles: number
  readonly voiceParticipants: number
  readonly httpLimits: Readonly<Record<string, number>>
  readonly gauges: Readonly<Record<string, number>>
  readonly heapStart: number
  readonly heapEnd: number
}

const runFlood = () =>
  new Promise<FloodResult>((resolve, reject) => {
    const script = fileURLToPath(new URL("./flood.run.ts", import.meta.url))
    execFile(
      process.execPath,
      ["--expose-gc", "--import", "tsx", script],
      { timeout: DEADLINE_MS, maxBuffer: 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error !== null) return reject(new Error(`flood run failed: ${error.message}\n${stderr}`))
        resolve(JSON.parse(stdout.trim().split("\n").pop()!) as FloodResult)
      }
    )
  })

describe("floods", () => {
  it(
    "20k connect/disconnect and 10k subscribe/unsubscribe cycles leave nothing behind",
    async () => {
      const result = await runFlood()
      expect(result.connectCycles).toBe(20_000)
      expect(result.subscribeCycles).toBe(10_000)
      expect(result.openConnections).toBe(0)
      expect(result.registry).toEqual({ connections: 0, channels: 0, guilds: 0, users: 0 })
      expect(result.presenceOnline).toBe(0)
      expect(result.voiceCycles).toBe(5_000)
      expect(result.voiceParticipants).toBe(0)
      expect(result.httpLimits).toEqual({ connectionIps: 0, connections: 0, rateBuckets: 0 })
      expect(result.gauges).toEqual({ connections: 0, subscriptions: 0 })
      expect(result.heapEnd - result.heapStart).toBeLessThan(HEAP_TOLERANCE_BYTES)
    },
    DEADLINE_MS + 10_000
  )
})
