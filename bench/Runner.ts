/**
 * Runs one server under test against one load generator: two OS processes, server pinned to CPU 0
 * and generator to CPU 1 when `taskset` exists, loopback only, ports chosen by the OS. Everything is
 * bounded: the server waits at most 30 s to be ready and exits by itself after its max lifetime,
 * the generator has a hard timeout, and only the PIDs started here are ever killed.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process"
import { createWriteStream, existsSync, readFileSync } from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import type { GeneratorConfig } from "./generator.js"
import type { StormConfig } from "./storm.js"
import type { Shape, StormLayout } from "./Workload.js"

export const BENCH_DIR = Path.dirname(fileURLToPath(import.meta.url))
export const REPO_DIR = Path.dirname(BENCH_DIR)

export interface ServerSpec {
  readonly name: string
  /** Entry module relative to bench/. */
  readonly entry: string
  readonly env: Record<string, string>
  readonly jwtSecret: string | null
  /** Distinct users for N connections (the gateway caps connections per user). */
  readonly users: (n: number) => number
  /** Appended to every client's upgrade query (after the token), e.g. `&recovery=1`. */
  readonly query?: string
}

export interface RunSpec {
  readonly server: ServerSpec
  readonly rep: number
  readonly n: number
  readonly shape: Shape
  readonly idleRooms: number
  readonly subsPerConn: number
  readonly out: string
  /** Extra node flags for the server process (e.g. `--cpu-prof`). */
  readonly serverNodeFlags?: ReadonlyArray<string>
}

export const pinning = (() => {
  const hasTaskset = spawnSync("sh", ["-c", "command -v taskset"]).status === 0
  return hasTaskset && Os.availableParallelism() >= 2
    ? {
        server: ["taskset", "-c", "0"],
        generator: ["taskset", "-c", "1"],
        label: "server:cpu0,generator:cpu1"
      }
    : { server: [], generator: [], label: "none" }
})()
export const PINNING = pinning.label

/** Pure-JS `ws` paths in every process, as in the agreed workload. */
const WS_ENV = { WS_NO_BUFFER_UTIL: "1", WS_NO_UTF_8_VALIDATE: "1" }

/**
 * The hard `RLIMIT_NOFILE` of the processes the bench spawns: a server holds one descriptor per
 * client socket, so N above it cannot run on this machine (raising the hard limit needs
 * CAP_SYS_RESOURCE). `Infinity` when unlimited.
 */
export const FILE_LIMIT = (() => {
  const text = spawnSync("sh", ["-c", "ulimit -Hn"], { encoding: "utf8" }).stdout.trim()
  return text === "unlimited" ? Infinity : Number(text)
})()
/** Descriptors a bench process needs besides its client sockets (stdio, control port, modules). */
export const FILE_HEADROOM = 200

/** Every spawned process raises its soft file limit to the hard one first (50 000 sockets need it). */
const RAISE_FILE_LIMIT = ["sh", "-c", 'ulimit -n "$(ulimit -Hn)" && exec "$@"', "sh"]

