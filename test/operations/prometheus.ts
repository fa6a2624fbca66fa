/**
 * Debian's `prometheus` and `promtool` for the operations tests: `promtool` runs on files or stdin;
 * a real Prometheus server runs in the test's scope with its own config and TSDB in a temp dir, on a
 * free loopback port, and is queried over its HTTP API. CI installs the package (`.ci/run`), so there
 * the tests fail rather than skip when it is missing.
 */
import { spawn, spawnSync } from "node:child_process"
import { mkdtemp, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect } from "effect"
import { freePort } from "../cluster/redis.js"

const START_DEADLINE_MS = 15_000

const onPath = (binary: string) => spawnSync(binary, ["--version"]).status === 0

export const hasPrometheus: boolean = onPath("prometheus") && onPath("promtool")
if (!hasPrometheus) {
  if (process.env["CI"] === "true")
    throw new Error("prometheus/promtool are not on PATH in CI (.ci/run installs Debian's prometheus)")
  console.warn(
    "prometheus/promtool are not on PATH: the Prometheus tests are skipped (apt-get install prometheus)"
  )
}

export interface ToolResult {
  readonly status: number | null
  readonly output: string
}

/** Runs `promtool <args>`, feeding `stdin` when given. */
export const promtool = (args: ReadonlyArray<string>, stdin?: string): ToolResult => {
  const result = spawnSync("promtool", args, { input: stdin ?? "", encoding: "utf8" })
  return { status: result.status, output: `${result.stdout}${result.stderr}` }
}

export interface PrometheusServer {
  readonly url: string
  /** An instant query; the result vector as (labels, value) pairs. */
  readonly query: (
    promql: string
  ) => Effect.Effect<ReadonlyArray<{ readonly metric: Record<string, string>; readonly value: number }>>
  /** The scrape targets' health as Prometheus reports it. */
  readonly targets: Effect.Effect<
    ReadonlyArray<{ readonly health: string; readonly lastError: string; readonly scrapeUrl: string }>
  >
  /** A series of Prometheus's own `/metrics` (0 when absent). */
  readonly selfMetric: (name: string) => Effect.Effect<number>
}

const getJson = (url: string) =>
  Effect.promise(async () => {
    const response = await fetch(url)
    return (await response.json()) as { status: string; data: unknown; error?: string }
  })

/**
 * A Prometheus server scraping `targets` (host:port) every `scrapeInterval`, stopped (SIGTERM, then
 * its temp dir removed) with the scope.
 */
export const startPrometheus = (targets: ReadonlyArray<string>, scrapeInterval = "250ms") =>
  Effect.gen(function* () {
    const dir = yield* Effect.acquireRelease(
      Effect.promise(() => mkdtemp(join(tmpdir(), "filament-prometheus-"))),
      (path) => Effect.promise(() => rm(path, { recursive: true, force: true }))
    )
    const port = yield* freePort
    const config = join(dir, "prometheus.yml")
    yield* Effect.promise(() =>
      writeFile(
        config,
        [
          "global:",
          `  scrape_interval: ${scrapeInterval}`,
          `  scrape_timeout: ${scrapeInterval}`,
          "scrape_configs:",
          "  - job_name: filament-gateway",
          "    static_configs:",
          `      - targets: [${targets.map((target) => `"${target}"`).join(", ")}]`,
          ""
        ].join("\n")
      )
    )
    const url = `http://127.0.0.1:${port}`
    yield* Effect.acquireRelease(
      Effect.async<ReturnType<typeof spawn>, Error>((resume) => {
        const child = spawn(
          "prometheus",
          [
            `--config.file=${config}`,
            `--storage.tsdb.path=${join(dir, "data")}`,
            `--web.listen-address=127.0.0.1:${port}`
          ],
          { stdio: ["ignore", "pipe", "pipe"] }
        )
        let output = ""
        const timer = setTimeout(() => {
          child.kill("SIGKILL")
          resume(
            Effect.fail(new Error(`deadline: prometheus ready within ${START_DEADLINE_MS} ms\n${output}`))
          )
        }, START_DEADLINE_MS)
        const onData = (chunk: Buffer) => {
          output += chunk.toString()
          if (output.includes("Server is ready to receive web requests.")) {
            clearTimeout(timer)
            child.off("exit", onEarlyExit)
            child.stdout!.off("data", onData)
            child.stderr!.off("data", onData)
            // Keep draining its output so that a full pipe never blocks it.
            child.stdout!.resume()
            child.stderr!.resume()
            resume(Effect.succeed(child))
          }
        }
        const onEarlyExit = (code: number | null) => {
          clearTimeout(timer)
          resume(Effect.fail(new Error(`prometheus exited (${code}) before it was ready\n${output}`)))
        }
        child.stdout!.on("data", onData)
        child.stderr!.on("data", onData)
        child.once("exit", onEarlyExit)
      }),
      (child) =>
        Effect.promise(
          () =>
            new Promise<void>((resolve) => {
              if (child.exitCode !== null || child.signalCode !== null) return resolve()
              child.once("exit", () => resolve())
              child.kill("SIGTERM")
            })
        )
    )
    const server: PrometheusServer = {
      url,
      query: (promql) =>
        Effect.map(getJson(`${url}/api/v1/query?query=${encodeURIComponent(promql)}`), (body) => {
          if (body.status !== "success") throw new Error(`query ${promql}: ${body.error}`)
          const data = body.data as {
            resultType: string
            result: ReadonlyArray<{ metric: Record<string, string>; value: [number, string] }>
          }
          return data.result.map(({ metric, value }) => ({ metric, value: Number(value[1]) }))
        }),
      targets: Effect.map(
        getJson(`${url}/api/v1/targets`),
        (body) =>
          (
            body.data as {
              activeTargets: ReadonlyArray<{ health: string; lastError: string; scrapeUrl: string }>
            }
          ).activeTargets
      ),
      selfMetric: (name) =>
        Effect.promise(async () => {
          const text = await (await fetch(`${url}/metrics`)).text()
          const line = text.split("\n").find((entry) => entry.startsWith(`${name} `))
          return line === undefined ? 0 : Number(line.split(" ")[1])
        })
    }
    return server
  })
