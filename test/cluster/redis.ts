/**
 * A real `redis-server` for the cluster tests: started on a free loopback port inside the test's
 * scope, without persistence, restartable on the same port; or a real three-master Redis Cluster
 * (three `redis-server` processes). Tests that need it skip with a message when the binary is absent
 * (CI installs it, so CI runs them).
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process"
import { mkdtemp, rm } from "node:fs/promises"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect, Redacted, type Scope } from "effect"
import { Redis } from "ioredis"
import type { RedisEndpoint } from "../../src/server/Config.js"
import * as RedisClient from "../../src/server/RedisClient.js"

const DEADLINE_MS = 10_000
/** Forming a cluster waits out Redis's own 2 s writable delay plus gossip; under a loaded CI machine more. */
const CLUSTER_DEADLINE_MS = 25_000

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

/** What the gateway nodes are joined by: one Redis or a Redis Cluster. */
export interface RedisBackend {
  readonly endpoint: RedisEndpoint
  /** A plain client (closed with the scope), e.g. to inject foreign messages or read state. */
  readonly client: () => Effect.Effect<RedisClient.RedisClient, never, Scope.Scope>
  /**
   * SIGKILLs the server holding `key` (one Redis, or the Cluster master owning the key's slot) and
   * starts it again on the same port, empty; returns once it serves again.
   */
  readonly restartEmpty: (key: string) => Effect.Effect<void>
}

export interface RedisServer extends RedisBackend {
  readonly port: number
  readonly url: string
  /** SIGKILLs the server and waits for it to exit. */
  readonly kill: Effect.Effect<void>
  /** Starts it again on the same port and waits until it accepts connections. */
  readonly start: Effect.Effect<void>
  readonly client: () => Effect.Effect<Redis, never, Scope.Scope>
}

const launch = (port: number, extraArgs: ReadonlyArray<string> = []) =>
  Effect.async<ChildProcess, Error>((resume) => {
    const child = spawn(
      "redis-server",
      ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", ...extraArgs],
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

/** A plain connection to one server (closed with the scope), e.g. to inject foreign messages. */
const connectTo = (port: number) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const redis = new Redis(port, "127.0.0.1", { lazyConnect: true, maxRetriesPerRequest: 1 })
      await redis.connect()
      return redis
    }),
    (redis) => Effect.sync(() => redis.disconnect(false))
  )

export const startRedis = Effect.gen(function* () {
  const port = yield* freePort
  let child = yield* launch(port)
  yield* Effect.addFinalizer(() => stop(child))
  const url = `redis://127.0.0.1:${port}`
  const server: RedisServer = {
    port,
    url,
    endpoint: { cluster: false, urls: Redacted.make([url]) },
    kill: Effect.suspend(() => stop(child)),
    start: Effect.map(Effect.orDie(launch(port)), (next) => {
      child = next
    }),
    client: () => connectTo(port),
    restartEmpty: () => Effect.zipRight(server.kill, server.start)
  }
  return server
}).pipe(Effect.orDie)

/** The environment that joins a node process to `redis`. */
export const redisEnv = (redis: RedisBackend): Record<string, string> => ({
  GATEWAY_REDIS_URL: Redacted.value(redis.endpoint.urls).join(","),
  GATEWAY_REDIS_CLUSTER: String(redis.endpoint.cluster)
})

/** The three masters' slot ranges: the whole 0..16383 once. */
const SLOT_RANGES = [
  [0, 5460],
  [5461, 10922],
  [10923, 16383]
] as const

/**
 * A Redis Cluster of three masters (no replicas) on free loopback ports, nothing persisted: slots
 * assigned with `CLUSTER ADDSLOTSRANGE`, joined with `CLUSTER MEET`, ready once every node reports
 * `cluster_state:ok`. The processes and their node files go with the scope.
 */
