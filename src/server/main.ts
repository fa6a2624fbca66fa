/**
 * Node entry point (`node dist/server/main.js`; `npm start` builds, then execs it): configuration
 * from the environment, the gateway with its default services, the HTTP + WebSocket server.
 * SIGTERM/SIGINT interrupt the program; the layers then drain (1001 `going_away`, bounded grace) and
 * the process exits 0. A startup failure prints one line per cause on stderr and exits 1.
 */
import cluster, { type Worker } from "node:cluster"
import { NodeRuntime } from "@effect/platform-node"
import { Cause, Chunk, Clock, ConfigError, Console, Duration, Effect, Layer, Logger, Redacted } from "effect"
import type { GatewayConfigShape, LogFormat } from "./Config.js"
import * as Auth from "./Auth.js"
import * as Config from "./Config.js"
import { GatewayConfig } from "./Config.js"
import * as Composition from "./Composition.js"
import * as Http from "./edge/Http.js"
import { GatewayServer } from "./edge/Http.js"
import * as Inspector from "./inspector/Inspector.js"
import { ulid } from "../protocol/Ids.js"
import * as Workers from "./Workers.js"

const DEMO_TOKEN_SECONDS = 24 * 60 * 60

/** Dev mode: everything a newcomer needs to connect, subscribe and publish right away. */
const printDevBanner = Effect.gen(function* () {
  const config = yield* GatewayConfig
  const { host, port } = yield* GatewayServer
  const now = yield* Clock.currentTimeMillis
  const [user, guild, channel] = [ulid(now), ulid(now), ulid(now)]
  const token = yield* Auth.signToken({
    secret: config.jwtSecret,
    userId: user,
    expiresAt: Math.floor(now / 1000) + DEMO_TOKEN_SECONDS,
    guilds: { [guild]: [channel] }
  })
  const base = `${host}:${port}`
  yield* Console.log(
    [
      "filament-gateway: DEV MODE (GATEWAY_JWT_SECRET is unset; a random secret was generated)",
      `  GATEWAY_JWT_SECRET=${Redacted.value(config.jwtSecret)}`,
      `  GATEWAY_PUBLISH_KEY=${Redacted.value(config.publishKey)}`,
      `  demo user ${user}, guild ${guild}, channel ${channel}; token valid 24 h:`,
      `  ws://${base}/gateway/ws?access_token=${token}`,
      `  then send: {"v":1,"t":"subscribe","d":{"guild_id":"${guild}","channel_id":"${channel}"}}`,
      `  publish:   curl -X POST http://${base}/v1/publish -H 'Authorization: Bearer ${Redacted.value(config.publishKey)}' \\`,
      `               -H 'Content-Type: application/json' \\`,
      `               -d '{"t":"channel_create","d":{"guild_id":"${guild}","channel":{"channel_id":"${ulid(now)}","name":"general","kind":"text"}}}'`
    ].join("\n")
  )
})

const program = Effect.gen(function* () {
  const config = yield* GatewayConfig
  const { host, port } = yield* GatewayServer
  yield* Effect.logInfo(
    `filament-gateway listening on http://${host}:${port} (WebSocket: ws://${host}:${port}/gateway/ws)`
  )
  for (const [key, replacedBy] of yield* Config.retiredKeysSet) {
    yield* Effect.logWarning(`config.retired_key: ${key} is ignored (replaced by ${replacedBy})`)
  }
  if (config.devMode) yield* printDevBanner
  return yield* Effect.never
})

const MainLive = Http.layer.pipe(
  // A worker's /metrics and /readyz answer for every worker (Workers.ts).
  Layer.provide(cluster.isWorker ? Workers.layerWorker : Layer.empty),
  // The inspector's routes (`/admin`), served only when GATEWAY_ADMIN_KEY is set.
  Layer.provideMerge(Inspector.layer),
  Layer.provideMerge(Composition.layerGateway),
  Layer.provideMerge(Config.layer)
)

/** How long the primary waits, beyond the close grace, for a worker to drain before killing it. */
const WORKER_EXIT_MARGIN = Duration.seconds(5)

const exited = (worker: Worker) =>
  Effect.async<void>((resume) => {
    if (worker.isDead()) return resume(Effect.void)
    worker.once("exit", () => resume(Effect.void))
  })

/**
 * `GATEWAY_WORKERS` > 1: this primary forks the workers — they share the listening port through
 * node:cluster and reach each other's connections over the Redis bus (the config refuses workers
 * without it) — replaces a worker that dies, and on SIGTERM / SIGINT lets every worker drain.
 */
