/**
 * Cluster-wide presence and revocation with a real `redis-server` and with a real three-master Redis
 * Cluster: nodes in this process (chat follow-ups, Redis presence) and, for the crash, a separate
 * `npm start` process that is SIGKILLed.
 */
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Redacted, TestClock } from "effect"
import WebSocket from "ws"
import { MessageCreate } from "../../src/protocol/events/message.js"
import { WorkspaceMemberRemove } from "../../src/protocol/events/workspace.js"
import * as Auth from "../../src/server/Auth.js"
import type { GatewayConfigShape } from "../../src/server/Config.js"
import {
  BASE_UNIX,
  message,
  newId,
  SECRET,
  TestClient,
  typed,
  type Frame,
  type Harness
} from "../server/harness.js"
import {
  BUS_SECRET,
  expectMarkerNext,
  presenceOf,
  startClusterNode,
  startNodeProcess,
  subscribe,
  summedMetric
} from "./chat.js"
import { eventuallyEffect } from "../deadline.js"
import { BACKENDS, freePort, hasRedisServer, redisEnv, startRedis, type RedisBackend } from "./redis.js"

const PUBLISH_KEY = "presence-publish-key-0123456789-0123456789"
const NODE_TTL_SECONDS = 3

const startChatNode = (redis: RedisBackend, overrides: Partial<GatewayConfigShape> = {}) =>
  startClusterNode(redis, { nodeTtl: Duration.seconds(NODE_TTL_SECONDS), ...overrides })

const syncedUsers = (frames: ReadonlyArray<Frame>) =>
  [...(frames.find((frame) => frame.t === "presence_sync")!.d["user_ids"] as Array<string>)].sort()

const ready = (node: Harness) => Effect.map(node.http("/readyz"), (response) => response.status === 200)

const presenceCount = (redis: RedisBackend, guild: string, user: string) =>
  Effect.flatMap(redis.client(), (client) =>
    Effect.promise(async () => Number((await client.hget(`filament:{g:${guild}}:presence`, user)) ?? "0"))
  ).pipe(Effect.scoped)

