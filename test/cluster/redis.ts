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
import * as RedisClient from "../../src/server/cluster/RedisClient.js"
import { eventuallyEffect } from "../deadline.js"

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

/** A Redis Cluster of three masters, each with a replica, that can fail a master over. */
export interface RedisClusterWithReplicas extends RedisBackend {
  /** The shard (0..2) whose slot range holds `key`. */
  readonly shardOf: (key: string) => Effect.Effect<number>
  /**
   * Cuts the replication of `shard`: its replica is SIGSTOPped and the master drops the link, so
   * writes from now on reach the master only (what asynchronous replication loses in a failover).
   */
  readonly cutReplication: (shard: number) => Effect.Effect<void>
  /**
   * Promotes the replica of `shard`. Graceful: `CLUSTER FAILOVER`, the old master becomes its replica
   * (and takes the new master's data). Otherwise the master is SIGKILLed and the replica (resumed if
   * cut) takes over with `CLUSTER FAILOVER TAKEOVER`. Returns once every live node reports
   * `cluster_state:ok` and the promoted node as the master of the shard's slots.
   */
  readonly failover: (shard: number, mode: "graceful" | "takeover") => Effect.Effect<void>
  /** Runs a command on the master now serving `key`'s slot, over a connection of its own. */
  readonly atMaster: (key: string, ...command: [string, ...Array<string>]) => Effect.Effect<unknown>
}

const call = (node: Redis, ...args: [string, ...Array<string | number>]) =>
  Effect.promise(() => node.call(...args) as Promise<string>)

/**
 * Waits until `settled` holds for every node view (each probed over a connection of its own); the
 * error of a missed deadline carries every node's `CLUSTER INFO` and `CLUSTER NODES`.
 */
const clusterSettled = (
  ports: ReadonlyArray<number>,
  label: string,
  settled: (view: { readonly info: string; readonly nodes: string; readonly port: number }) => boolean
) =>
  Effect.scoped(
    Effect.gen(function* () {
      const probes = yield* Effect.forEach(ports, connectTo)
      const view = (i: number) =>
        Effect.map(
          Effect.all([call(probes[i]!, "CLUSTER", "INFO"), call(probes[i]!, "CLUSTER", "NODES")]),
          ([info, nodes]) => ({ info, nodes, port: ports[i]! })
        )
      const started = performance.now()
      for (const i of ports.keys()) {
        // One deadline for every node; a miss reports each node's view.
        const left = Math.max(0, CLUSTER_DEADLINE_MS - (performance.now() - started))
        yield* eventuallyEffect(`${label} (node ${ports[i]})`, Effect.map(view(i), settled), left, 20).pipe(
          Effect.catchAll((missed) =>
            Effect.flatMap(Effect.forEach(ports.keys(), view), (views) =>
              Effect.fail(
                new Error(
                  `${missed.message}\n${views.map((each) => `--- ${each.port}\n${each.info}\n${each.nodes}`).join("\n")}`
                )
              )
            )
          )
        )
      }
    })
  )

/** `CLUSTER NODES` lines as [id, address port, flags, master id, slots]. */
const clusterNodes = (nodes: string) =>
  nodes
    .trim()
    .split("\n")
    .map((line) => {
      const [id, address, flags, master, , , , , ...slots] = line.split(" ")
      return { id: id!, port: Number(address!.split(":")[1]!.split("@")[0]), flags: flags!, master, slots }
    })

/**
 * A Redis Cluster of three masters (with `replicas`, each with one replica) on free loopback ports,
 * nothing persisted: slots assigned with `CLUSTER ADDSLOTSRANGE`, every pair joined with
 * `CLUSTER MEET`, replicas attached with `CLUSTER REPLICATE`; ready once every node reports
 * `cluster_state:ok` and knows every other node in its role. The processes and their node files (in
 * a temporary directory) go with the scope.
 */