const supervise = (config: GatewayConfigShape) =>
  Effect.gen(function* () {
    let stopping = false
    const workers = new Set<Worker>()
    const group = Workers.makePrimary({ expected: config.workers, timeout: config.workerReportTimeout })
    const fork = () => {
      const worker = cluster.fork()
      workers.add(worker)
      group.add(worker)
      worker.once("exit", (code, signal) => {
        workers.delete(worker)
        group.remove(worker)
        if (stopping) return
        console.error(
          `filament-gateway: worker ${worker.process.pid} exited (${signal ?? code}); starting another`
        )
        fork()
      })
    }
    yield* Effect.acquireRelease(
      Effect.sync(() => {
        for (let i = 0; i < config.workers; i++) fork()
      }),
      () =>
        Effect.gen(function* () {
          stopping = true
          const draining = [...workers]
          for (const worker of draining) worker.process.kill("SIGTERM")
          const bound = Duration.sum(config.closeGrace, WORKER_EXIT_MARGIN)
          yield* Effect.forEach(draining, exited, { concurrency: "unbounded", discard: true }).pipe(
            Effect.interruptible,
            Effect.timeout(bound),
            Effect.ignore
          )
          for (const worker of draining) if (!worker.isDead()) worker.process.kill("SIGKILL")
        })
    )
    yield* Effect.logInfo(
      `filament-gateway primary ${process.pid}: ${config.workers} workers on port ${config.port}`
    )
    return yield* Effect.never
  })

/** Each replaces Effect's default logger (runMain's own pretty logger is turned off below). */
const LOGGERS: Record<LogFormat, Layer.Layer<never>> = {
  pretty: Logger.pretty,
  logfmt: Logger.logFmt,
  json: Logger.json
}

/** `GATEWAY_LOG_FORMAT` and `GATEWAY_LOG_LEVEL` for everything the process logs, layers included. */
const logging = (config: GatewayConfigShape) =>
  Layer.merge(LOGGERS[config.logFormat], Logger.minimumLogLevel(config.logLevel))

/** Every leaf of a configuration error, each naming its key (an `And` holds one per refused key). */
const configProblems = (error: ConfigError.ConfigError): ReadonlyArray<string> => {
  switch (error._op) {
    case "And":
    case "Or":
      return [...configProblems(error.left), ...configProblems(error.right)]
    default: {
      const key = error.path.join(".")
      return [error.message.startsWith(key) ? error.message : `${key}: ${error.message}`]
    }
  }
}

/**
 * A startup failure as one plain stderr line per problem, whatever `GATEWAY_LOG_FORMAT` says (a
 * refused configuration has no format yet): the key or resource and why, no stack, no secrets.
 * A defect is a bug and keeps its full rendering.
 */
const reportFailure = (cause: Cause.Cause<Effect.Effect.Error<typeof main>>) =>
  Effect.sync(() => {
    if (Cause.isInterruptedOnly(cause)) return
    const failures = Chunk.toReadonlyArray(Cause.failures(cause))
    const lines =
      failures.length === 0
        ? [Cause.pretty(cause)]
        : failures.flatMap((error) =>
            ConfigError.isConfigError(error)
              ? configProblems(error).map((line) => `invalid configuration: ${line}`)
              : [error.message]
          )
    for (const line of lines) process.stderr.write(`filament-gateway: ${line}\n`)
  })

const main = Effect.gen(function* () {
  // Read (and validated) once here, so a refused configuration never forks anything.
  const config = yield* Config.make
  const run =
    cluster.isPrimary && config.workers > 1
      ? Effect.scoped(supervise(config))
      : program.pipe(Effect.provide(MainLive))
  return yield* run.pipe(Effect.provide(logging(config)))
})

// Failures are reported by `reportFailure`; runMain still exits 1 on them, 0 after a signal's drain.
NodeRuntime.runMain(main.pipe(Effect.tapErrorCause(reportFailure)), {
  disableErrorReporting: true,
  disablePrettyLogger: true
})

// runMain stops listening after the first SIGINT/SIGTERM, so a second one would kill the process
// mid-drain with the signal's default action. Ctrl-C under `npm start` delivers two (the terminal's
// to the whole process group, then npm's forwarded copy), so repeats are ignored: the drain is
// bounded by GATEWAY_CLOSE_GRACE_SECS, and SIGKILL stops the process at once.
for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => undefined)