describe.skipIf(!hasRedisServer).each(BACKENDS)(
  "cluster presence and revocation on $backend",
  ({ start }) => {
    it.scoped("a user connected on two nodes comes online once and goes offline once", () =>
      Effect.gen(function* () {
        const redis = yield* start
        const a = yield* startChatNode(redis)
        const b = yield* startChatNode(redis)
        const [guild, channel] = [newId(), newId()]
        const user = newId()
        const access = { [guild]: "*" as const }
        const observerUser = newId()
        const observer = yield* b.connectReady(observerUser, access)
        yield* subscribe(observer, guild, channel)

        const onA = yield* a.connectReady(user, access)
        expect(presenceOf(yield* subscribe(onA, guild, channel), user)).toEqual(["online"])
        expect(presenceOf([yield* observer.next("online over the bus")], user)).toEqual(["online"])

        const onB = yield* b.connectReady(user, access)
        const second = yield* subscribe(onB, guild, channel)
        expect(presenceOf(second, user)).toEqual([])
        // The snapshot is the cluster's: the observer (node B) and the user (both nodes).
        const sync = second.find((frame) => frame.t === "presence_sync")!
        expect([...(sync.d["user_ids"] as Array<string>)].sort()).toEqual([observerUser, user].sort())
        yield* expectMarkerNext(a, guild, channel, [observer])
        yield* expectMarkerNext(b, guild, channel, [observer])

        // One node lets go: still online (the other node holds the user).
        onA.socket.close()
        yield* eventuallyEffect(
          "node A's holding released",
          Effect.map(presenceCount(redis, guild, user), (count) => count === 1)
        )
        yield* expectMarkerNext(a, guild, channel, [observer])

        // The last one lets go: offline, once.
        onB.socket.close()
        expect(presenceOf([yield* observer.next("offline")], user)).toEqual(["offline"])
        yield* expectMarkerNext(a, guild, channel, [observer])
        yield* expectMarkerNext(b, guild, channel, [observer])
        expect(yield* presenceCount(redis, guild, user)).toBe(0)
      })
    )

    it.scoped("a member removed on one node loses its subscriptions on another node; offline once", () =>
      Effect.gen(function* () {
        const redis = yield* start
        const a = yield* startChatNode(redis)
        const b = yield* startChatNode(redis)
        const [guild, channel, otherGuild, otherChannel] = [newId(), newId(), newId(), newId()]
        const user = newId()
        const observer = yield* a.connectReady(newId(), { [guild]: "*" })
        yield* subscribe(observer, guild, channel)
        const member = yield* b.connectReady(user, { [guild]: "*", [otherGuild]: "*" })
        yield* subscribe(member, guild, channel)
        yield* subscribe(member, otherGuild, otherChannel)
        expect(presenceOf([yield* observer.next("member online")], user)).toEqual(["online"])

        yield* a.gateway.publish(
          WorkspaceMemberRemove,
          typed(WorkspaceMemberRemove, {
            guild_id: guild,
            user_id: user,
            reason: "kick",
            removed_at_unix: BASE_UNIX
          })
        )
        expect((yield* member.next("remove")).t).toBe("workspace_member_remove")
        expect((yield* observer.next("remove")).t).toBe("workspace_member_remove")
        // Node B revoked its connection after delivering the remove: nothing of the guild reaches it.
        yield* a.gateway.publish(MessageCreate, message(guild, channel, "after removal"))
        yield* expectMarkerNext(a, otherGuild, otherChannel, [member])
        expect((yield* observer.next("after removal")).d["content"]).toBe("after removal")
        // Offline exactly once (announced by node B, whose connection held the user).
        expect(presenceOf([yield* observer.next("offline")], user)).toEqual(["offline"])
        yield* expectMarkerNext(b, guild, channel, [observer])
      })
    )

    it.scoped(
      "a SIGKILLed node's users go offline within the node TTL plus one heartbeat (TestClock on the survivor)",
      () =>
        Effect.gen(function* () {
          const redis = yield* start
          const survivor = yield* startChatNode(redis)
          const port = yield* freePort
          const doomedNode = yield* startNodeProcess({
            GATEWAY_PORT: String(port),
            GATEWAY_JWT_SECRET: Redacted.value(SECRET),
            GATEWAY_PUBLISH_KEY: PUBLISH_KEY,
            ...redisEnv(redis),
            GATEWAY_BUS_SECRET: BUS_SECRET,
            GATEWAY_NODE_TTL_SECS: String(NODE_TTL_SECONDS)
          })

          const [guild, channel] = [newId(), newId()]
          const user = newId()
          const observer = yield* survivor.connectReady(newId(), { [guild]: "*" })
          yield* subscribe(observer, guild, channel)

          const token = yield* Auth.signToken({
            secret: SECRET,
            userId: user,
            expiresAt: Math.floor(Date.now() / 1000) + 3600,
            guilds: { [guild]: "*" }
          })
          const doomed = new TestClient(
            new WebSocket(`ws://127.0.0.1:${port}/gateway/ws?access_token=${token}`)
          )
          yield* doomed.nextOfType("ready")
          yield* subscribe(doomed, guild, channel)
          expect(presenceOf([yield* observer.next("online over the bus")], user)).toEqual(["online"])

          const killedAt = Date.now()
          yield* doomedNode.kill
          // The dead node's last heartbeat is at most one period (TTL / 3) before the kill: by the
          // survivor's clock, TTL + one period after the kill it has been reaped.
          yield* TestClock.setTime(killedAt + (NODE_TTL_SECONDS * 1000 * 4) / 3 + 1)
          expect(presenceOf([yield* observer.next("offline after reaping")], user)).toEqual(["offline"])
          yield* expectMarkerNext(survivor, guild, channel, [observer])
          expect(yield* presenceCount(redis, guild, user)).toBe(0)
        })
    )

    it.scoped(
      "Redis (or the guild's master) restarted empty: within one heartbeat each node notices and re-asserts its holdings; presence_sync, offline and online are right again, and after the node TTL",
      () =>
        Effect.gen(function* () {
          const redis = yield* start
          const a = yield* startChatNode(redis)
          const b = yield* startChatNode(redis)
          const [guild, channel] = [newId(), newId()]
          const access = { [guild]: "*" as const }
          const [u1, u2, u3] = [newId(), newId(), newId()]
          const one = yield* a.connectReady(u1, access)
          const two = yield* b.connectReady(u2, access)
          const three = yield* a.connectReady(u3, access)
          for (const client of [one, two, three]) yield* subscribe(client, guild, channel)
          const reasserted0 = yield* summedMetric([a, b], "filament_cluster_state_reasserted_total", {
            store: "presence"
          })

          yield* redis.restartEmpty(`filament:{g:${guild}}:presence`)
          for (const node of [a, b]) yield* eventuallyEffect("readyz 200 after the restart", ready(node))
          // Each node notices when it reconnects to the server, at the latest at its next heartbeat,
          // and writes its holdings again.
          yield* TestClock.adjust(Duration.millis((NODE_TTL_SECONDS * 1000) / 3))
          yield* eventuallyEffect(
            "both nodes re-asserted",
            Effect.map(
              summedMetric([a, b], "filament_cluster_state_reasserted_total", { store: "presence" }),
              (n) => n === reasserted0 + 2
            )
          )

          // A new subscriber's snapshot lists every online user of both nodes.
          const u4 = newId()
          const observer = yield* b.connectReady(u4, access)
          expect(syncedUsers(yield* subscribe(observer, guild, channel))).toEqual([u1, u2, u3, u4].sort())
          // A second connection of an online user (on the other node) is not announced again.
          const twoAgain = yield* a.connectReady(u2, access)
          expect(presenceOf(yield* subscribe(twoAgain, guild, channel), u2)).toEqual([])
          yield* expectMarkerNext(a, guild, channel, [observer])
          // A user who disconnects is announced offline, once.
          one.socket.close()
          expect(presenceOf([yield* observer.next("u1 offline")], u1)).toEqual(["offline"])
          yield* expectMarkerNext(b, guild, channel, [observer])

          // Still right after the node TTL (nobody reaped: both nodes are registered again).
          yield* TestClock.adjust(Duration.millis(NODE_TTL_SECONDS * 1000 + (NODE_TTL_SECONDS * 1000) / 3))
          const u5 = newId()
          const late = yield* a.connectReady(u5, access)
          const lateSync = syncedUsers(yield* subscribe(late, guild, channel))
          expect(presenceOf([yield* observer.next("u5 online")], u5)).toEqual(["online"])
          expect(lateSync).toEqual([u2, u3, u4, u5].sort())
          yield* expectMarkerNext(a, guild, channel, [observer])
          three.socket.close()
          expect(presenceOf([yield* observer.next("u3 offline")], u3)).toEqual(["offline"])
          yield* expectMarkerNext(a, guild, channel, [observer])
        })
    )
  }
)

