/**
 * The gateway's Redis clients, for one Redis or a Redis Cluster (`GATEWAY_REDIS_CLUSTER`): the bus,
 * cluster presence, the voice projection, the event history and the inspector's cluster view all
 * connect here, so both modes behave alike. At the root because cluster/, recovery/ and inspector/
 * all use it. A Cluster client routes each command (and each script, by its first key) to the shard
 * owning the key's hash slot; with `shardedSubscriber`, `SSUBSCRIBE` goes to the shard owning the
 * channel.
 */
import { Effect, Redacted } from "effect"
import type { Scope } from "effect"
import { Cluster, Redis, type RedisOptions } from "ioredis"
import type { RedisEndpoint } from "./Config.js"

export type RedisClient = Redis | Cluster

/** The major version in an `INFO server` reply (0 when absent): 7 brought sharded pub/sub. */
export const redisMajorVersion = (info: string): number => {
  const match = /^redis_version:(\d+)/m.exec(info)
  return match === null ? 0 : Number(match[1])
}

export interface RedisClientOptions {
  readonly connectionName: string
  /** Connect on `client.connect()` only (the caller bounds and awaits it). */
  readonly lazyConnect: boolean
  /**
   * False: commands fail at once while disconnected (no stale replay later). True: they are queued
   * in order and sent on reconnect.
   */
  readonly offlineQueue: boolean
  /** Retries of a command cut by a disconnect; null = until it is sent. */
  readonly maxRetriesPerRequest: number | null
  /** Delay before reconnect attempt `n` (millis). */
  readonly reconnectDelay?: (attempt: number) => number
  readonly connectTimeoutMillis?: number
  /** Cluster only: one subscriber connection per shard, so `SSUBSCRIBE` reaches the channel's owner. */
  readonly shardedSubscriber?: boolean
  /**
   * Cluster only: the slot map is read again this often (millis). A master that hands its slots
   * over while staying up (a graceful failover, a resharding) drops their sharded subscriptions
   * with a `sunsubscribe` the client ignores and nothing redirected: only a refreshed slot map
   * moves them to the new owner.
   */
  readonly slotsRefreshMillis?: number
}

/** The credentials of a seed URL, for the nodes a Cluster client discovers (they come without). */
const credentialsOf = (url: string): Pick<RedisOptions, "username" | "password" | "tls"> => {
  const parsed = new URL(url)
  return {
    ...(parsed.username === "" ? {} : { username: decodeURIComponent(parsed.username) }),
    ...(parsed.password === "" ? {} : { password: decodeURIComponent(parsed.password) }),
    ...(parsed.protocol === "rediss:" ? { tls: {} } : {})
  }
}

const construct = (endpoint: RedisEndpoint, options: RedisClientOptions): RedisClient => {
  const urls = Redacted.value(endpoint.urls)
  const connection: RedisOptions = {
    connectionName: options.connectionName,
    maxRetriesPerRequest: options.maxRetriesPerRequest,
    ...(options.connectTimeoutMillis === undefined ? {} : { connectTimeout: options.connectTimeoutMillis })
  }
  if (!endpoint.cluster) {
    return new Redis(urls[0]!, {
      ...connection,
      lazyConnect: options.lazyConnect,
      enableOfflineQueue: options.offlineQueue,
      autoResubscribe: false,
      ...(options.reconnectDelay === undefined ? {} : { retryStrategy: options.reconnectDelay })
    })
  }
  return new Cluster([...urls], {
    lazyConnect: options.lazyConnect,
    enableOfflineQueue: options.offlineQueue,
    shardedSubscribers: options.shardedSubscriber ?? false,
    ...(options.slotsRefreshMillis === undefined ? {} : { slotsRefreshInterval: options.slotsRefreshMillis }),
    ...(options.reconnectDelay === undefined ? {} : { clusterRetryStrategy: options.reconnectDelay }),
    redisOptions: { ...connection, ...credentialsOf(urls[0]!) }
  })
}

/**
 * Opens the connection to every master. A Cluster client connects to a node on its first command,
 * and the commands of a burst sent while that connection is still opening can overtake each other
 * or fail: one publisher's messages on a topic would no longer arrive in publish order.
 */
const openMasters = (cluster: Cluster) =>
  Promise.all(cluster.nodes("master").map((node) => node.ping().catch(() => undefined)))

