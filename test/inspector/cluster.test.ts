/**
 * The inspector's cluster view over a real redis-server (one Redis and a Redis Cluster): gateway nodes
 * joined by Redis; the overview served by one lists the other's totals, and a node that stops leaves
 * the view. The cluster-wide rates come from a node in its own process (`npm start`'s entry point,
 * on the real clock), so what they show was delivered and published there.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Option, Redacted, Scope, TestClock } from "effect"
import { ratesBetween, type ClusterSample, type NodeRecord } from "../../src/server/inspector/Cluster.js"
import { eventuallyEffect } from "../deadline.js"
import {
  BUS_SECRET,
  startClusterNode,
  startNodeProcess,
  subscribe,
  connectToProcess
} from "../cluster/chat.js"
import { BACKENDS, freePort, hasRedisServer, redisEnv, startRedis } from "../cluster/redis.js"
import { newId, PUBLISH_KEY, SECRET, type Harness } from "../server/harness.js"
import { ADMIN_KEY } from "./support.js"

const ADMIN = { adminKey: Option.some(ADMIN_KEY) }

interface Peer {
  readonly node: string
  readonly totals: { readonly connections: number; readonly usersOnline: number }
}

interface OverviewAnswer {
  readonly node: string
  readonly peers: ReadonlyArray<Peer>
  readonly samples: ReadonlyArray<{ readonly deliveries: Record<string, number> }>
  readonly cluster: { readonly periodSeconds: number; readonly samples: ReadonlyArray<ClusterSample> } | null
}

const overview = (harness: Harness) =>
  Effect.map(
    harness.http("/admin/api/overview", {
      headers: { authorization: `Bearer ${Redacted.value(ADMIN_KEY)}` }
    }),
    (answer) => JSON.parse(answer.body) as OverviewAnswer
  )

describe.skipIf(!hasRedisServer).each(BACKENDS)("inspector cluster view on $backend", ({ start }) => {
  it.scoped("each node's overview lists the other nodes' totals; a stopped node drops out", () =>
    Effect.gen(function* () {
      const redis = yield* start
      const a = yield* startClusterNode(redis, ADMIN)
      const bScope = yield* Scope.make()
      const b = yield* Scope.extend(startClusterNode(redis, ADMIN), bScope)
      const guild = newId()
      yield* Scope.extend(b.connectReady(newId(), { [guild]: "*" }), bScope)
      yield* Scope.extend(b.connectReady(newId(), { [guild]: "*" }), bScope)
      const bNode = (yield* overview(b)).node

      // Each node writes its totals every 5 s (on the gateway's Clock).
      yield* eventuallyEffect(
        "node b in node a's cluster view with its two connections",
        Effect.gen(function* () {
          yield* TestClock.adjust("5 seconds")
          const peers = (yield* overview(a)).peers
          return peers.some((peer) => peer.node === bNode && peer.totals.connections === 2)
        })
      )
      const [peer] = (yield* overview(a)).peers
      expect(peer).toMatchObject({ node: bNode, totals: { connections: 2, usersOnline: 2 } })
      // Node a sees no copy of itself.
      expect((yield* overview(a)).peers.map((entry) => entry.node)).toEqual([bNode])

      // A node that stops removes its entry.
      yield* Scope.close(bScope, Exit.void)
      expect((yield* overview(a)).peers).toEqual([])
    })
  )
})

// Node a's TestClock follows real time: the other node is a process of its own, on the real clock
// (one Redis: the Redis Cluster's keys and pipeline are the same, exercised above).
describe.skipIf(!hasRedisServer)("inspector cluster rates", () => {
  it.scoped(
    "the cluster rates show what another node (its own process) delivered and published; a killed node stops counting",
    () =>
      Effect.gen(function* () {
        const redis = yield* startRedis
        const a = yield* startClusterNode(redis, ADMIN)
        const port = yield* freePort
        const b = yield* startNodeProcess({
          GATEWAY_PORT: String(port),
          GATEWAY_JWT_SECRET: Redacted.value(SECRET),
          GATEWAY_PUBLISH_KEY: Redacted.value(PUBLISH_KEY),
          GATEWAY_ADMIN_KEY: Redacted.value(ADMIN_KEY),
          GATEWAY_BUS_SECRET: BUS_SECRET,
          ...redisEnv(redis)
        })
        // Two subscribers on node b, none on node a.
        const [guild, channel] = [newId(), newId()]
        for (let i = 0; i < 2; i++) {
          const client = yield* connectToProcess(port, SECRET, guild)
          yield* subscribe(client, guild, channel)
        }
        const publishOnB = Effect.promise(() =>
          fetch(`http://127.0.0.1:${port}/v1/publish`, {
            method: "POST",
            headers: {
              authorization: `Bearer ${Redacted.value(PUBLISH_KEY)}`,
              "content-type": "application/json"
            },
            body: JSON.stringify({
              t: "channel_create",
              d: { guild_id: guild, channel: { channel_id: newId(), name: "c", kind: "text" } }
            })
          })
        ).pipe(Effect.tap((response) => expect(response.status).toBe(202)))

        // Node a is watched (its overview polled): it writes the watched mark with its record every
        // 5 s; node b sees the mark at its next write and counts publishes from then on.
        let latest: ClusterSample | undefined
        yield* eventuallyEffect(
          "node b's deliveries and publishes in node a's cluster rates",
          Effect.gen(function* () {
            yield* publishOnB
            yield* TestClock.setTime(Date.now())
            latest = (yield* overview(a)).cluster?.samples.at(-1)
            return (latest?.publishes["channel_create"] ?? 0) > 0
          }),
          30_000,
          500
        )
        const answer = yield* overview(a)
        // Nothing of it was delivered on node a.
        expect(answer.samples.some((sample) => "channel_create" in sample.deliveries)).toBe(false)
        expect(answer.cluster?.periodSeconds).toBe(5)
        expect(latest?.nodes).toBe(2)
        // Each publish reached node b's two subscribers.
        expect(latest?.deliveries["channel_create"]).toBeCloseTo(2 * latest!.publishes["channel_create"]!, 9)

        // Killed without leaving, its record lingers in Redis; two periods after node a read its last
        // record it counts no more: no rate from it, never a negative one.
        yield* b.kill
        yield* eventuallyEffect(
          "node b gone from node a's cluster rates",
          Effect.gen(function* () {
            yield* TestClock.setTime(Date.now())
            latest = (yield* overview(a)).cluster?.samples.at(-1)
            return latest?.nodes === 1
          }),
          20_000,
          500
        )
        expect(latest?.deliveries).toEqual({})
        expect(latest?.publishes).toEqual({})
      }),
    60_000
  )
})

describe("cluster rates between two records of one node", () => {
  const record = (at: number, delivered: Record<string, number>, published?: NodeRecord["published"]) =>
    ({
      node: "n",
      at,
      totals: {
        connections: 0,
        usersOnline: 0,
        subscriptions: 0,
        drops: {},
        slowConsumerEvictions: 0,
        ingressRejections: {},
        busHealthy: true,
        busOutageSeconds: 0
      },
      delivered,
      ...(published === undefined ? {} : { published })
    }) satisfies NodeRecord

  it("per second over the records' interval, per event type", () => {
    expect(
      ratesBetween(
        record(10_000, { a: 10 }, { since: 1, counts: { a: 5 } }),
        record(15_000, { a: 60, b: 5 }, { since: 1, counts: { a: 30 } })
      )
    ).toEqual({ deliveries: { a: 10, b: 1 }, publishes: { a: 5 } })
  })

  it("a restarted process (a counter went back) gives no rate, not a negative one", () => {
    expect(ratesBetween(record(10_000, { a: 500, b: 3 }), record(15_000, { a: 600 }))).toBeUndefined()
    expect(ratesBetween(record(10_000, { a: 500 }), record(15_000, { a: 20 }))).toBeUndefined()
  })

  it("no time between the records gives no rate (no spike)", () => {
    expect(ratesBetween(record(10_000, { a: 1 }), record(10_000, { a: 9 }))).toBeUndefined()
    expect(ratesBetween(record(10_000, { a: 1 }), record(9_000, { a: 9 }))).toBeUndefined()
  })

  it("publishes only when counted over the whole interval (the same sampler run)", () => {
    expect(
      ratesBetween(record(10_000, { a: 1 }), record(15_000, { a: 1 }, { since: 12_000, counts: { a: 4 } }))
    ).toEqual({ deliveries: {} })
    expect(
      ratesBetween(
        record(10_000, { a: 1 }, { since: 1, counts: { a: 40 } }),
        record(15_000, { a: 1 }, { since: 12_000, counts: { a: 4 } })
      )
    ).toEqual({ deliveries: {} })
  })
})
