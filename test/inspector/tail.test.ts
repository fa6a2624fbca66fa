/**
 * The live tail hub on its own: a viewer that does not take its events loses its own (bounded
 * queue, counted as dropped) and the publisher's call returns at once; closing the viewer's scope
 * releases it. Real frames from `Outbound.encode`.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Scope, Exit } from "effect"
import { MessageCreate } from "../../src/protocol/events/message.js"
import type { GuildId } from "../../src/protocol/Ids.js"
import * as Outbound from "../../src/server/core/Outbound.js"
import { emptyState } from "../../src/server/registry/Indexes.js"
import * as Tail from "../../src/server/inspector/Tail.js"
import { message, newId } from "../server/harness.js"

describe("inspector live tail hub", () => {
  it.effect("a viewer that does not read loses its own events beyond its queue, counted", () =>
    Effect.gen(function* () {
      let activity = 0
      const hub = Tail.make({
        maxViewers: 1,
        eventsPerSecond: 1000,
        queue: 2,
        now: () => 0,
        registryState: () => emptyState,
        onActivity: () => activity++
      })
      const [guild, channel] = [newId(), newId()]
      const frame = Either.getOrThrow(Outbound.encode(MessageCreate, message(guild, channel, "x"), 65536))
      const route = { scope: "channel", guildId: guild, channelId: channel } as never
      const scope = yield* Scope.make()
      const viewer = yield* Scope.extend(hub.open({ kind: "guild", guildId: guild as GuildId }), scope)
      expect(viewer).toBeDefined()
      expect(hub.viewers()).toBe(1)
      expect(
        yield* Scope.extend(hub.open({ kind: "guild", guildId: guild as GuildId }), scope)
      ).toBeUndefined()
      for (let i = 0; i < 5; i++) hub.offer(frame, route, 1, "local")
      const first = yield* viewer!.take
      const second = yield* viewer!.take
      expect([first.dropped, second.dropped]).toEqual([0, 0])
      hub.offer(frame, route, 1, "local")
      expect((yield* viewer!.take).dropped).toBe(3)
      expect(first).toMatchObject({ t: "message_create", valid: true, recipients: 1 })
      yield* Scope.close(scope, Exit.void)
      expect(hub.viewers()).toBe(0)
      // Activity: the first viewer opened, the last one closed.
      expect(activity).toBe(2)
    })
  )
})