const startCluster = (replicas: boolean) =>
  Effect.gen(function* () {
    const dir = yield* Effect.acquireRelease(
      Effect.promise(() => mkdtemp(join(tmpdir(), "filament-redis-cluster-"))),
      (path) => Effect.promise(() => rm(path, { recursive: true, force: true }))
    )
    const shards = SLOT_RANGES.length
    // Masters first (0..2), then their replicas (3..5, the replica of shard i at i + 3).
    const count = replicas ? shards * 2 : shards
    const ports: Array<number> = []
    const busPorts: Array<number> = []
    const children: Array<ChildProcess> = []
    const launchNode = (i: number) =>
      launch(ports[i]!, [
        "--cluster-enabled",
        "yes",
        "--cluster-port",
        String(busPorts[i]!),
        "--cluster-config-file",
        join(dir, `nodes-${ports[i]}.conf`),
        "--dir",
        dir
      ])
    yield* Effect.addFinalizer(() =>
      Effect.forEach(
        children,
        (child) =>
          Effect.zipRight(
            Effect.sync(() => child.kill("SIGCONT")),
            stop(child)
          ),
        { discard: true }
      )
    )
    for (let i = 0; i < count; i++) {
      ports.push(yield* freePort)
      // The bus port is chosen too: Redis's default (port + 10000) is refused above 55535 and may be taken.
      busPorts.push(yield* freePort)
      children.push(yield* launchNode(i))
    }
    const knowsAll = (nodes: string) => {
      const known = clusterNodes(nodes)
      return known.length === count && known.every((node) => !/handshake|noaddr/.test(node.flags))
    }
    // The set-up connections close before any node is killed.
    const ids = yield* Effect.scoped(
      Effect.gen(function* () {
        const nodes = yield* Effect.forEach(ports, connectTo)
        for (const [i, [first, last]] of SLOT_RANGES.entries()) {
          yield* call(nodes[i]!, "CLUSTER", "ADDSLOTSRANGE", first, last)
        }
        // Every pair meets directly rather than through gossip: one lost handshake cannot keep a node out.
        for (const [i, node] of nodes.entries()) {
          for (const j of ports.keys()) {
            if (j > i) yield* call(node, "CLUSTER", "MEET", "127.0.0.1", ports[j]!, busPorts[j]!)
          }
        }
        const ids = yield* Effect.forEach(nodes, (node) => call(node, "CLUSTER", "MYID"))
        yield* clusterSettled(ports, "every node met every other", ({ nodes }) => knowsAll(nodes))
        for (let shard = 0; shard < shards && replicas; shard++) {
          yield* call(nodes[shard + shards]!, "CLUSTER", "REPLICATE", ids[shard]!)
        }
        return ids
      })
    )
    /** Who serves each shard now (its master, its replica if any), by node index. */
    const serving = SLOT_RANGES.map((_, shard) => ({ master: shard, replica: shard + shards }))
    const live = new Set(ports.keys())
    const livePorts = () => [...live].map((i) => ports[i]!)
    const inRole = (nodes: string) =>
      clusterNodes(nodes).every((node) => {
        const i = ids.indexOf(node.id)
        if (!live.has(i)) return true
        const shard = serving.findIndex((each) => each.master === i || each.replica === i)
        return serving[shard]!.master === i
          ? node.flags.includes("master") && node.slots.join(" ") === SLOT_RANGES[shard]!.join("-")
          : node.flags.includes("slave") && node.master === ids[serving[shard]!.master]
      })
    const formed = Effect.suspend(() =>
      clusterSettled(
        livePorts(),
        "cluster_state:ok and every node in its role",
        ({ info, nodes }) => info.includes("cluster_state:ok") && knowsAll(nodes) && inRole(nodes)
      )
    )
    /** Every live replica copies its master (a failover has data to promote). */
    const replicating = Effect.suspend(() =>
      Effect.scoped(
        Effect.forEach(
          serving.filter(({ replica }) => replicas && live.has(replica)),
          ({ replica }) =>
            Effect.flatMap(connectTo(ports[replica]!), (node) =>
              Effect.gen(function* () {
                let info = ""
                const inSync = Effect.map(call(node, "INFO", "replication"), (answer) => {
                  info = answer
                  return answer.includes("master_link_status:up")
                })
                yield* eventuallyEffect(
                  `replica ${ports[replica]} in sync`,
                  inSync,
                  CLUSTER_DEADLINE_MS,
                  20
                ).pipe(Effect.mapError((missed) => new Error(`${missed.message}\n${info}`)))
              })
            ),
          { discard: true }
        )
      )
    )
    yield* formed
    yield* replicating
    const urls = ports.slice(0, shards).map((port) => `redis://127.0.0.1:${port}`)
    const shardOf = (key: string) =>
      Effect.scoped(
        Effect.flatMap(connectTo(livePorts()[0]!), (node) =>
          Effect.map(call(node, "CLUSTER", "KEYSLOT", key), (slot) =>
            SLOT_RANGES.findIndex(([, last]) => Number(slot) <= last)
          )
        )
      )
    const cluster: RedisClusterWithReplicas = {
      // Two seeds: the client discovers the rest.
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
          const { master } = serving[yield* shardOf(key)]!
          yield* stop(children[master]!)
          // Its node file keeps its identity and slots: it rejoins the cluster with no keys.
          children[master] = yield* launchNode(master)
          yield* formed
        }).pipe(Effect.orDie),
      shardOf,
      cutReplication: (shard) =>
        Effect.gen(function* () {
          const { master, replica } = serving[shard]!
          children[replica]!.kill("SIGSTOP")
          yield* Effect.scoped(
            Effect.flatMap(connectTo(ports[master]!), (node) =>
              call(node, "CLIENT", "KILL", "TYPE", "replica")
            )
          )
        }),
      failover: (shard, mode) =>
        Effect.gen(function* () {
          const { master, replica } = serving[shard]!
          if (mode === "takeover") {
            yield* stop(children[master]!)
            live.delete(master)
            children[replica]!.kill("SIGCONT")
          }
          // A fresh connection: one opened before a SIGSTOP may have been cut meanwhile.
          yield* Effect.scoped(
            Effect.flatMap(connectTo(ports[replica]!), (node) =>
              call(node, "CLUSTER", "FAILOVER", ...(mode === "takeover" ? ["TAKEOVER"] : []))
            )
          )
          serving[shard] = { master: replica, replica: master }
          yield* formed
          if (mode === "graceful") yield* replicating
        }).pipe(Effect.orDie),
      atMaster: (key, ...command) =>
        Effect.gen(function* () {
          const { master } = serving[yield* shardOf(key)]!
          return yield* Effect.scoped(
            Effect.flatMap(connectTo(ports[master]!), (node) => call(node, ...command))
          )
        })
    }
    return cluster
  }).pipe(Effect.orDie)

/** A Redis Cluster of three masters, no replicas. */
export const startRedisCluster: Effect.Effect<RedisBackend, never, Scope.Scope> = startCluster(false)

/** A Redis Cluster of three masters with a replica each. */
export const startRedisClusterWithReplicas: Effect.Effect<RedisClusterWithReplicas, never, Scope.Scope> =
  startCluster(true)

/** The two backends the multi-node tests run on. */
export const BACKENDS: ReadonlyArray<{
  readonly backend: string
  readonly start: Effect.Effect<RedisBackend, never, Scope.Scope>
}> = [
  { backend: "one Redis", start: startRedis },
  { backend: "a Redis Cluster", start: startRedisCluster }
]
