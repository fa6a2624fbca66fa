/**
 * Node entry point (`npm start`): configuration from the environment, the gateway with its default
 * services, the HTTP + WebSocket server. SIGTERM/SIGINT interrupt the program; the layers then
 * drain (1001 `going_away`, bounded grace) and the process exits 0.
 */
import cluster, { type Worker } from "node:cluster"
import { NodeRuntime } from "@effect/platform-node"
import { Clock, Console, Duration, Effect, Layer, Logger, Redacted } from "effect"
import type { GatewayConfigShape, LogFormat } from "./Config.js"
import * as Auth from "./Auth.js"
import * as Config from "./Config.js"
import { GatewayConfig } from "./Config.js"
import * as Gateway from "./Gateway.js"
import * as Http from "./Http.js"
import { GatewayServer } from "./Http.js"
import * as Inspector from "./inspector/Inspector.js"
import { ulid } from "./Messages.js"

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
  if (config.devMode) yield* printDevBanner
  return yield* Effect.never
})

const MainLive = Http.layer.pipe(
  // The inspector's routes (`/admin`), served only when GATEWAY_ADMIN_KEY is set.
  Layer.provideMerge(Inspector.layer),
  Layer.provideMerge(Gateway.layerDefault),
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
    const fork = () => {
      const worker = cluster.fork()
      workers.add(worker)
      worker.once("exit", (code, signal) => {
        workers.delete(worker)
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

const main = Effect.gen(function* () {
  // Read (and validated) once here, so a refused configuration never forks anything.
  const config = yield* Config.make
  const run =
    cluster.isPrimary && config.workers > 1
      ? Effect.scoped(supervise(config))
      : program.pipe(Effect.provide(MainLive))
  return yield* run.pipe(Effect.provide(logging(config)))
})

NodeRuntime.runMain(main, { disablePrettyLogger: true })
