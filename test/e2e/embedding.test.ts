/** A host app replaces default services with its own layers; the gateway uses them. */
import { describe, expect, it } from "@effect/vitest"
import { Clock, Deferred, Effect, Layer } from "effect"
import type { MessageId } from "../../src/protocol/Ids.js"
import { AccessPolicy, MessageHandler } from "../../src/server/core/Seams.js"
import { newId, startGateway } from "../server/harness.js"

const OpenPolicy = Layer.succeed(AccessPolicy, {
  canSubscribe: () => Effect.succeed(true),
  canPost: (_principal, _guild, channelId) => Effect.succeed(!channelId.startsWith("0000"))
})

const ShoutingMessages = Layer.succeed(MessageHandler, {
  create: (principal, command) =>
    Effect.map(Clock.currentTimeMillis, (now) => ({
      message_id: newId() as MessageId,
      guild_id: command.guild_id,
      channel_id: command.channel_id,
      author_id: principal.userId,
      content: command.content.toUpperCase(),
      markdown_tokens: [{ type: "text" as const, text: command.content.toUpperCase() }],
      attachments: [],
      reactions: [],
      created_at_unix: Math.floor(now / 1000)
    }))
})

describe("embedding", () => {
  it.scoped("a host AccessPolicy and MessageHandler replace the defaults", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway({}, Layer.merge(OpenPolicy, ShoutingMessages))
      const [guild, channel] = [newId(), newId()]
      // No guilds claim at all: only the host policy can allow this.
      const client = yield* harness.connectReady(newId())
      yield* client.subscribe(guild, channel)
      client.send({
        v: 1,
        t: "message_create",
        d: { guild_id: guild, channel_id: channel, content: "hello" }
      })
      expect((yield* client.nextOfType("message_create")).d["content"]).toBe("HELLO")
      // The host policy refuses posting here: 4011 even though the handler would accept.
      client.send({
        v: 1,
        t: "message_create",
        d: { guild_id: guild, channel_id: "0000" + channel.slice(4), content: "x" }
      })
      expect(yield* client.waitClosed()).toEqual({ code: 4011, reason: "message_rejected" })
    })
  )
})

describe("command isolation", () => {
  it.scoped("a slow AccessPolicy call delays only its own connection, whose commands stay in order", () =>
    Effect.gen(function* () {
      const release = yield* Deferred.make<void>()
      const [slowUser, guild, first, second] = [newId(), newId(), newId(), newId()]
      const SlowForOneUser = Layer.succeed(AccessPolicy, {
        canSubscribe: (principal, _guild, channelId) =>
          principal.userId === slowUser && channelId === first
            ? Effect.as(Deferred.await(release), true)
            : Effect.succeed(true),
        canPost: () => Effect.succeed(true)
      })
      const harness = yield* startGateway({}, SlowForOneUser)
      const slow = yield* harness.connectReady(slowUser)
      const other = yield* harness.connectReady(newId())
      slow.send({ v: 1, t: "subscribe", d: { guild_id: guild, channel_id: first } })
      slow.send({ v: 1, t: "subscribe", d: { guild_id: guild, channel_id: second } })
      // The other connection is served while the slow one waits on its policy.
      expect((yield* other.subscribe(guild, first)).d["channel_id"]).toBe(first)
      expect(slow.frames.map((frame) => frame.t)).toEqual(["ready"])
      yield* Deferred.succeed(release, undefined)
      expect((yield* slow.nextOfType("subscribed")).d["channel_id"]).toBe(first)
      expect((yield* slow.nextOfType("subscribed")).d["channel_id"]).toBe(second)
    })
  )
})

describe("two gateways in one process", () => {
  it.scoped("each counts its own metrics", () =>
    Effect.gen(function* () {
      const [a, b] = [yield* startGateway(), yield* startGateway()]
      yield* a.connectReady(newId())
      yield* a.connectReady(newId())
      yield* b.connectReady(newId())
      const refused = yield* Effect.either(a.connect("not-a-token"))
      expect(refused).toMatchObject({ _tag: "Left", left: { status: 401 } })
      expect(yield* a.metric("filament_gateway_connections")).toBe(2)
      expect(yield* b.metric("filament_gateway_connections")).toBe(1)
      expect(yield* a.metric("filament_auth_failures_total", { reason: "unauthorized" })).toBe(1)
      expect(yield* b.metric("filament_auth_failures_total", { reason: "unauthorized" })).toBe(0)
    })
  )
})