/**
 * Connects a lazily connecting client; with a Cluster, once every master's connection is open. A
 * refused connect rejects with the last connection error (ioredis's own rejection only says
 * "Connection is closed.").
 */
export const connect = async (client: RedisClient): Promise<void> => {
  let lastError: unknown
  const record = (error: unknown) => (lastError = error)
  client.on("error", record)
  try {
    await client.connect()
    if (client instanceof Cluster) await openMasters(client)
  } catch (error) {
    throw lastError ?? error
  } finally {
    client.off("error", record)
  }
}

const infoField = (info: string, field: string) => new RegExp(`^${field}:(\\w+)`, "m").exec(info)?.[1] ?? ""

/**
 * Tells, check by check, whether a Redis server behind the client was replaced since the last
 * check: a server whose run id changed (restarted), whose role changed (a failover: the old master
 * now replica), or a server not seen before (a Cluster client knows masters only, so a promoted
 * replica first appears as a new master). Without persistence, or with replication behind, the new
 * owner of the slots may lack keys. Servers are remembered by address while they are away, so one
 * that comes back is recognised.
 *
 * A check calls `reassert` when a server was replaced (or `lost` says the state is gone anyway);
 * what it saw is remembered only once `reassert` succeeded, so a re-assertion that fails while the
 * failover is still settling (the slots' owner unreachable) is tried again at the next check.
 */
export const replacementDetector = (
  client: RedisClient
): ((reassert: () => Promise<unknown>, lost?: boolean) => Promise<boolean>) => {
  const known = new Map<string, { readonly runId: string; readonly role: string }>()
  let first = true
  return async (reassert, lost = false) => {
    // A Cluster client drops a server whose connection ended and re-adds it only when a command
    // is redirected to it: the slot map is refreshed here so a restarted or promoted master is seen.
    if (client instanceof Cluster)
      await new Promise<void>((resolve) => client.refreshSlotsCache(() => resolve()))
    const servers = client instanceof Cluster ? client.nodes("all") : [client]
    const seen = await Promise.allSettled(
      servers.map(async (server) => {
        const info = (await server.call("INFO", "server", "replication")) as string
        const address = `${server.options.host}:${server.options.port}`
        return [address, { runId: infoField(info, "run_id"), role: infoField(info, "role") }] as const
      })
    )
    let replaced = lost
    // A server that cannot answer now is asked again at the next check.
    const answered = seen.flatMap((result) => (result.status === "fulfilled" ? [result.value] : []))
    for (const [address, now] of answered) {
      const before = known.get(address)
      if (before === undefined ? !first : before.runId !== now.runId || before.role !== now.role)
        replaced = true
    }
    if (replaced) await reassert()
    first = false
    for (const [address, now] of answered) known.set(address, now)
    return replaced
  }
}

/** Calls `listener` when a connection to a server is (re)established: after a restart or failover. */
export const onServerConnected = (client: RedisClient, listener: () => void): void => {
  if (client instanceof Cluster) client.on("+node", (server: Redis) => server.on("ready", listener))
  else client.on("ready", listener)
}

/** The endpoint's URL(s) for messages and logs: without user name and password. */
export const describeEndpoint = (endpoint: RedisEndpoint): string =>
  Redacted.value(endpoint.urls)
    .map((url) => {
      if (!URL.canParse(url)) return "(a URL that does not parse)"
      const parsed = new URL(url)
      parsed.username = ""
      parsed.password = ""
      return parsed.href.replace(/\/$/, "")
    })
    .join(",")

/** A client closed with the scope. Connection errors are retried by the client, never thrown. */
export const make = (
  endpoint: RedisEndpoint,
  options: RedisClientOptions
): Effect.Effect<RedisClient, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const client = construct(endpoint, options)
      // Failures show in health, metrics and the callers' logs.
      client.on("error", () => undefined)
      // After a reconnect (or a topology change) the node connections are new: open them at once.
      if (client instanceof Cluster) client.on("ready", () => void openMasters(client))
      return client
    }),
    (client) => Effect.sync(() => client.disconnect(false))
  )

/** Backoff before retry `attempt` (0-based) of a Redis connection or subscribe: 50 ms doubling, capped at `maxMillis`. */
export const backoffMillis = (attempt: number, maxMillis: number): number =>
  Math.min(50 * 2 ** Math.min(attempt, 16), maxMillis)
