/**
 * The inspector's cluster view over a real redis-server (one Redis and a Redis Cluster): two gateway
 * nodes joined by Redis; the overview served by one lists the other's totals, and a node that stops
 * leaves the view.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Option, Redacted, Scope, TestClock } from "effect"
import { eventuallyEffect } from "../adversarial/support.js"
import { startClusterNode } from "../cluster/chat.js"
import { BACKENDS, hasRedisServer } from "../cluster/redis.js"
import { newId, type Harness } from "../server/harness.js"
import { ADMIN_KEY } from "./support.js"

const ADMIN = { adminKey: Option.some(ADMIN_KEY) }

interface Peer {
  readonly node: string
  readonly totals: { readonly connections: number; readonly usersOnline: number }
}

const overview = (harness: Harness) =>
  Effect.map(
    harness.http("/admin/api/overview", {
      headers: { authorization: `Bearer ${Redacted.value(ADMIN_KEY)}` }
    }),
    (answer) => JSON.parse(answer.body) as { readonly node: string; readonly peers: ReadonlyArray<Peer> }
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