export const startRedisCluster = Effect.gen(function* () {
  const dir = yield* Effect.acquireRelease(
    Effect.promise(() => mkdtemp(join(tmpdir(), "filament-redis-cluster-"))),
    (path) => Effect.promise(() => rm(path, { recursive: true, force: true }))
  )
  const ports: Array<number> = []
  const busPorts: Array<number> = []
  const children: Array<ChildProcess> = []
  const launchMaster = (port: number, busPort: number) =>
    launch(port, [
      "--cluster-enabled",
      "yes",
      "--cluster-port",
      String(busPort),
      "--cluster-config-file",
      join(dir, `nodes-${port}.conf`)
    ])
  yield* Effect.addFinalizer(() => Effect.forEach(children, stop, { discard: true }))
  for (const [first, last] of SLOT_RANGES) {
    const port = yield* freePort
    // The bus port is chosen too: Redis's default (port + 10000) is refused above 55535 and may be taken.
    const busPort = yield* freePort
    children.push(yield* launchMaster(port, busPort))
    const node = yield* connectTo(port)
    yield* Effect.promise(() => node.call("CLUSTER", "ADDSLOTSRANGE", first, last))
    ports.push(port)
    busPorts.push(busPort)
  }
  const nodes = yield* Effect.forEach(ports, connectTo)
  // Every pair meets directly rather than through gossip: one lost handshake cannot keep a node out.
  for (const [i, node] of nodes.entries()) {
    for (const j of ports.keys()) {
      if (j > i)
        yield* Effect.promise(() => node.call("CLUSTER", "MEET", "127.0.0.1", ports[j]!, busPorts[j]!))
    }
  }
  const info = (node: Redis) => Effect.promise(() => node.call("CLUSTER", "INFO") as Promise<string>)
  /** Every node (each probed over a connection of its own) reports `cluster_state:ok`. */
  const formed = Effect.scoped(
    Effect.gen(function* () {
      const probes = yield* Effect.forEach(ports, connectTo)
      const deadline = Date.now() + CLUSTER_DEADLINE_MS
      for (const node of probes) {
        while (!(yield* info(node)).includes("cluster_state:ok")) {
          if (Date.now() > deadline) {
            const views = yield* Effect.forEach(probes, (each) =>
              Effect.promise(() => each.call("CLUSTER", "NODES") as Promise<string>)
            )
            return yield* Effect.fail(
              new Error(`deadline: cluster_state:ok on every node\n${yield* info(node)}\n${views.join("\n")}`)
            )
          }
          yield* Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, 20)))
        }
      }
    })
  )
  yield* formed
  const urls = ports.map((port) => `redis://127.0.0.1:${port}`)
  const cluster: RedisBackend = {
    // Two seeds: the client discovers the third.
    endpoint: { cluster: true, urls: Redacted.make(urls.slice(0, 2)) },
    client: () =>
      Effect.tap(
        RedisClient.make(
          { cluster: true, urls: Redacted.make(urls) },
          { connectionName: "test", lazyConnect: true, offlineQueue: false, maxRetriesPerRequest: 1 }
        ),
        (client) => Effect.promise(() => client.connect())
      ),
    restartEmpty: (key) =>
      Effect.gen(function* () {
        const slot = yield* Effect.scoped(
          Effect.flatMap(connectTo(ports[0]!), (node) =>
            Effect.promise(() => node.call("CLUSTER", "KEYSLOT", key) as Promise<number>)
          )
        )
        const i = SLOT_RANGES.findIndex(([, last]) => slot <= last)
        yield* stop(children[i]!)
        // Its node file keeps its identity and slots: it rejoins the cluster with no keys.
        children[i] = yield* launchMaster(ports[i]!, busPorts[i]!)
        yield* formed
      }).pipe(Effect.orDie)
  }
  return cluster
}).pipe(Effect.orDie)

/** The two backends the multi-node tests run on. */
export const BACKENDS: ReadonlyArray<{
  readonly backend: string
  readonly start: Effect.Effect<RedisBackend, never, Scope.Scope>
}> = [
  { backend: "one Redis", start: startRedis },
  { backend: "a Redis Cluster", start: startRedisCluster }
]
