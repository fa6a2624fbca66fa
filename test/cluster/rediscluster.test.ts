/**
 * The event bus on a real three-master Redis Cluster: two gateway nodes in this process joined only
 * by the cluster (sharded pub/sub, each topic on the shard owning its hash slot). Presence, reaping
 * and voice run on the cluster too, in presence.test.ts and voice.test.ts (`$backend`).
 *
 * Order is per topic: a topic lives on one shard, so one publisher's messages on it arrive in publish
 * order; topics on different shards travel over different connections and may interleave.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { MessageCreate } from "../../src/protocol/events/message.js"
import { ProfileUpdate } from "../../src/protocol/events/profile.js"
import { ChannelCreate } from "../../src/protocol/events/workspace.js"
import type { GuildId, UserId } from "../../src/protocol/Ids.js"
import { guildTopic, userTopic } from "../../src/server/registry/Interest.js"
import {
  BASE_UNIX,
  message,
  newId,
  startGateway,
  typed,
  type Frame,
  type TestClient
} from "../server/harness.js"
import { joinedBy } from "./chat.js"
import { hasRedisServer, startRedisCluster, type RedisBackend } from "./redis.js"

/** The three masters' slot ranges, as startRedisCluster assigns them. */
const shardOf = (slot: number) => (slot <= 5460 ? 0 : slot <= 10922 ? 1 : 2)

/** Fresh ids, one whose topic lives on each shard (found with `CLUSTER KEYSLOT`). */
const idsOnEveryShard = (redis: RedisBackend, topic: (id: string) => string) =>
  Effect.gen(function* () {
    const client = yield* redis.client()
    const found: Array<string | undefined> = [undefined, undefined, undefined]
    while (found.includes(undefined)) {
      const id = newId()
      const slot = yield* Effect.promise(
        () => client.call("CLUSTER", "KEYSLOT", topic(id)) as Promise<number>
      )
      found[shardOf(slot)] ??= id
    }
    return found as Array<string>
  }).pipe(Effect.scoped)

const collectUntil = (client: TestClient, done: (frames: ReadonlyArray<Frame>) => boolean) =>
  Effect.gen(function* () {
    const seen: Array<Frame> = []
    while (!done(seen)) seen.push(yield* client.next())
    return seen
  })

const texts = (frames: ReadonlyArray<Frame>, t: string, guild?: string) =>
  frames
    .filter((frame) => frame.t === t && (guild === undefined || frame.d["guild_id"] === guild))
    .map((frame) =>
      t === "message_create"
        ? frame.d["content"]
        : t === "channel_create"
          ? (frame.d["channel"] as { name: string }).name
          : (frame.d["updated_fields"] as { about_markdown: string }).about_markdown
    )

const N = 15
const sequence = (prefix: string) => [
  ...Array.from({ length: N }, (_, i) => `${prefix}${i}`),
  `${prefix}-end`
]

describe.skipIf(!hasRedisServer)("cluster bus over a Redis Cluster", () => {
  it.scoped(
    "two nodes: channel, guild and user events on topics of every shard reach the other node exactly once, in publish order per topic",
    () =>
      Effect.gen(function* () {
        const redis = yield* startRedisCluster
        const a = yield* startGateway(joinedBy(redis))
        const b = yield* startGateway(joinedBy(redis))
        const guilds = yield* idsOnEveryShard(redis, (id) => guildTopic(id as GuildId))
        const users = yield* idsOnEveryShard(redis, (id) => userTopic(id as UserId))
        const channels = guilds.map(() => newId())
        const access = Object.fromEntries(guilds.map((guild) => [guild, "*" as const]))
        const onA = yield* a.connectReady(newId(), access)
        const onB = yield* Effect.forEach(users, (user) => b.connectReady(user, access))
        for (const client of [onA, ...onB]) {
          for (const [i, guild] of guilds.entries()) yield* client.subscribe(guild, channels[i]!)
        }

        for (let n = 0; n <= N; n++) {
          const suffix = n === N ? "-end" : String(n)
          for (const [i, guild] of guilds.entries()) {
            // Local recipients only: the others are reached over the bus.
            expect(
              yield* a.gateway.publish(MessageCreate, message(guild, channels[i]!, `A${i}:${suffix}`))
            ).toBe(1)
            const created = typed(ChannelCreate, {
              guild_id: guild,
              channel: { channel_id: newId(), name: `B${i}:${suffix}`, kind: "text" }
            })
            expect(yield* b.gateway.publish(ChannelCreate, created)).toBe(3)
          }
          for (const [i, user] of users.entries()) {
            const profile = typed(ProfileUpdate, {
              user_id: user,
              updated_fields: { about_markdown: `U${i}:${suffix}` },
              updated_at_unix: BASE_UNIX
            })
            expect(yield* a.gateway.publishToUsers(ProfileUpdate, profile, [user as UserId])).toBe(0)
          }
        }

        const received = (frames: ReadonlyArray<Frame>, t: string, last: string) =>
          texts(frames, t).includes(last)
        // Node A gets node B's guild events of every shard.
        const framesA = yield* collectUntil(onA, (seen) =>
          guilds.every((_, i) => received(seen, "channel_create", `B${i}:-end`))
        )
        for (const [i, guild] of guilds.entries()) {
          expect(texts(framesA, "channel_create", guild)).toEqual(sequence(`B${i}:`))
        }
        // Each user on node B gets node A's channel events of every shard and its own user events.
        for (const [u, client] of onB.entries()) {
          const frames = yield* collectUntil(
            client,
            (seen) =>
              guilds.every((_, i) => received(seen, "message_create", `A${i}:-end`)) &&
              received(seen, "profile_update", `U${u}:-end`)
          )
          for (const [i, guild] of guilds.entries()) {
            expect(texts(frames, "message_create", guild)).toEqual(sequence(`A${i}:`))
          }
          expect(texts(frames, "profile_update")).toEqual(sequence(`U${u}:`))
        }
      })
  )
})