export const launch = (
  prefix: ReadonlyArray<string>,
  args: ReadonlyArray<string>,
  env: Record<string, string>
) => {
  const argv = [...RAISE_FILE_LIMIT, ...prefix, process.execPath, "--import", "tsx", ...args]
  return spawn(argv[0]!, argv.slice(1), {
    cwd: REPO_DIR,
    env: { ...process.env, ...WS_ENV, ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })
}

export const exited = (child: ChildProcess, timeoutMs: number): Promise<boolean> =>
  child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve(true)
    : new Promise((resolve) => {
        const timer = setTimeout(() => resolve(false), timeoutMs)
        child.once("exit", () => {
          clearTimeout(timer)
          resolve(true)
        })
      })

interface Ready {
  readonly wsPort: number
  readonly ctrlPort: number
  readonly pid: number
}

/** Waits for the `READY {...}` line every bench server (Control.ts) prints once listening. */
export const waitReady = (server: ChildProcess, log: string, timeoutMs: number): Promise<Ready> =>
  new Promise((resolve, reject) => {
    let buffered = ""
    const timer = setTimeout(
      () => reject(new Error(`server not ready after ${timeoutMs} ms (log: ${log})`)),
      timeoutMs
    )
    server.stdout!.on("data", (chunk: Buffer) => {
      buffered += String(chunk)
      const match = /^READY (.*)$/m.exec(buffered)
      if (match !== null) {
        clearTimeout(timer)
        resolve(JSON.parse(match[1]!) as Ready)
      }
    })
    server.once("exit", (code) => {
      clearTimeout(timer)
      reject(new Error(`server exited early with ${code} (log: ${log})`))
    })
  })

/**
 * Starts `spec.server`, runs the generator process `generatorEntry` (relative to bench/) with the
 * JSON config `configFor(ready)` as its argument, and returns `out` once the generator wrote it.
 * Throws on failure; the server is always stopped.
 */
const runWithServer = async (
  spec: Pick<RunSpec, "server" | "out" | "serverNodeFlags">,
  generatorEntry: string,
  hardTimeoutS: number,
  configFor: (ready: Ready) => object
): Promise<string> => {
  const log = spec.out.replace(/\.json$/, ".server.log")
  const logStream = createWriteStream(log)
  const server = launch(
    pinning.server,
    [
      "--expose-gc",
      "--max-old-space-size=4096",
      ...(spec.serverNodeFlags ?? []),
      Path.join(BENCH_DIR, spec.server.entry)
    ],
    { ...spec.server.env, BENCH_MAX_LIFETIME_MS: "300000" }
  )
  server.stdout!.pipe(logStream)
  server.stderr!.pipe(logStream)
  try {
    const ready = await waitReady(server, log, 30_000)
    const generator = launch(
      pinning.generator,
      ["--max-old-space-size=4096", Path.join(BENCH_DIR, generatorEntry), JSON.stringify(configFor(ready))],
      {}
    )
    let output = ""
    generator.stdout!.on("data", (chunk: Buffer) => (output += String(chunk)))
    generator.stderr!.on("data", (chunk: Buffer) => (output += String(chunk)))
    if (!(await exited(generator, (hardTimeoutS + 10) * 1000))) generator.kill("SIGKILL")
    await exited(generator, 5000)
    process.stdout.write(output)
    if (generator.exitCode !== 0 || !existsSync(spec.out)) {
      throw new Error(
        `generator failed (exit ${generator.exitCode}); server log ${log}:\n${readFileSync(log, "utf8").slice(-2000)}`
      )
    }
    return spec.out
  } finally {
    // The generator asked the server to exit; give it 10 s (a CPU profile takes a moment), then kill it.
    if (!(await exited(server, 10_000))) {
      server.kill("SIGKILL")
      await exited(server, 5000)
    }
    logStream.end()
  }
}

/** Runs one (server, N, rep) and returns the generator's result file path. Throws on failure. */
export const runOne = (spec: RunSpec): Promise<string> => {
  const hardTimeoutS = 240
  return runWithServer(spec, "generator.ts", hardTimeoutS, (ready): GeneratorConfig => ({
    server: spec.server.name,
    rep: spec.rep,
    n: spec.n,
    wsPort: ready.wsPort,
    ctrlPort: ready.ctrlPort,
    shape: spec.shape,
    idleRooms: spec.idleRooms,
    subsPerConn: spec.subsPerConn,
    users: spec.server.users(spec.n),
    jwtSecret: spec.server.jwtSecret,
    query: spec.server.query ?? "",
    concurrency: 200,
    hardTimeoutS,
    pinning: PINNING,
    out: spec.out
  }))
}

export interface StormSpec {
  readonly server: ServerSpec
  readonly rep: number
  readonly n: number
  readonly layout: StormLayout
  readonly out: string
  readonly serverNodeFlags?: ReadonlyArray<string>
}

/** Runs one connect storm (bench/storm.ts) of `spec.n` clients against a fresh server. */
export const runStorm = (spec: StormSpec): Promise<string> => {
  const hardTimeoutS = 240
  return runWithServer(spec, "storm.ts", hardTimeoutS, (ready): StormConfig => ({
    server: spec.server.name,
    rep: spec.rep,
    n: spec.n,
    layout: spec.layout,
    wsPort: ready.wsPort,
    ctrlPort: ready.ctrlPort,
    jwtSecret: spec.server.jwtSecret,
    hardTimeoutS,
    out: spec.out
  }))
}