describe.skipIf(!hasRedisServer)("cluster presence on one Redis", () => {
  it.scoped(
    "Redis flushed (same server, same run id): each node's next heartbeat finds itself gone from the node registry and re-asserts",
    () =>
      Effect.gen(function* () {
        const redis = yield* startRedis
        const admin = yield* redis.client()
        const a = yield* startChatNode(redis)
        const b = yield* startChatNode(redis)
        const [guild, channel] = [newId(), newId()]
        const access = { [guild]: "*" as const }
        const [u1, u2] = [newId(), newId()]
        yield* subscribe(yield* a.connectReady(u1, access), guild, channel)
        const two = yield* b.connectReady(u2, access)
        yield* subscribe(two, guild, channel)
        const reasserted0 = yield* summedMetric([a, b], "filament_cluster_state_reasserted_total", {
          store: "presence"
        })

        yield* Effect.promise(() => admin.flushall())
        yield* TestClock.adjust(Duration.millis((NODE_TTL_SECONDS * 1000) / 3))
        yield* eventuallyEffect(
          "both nodes re-asserted",
          Effect.map(
            summedMetric([a, b], "filament_cluster_state_reasserted_total", { store: "presence" }),
            (n) => n === reasserted0 + 2
          )
        )
        const observer = yield* a.connectReady(newId(), access)
        const frames = yield* subscribe(observer, guild, channel)
        expect(syncedUsers(frames)).toHaveLength(3)
        expect(syncedUsers(frames)).toEqual(expect.arrayContaining([u1, u2]))
        two.socket.close()
        expect(presenceOf([yield* observer.next("u2 offline")], u2)).toEqual(["offline"])
        yield* expectMarkerNext(a, guild, channel, [observer])
      })
  )
})
