/**
 * A real `redis-server` for the cluster tests: started on a free loopback port inside the test's
 * scope, without persistence, restartable on the same port. Tests that need it skip with a message
 * when the binary is absent (CI installs it, so CI runs them).
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process"
import { createServer } from "node:net"
import { Effect, type Scope } from "effect"
import { Redis } from "ioredis"

const DEADLINE_MS = 10_000

export const hasRedisServer: boolean = spawnSync("redis-server", ["--version"]).status === 0
if (!hasRedisServer) {
  console.warn("redis-server is not on PATH: the cluster tests are skipped (apt-get install redis-server)")
}

/** A port that was free a moment ago (the kernel hands out ports round-robin, so reuse is unlikely). */
export const freePort = Effect.async<number>((resume) => {
  const server = createServer()
  server.listen(0, "127.0.0.1", () => {
    const address = server.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    server.close(() => resume(Effect.succeed(port)))
  })
})

export interface RedisServer {
  readonly port: number
  readonly url: string
  /** SIGKILLs the server and waits for it to exit. */
  readonly kill: Effect.Effect<void>
  /** Starts it again on the same port and waits until it accepts connections. */
  readonly start: Effect.Effect<void>
  /** A plain client (closed with the scope), e.g. to inject foreign messages. */
  readonly client: () => Effect.Effect<Redis, never, Scope.Scope>
}

const launch = (port: number) =>
  Effect.async<ChildProcess, Error>((resume) => {
    const child = spawn(
      "redis-server",
      ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
      { stdio: ["ignore", "pipe", "pipe"] }
    )
    let output = ""
    const timer = setTimeout(() => {
      child.kill("SIGKILL")
      resume(Effect.fail(new Error(`deadline: redis-server ready within ${DEADLINE_MS} ms\n${output}`)))
    }, DEADLINE_MS)
    child.stdout!.on("data", (chunk: Buffer) => {
      output += chunk.toString()
      if (output.includes("Ready to accept connections")) {
        clearTimeout(timer)
        resume(Effect.succeed(child))
      }
    })
    child.once("exit", (code) => {
      clearTimeout(timer)
      resume(Effect.fail(new Error(`redis-server exited (${code}) before it was ready\n${output}`)))
    })
  })

const stop = (child: ChildProcess) =>
  Effect.async<void>((resume) => {
    if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
    child.once("exit", () => resume(Effect.void))
    child.kill("SIGKILL")
  })

export const startRedis = Effect.gen(function* () {
  const port = yield* freePort
  let child = yield* launch(port)
  yield* Effect.addFinalizer(() => stop(child))
  const server: RedisServer = {
    port,
    url: `redis://127.0.0.1:${port}`,
    kill: Effect.suspend(() => stop(child)),
    start: Effect.map(Effect.orDie(launch(port)), (next) => {
      child = next
    }),
    client: () =>
      Effect.acquireRelease(
        Effect.promise(async () => {
          const redis = new Redis(port, "127.0.0.1", { lazyConnect: true, maxRetriesPerRequest: 1 })
          await redis.connect()
          return redis
        }),
        (redis) => Effect.sync(() => redis.disconnect(false))
      )
  }
  return server
}).pipe(Effect.orDie)
