/**
 * In-memory Presence: node-level transitions become guild-level ones exactly once, in any order
 * (a cleanup that runs after a newer subscribe of the same user still ends online), and the
 * presence_sync snapshot is bounded with the asking user first, and otherwise one array per guild
 * version.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import fc from "fast-check"
import type { GuildId, UserId } from "../../src/protocol/Ids.js"
import * as Presence from "../../src/server/chat/Presence.js"

const G = "G" as GuildId
const users = (count: number) => Array.from({ length: count }, (_, i) => `U${i}` as UserId)

describe("Presence (memory)", () => {
  it.effect("join / leave report the guild-level transition once", () =>
    Effect.gen(function* () {
      const presence = Presence.makeMemory()
      const [u] = users(1)
      expect(yield* presence.join(G, u!)).toBe(true)
      expect(yield* presence.join(G, u!)).toBe(false)
      expect(yield* presence.leave(G, u!)).toBe(false)
      expect(yield* presence.leave(G, u!)).toBe(true)
      expect(yield* presence.leave(G, u!)).toBe(false)
      expect(yield* presence.snapshot(G, u!, 10)).toEqual({ userIds: [], total: 0 })
    })
  )

  it.effect("a leave that arrives after a newer join leaves the user online, with no announcement", () =>
    Effect.gen(function* () {
      const presence = Presence.makeMemory()
      const [u] = users(1)
      yield* presence.join(G, u!)
      // Node said: left (old connection), then joined (new one); the effects ran in the other order.
      expect(yield* presence.join(G, u!)).toBe(false)
      expect(yield* presence.leave(G, u!)).toBe(false)
      expect((yield* presence.snapshot(G, u!, 10)).userIds).toEqual([u])
    })
  )

  it.effect("announcements balance under any interleaving of balanced joins and leaves", () =>
    Effect.promise(() =>
      fc.assert(
        fc.asyncProperty(fc.array(fc.boolean(), { maxLength: 40 }), async (order) => {
          const presence = Presence.makeMemory()
          const [u] = users(1)
          let held = 0
          let online = 0
          for (const isJoin of order) {
            if (!isJoin && held === 0) continue
            held += isJoin ? 1 : -1
            const changed = await Effect.runPromise(isJoin ? presence.join(G, u!) : presence.leave(G, u!))
            if (changed) online += isJoin ? 1 : -1
            expect(online).toBe(held > 0 ? 1 : 0)
          }
        }),
        { numRuns: 100 }
      )
    )
  )

  it.effect("the snapshot is bounded, leads with the asking user, and reports the total", () =>
    Effect.gen(function* () {
      const presence = Presence.makeMemory()
      const all = users(1030)
      for (const user of all) yield* presence.join(G, user)
      const asking = all[1029]!
      const snapshot = yield* presence.snapshot(G, asking, 1024)
      expect(snapshot.total).toBe(1030)
      expect(snapshot.userIds.length).toBe(1024)
      expect(snapshot.userIds[0]).toBe(asking)
      expect(new Set(snapshot.userIds).size).toBe(1024)
      expect(snapshot.userIds.slice(1, 4)).toEqual(all.slice(0, 3))
    })
  )

  it.effect("an untruncated snapshot is the guild in coming-online order, one array per guild version", () =>
    Effect.gen(function* () {
      const presence = Presence.makeMemory()
      const [a, b, c] = users(3)
      yield* presence.join(G, a!)
      yield* presence.join(G, b!)
      const first = yield* presence.snapshot(G, b!, 1024)
      expect(first).toEqual({ userIds: [a, b], total: 2 })
      // No change in the online set (a second holding, a first holding's release): the same array.
      yield* presence.join(G, b!)
      yield* presence.leave(G, b!)
      expect((yield* presence.snapshot(G, a!, 1024)).userIds).toBe(first.userIds)
      // A user came online: a new version.
      yield* presence.join(G, c!)
      const second = yield* presence.snapshot(G, c!, 1024)
      expect(second.userIds).not.toBe(first.userIds)
      expect(second.userIds).toEqual([a, b, c])
      // A user went offline: a new version again; the earlier arrays are unchanged.
      yield* presence.leave(G, a!)
      expect((yield* presence.snapshot(G, b!, 1024)).userIds).toEqual([b, c])
      expect(second.userIds).toEqual([a, b, c])
    })
  )
})
