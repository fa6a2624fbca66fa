/**
 * Authorization as a property, over real sockets: random sequences of subscribes (allowed and
 * forbidden by the token's claims), unsubscribes, revocations (`workspace_member_remove` /
 * `workspace_member_ban`) and publishes of every scope. A model says which connection is currently
 * in which channel; every connection must receive exactly the events the model routes to it —
 * none of a channel or guild it is not in, every one it should, once, in publish order.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import fc from "fast-check"
import { MessageDelete } from "../../src/protocol/events/message.js"
import { ProfileUpdate } from "../../src/protocol/events/profile.js"
import {
  ChannelCreate,
  WorkspaceMemberBan,
  WorkspaceMemberRemove
} from "../../src/protocol/events/workspace.js"
import type { ChannelId, GuildId, MessageId, UserId } from "../../src/protocol/Ids.js"
import { newId, startGateway, type Frame, type Harness, type TestClient } from "../server/harness.js"

const GUILDS = 2
const CHANNELS = 3
/** Per user: connections, and the channels (by index) the token grants in each guild. */
const USERS = [
  { connections: 2, grants: [[0, 1], "*"] },
  { connections: 1, grants: [[1, 2], []] },
  { connections: 2, grants: ["*", [0]] }
] as const

type Op =
  | {
      readonly _tag: "subscribe" | "unsubscribe"
      readonly conn: number
      readonly guild: number
      readonly channel: number
    }
  | { readonly _tag: "channel_event"; readonly guild: number; readonly channel: number }
  | { readonly _tag: "guild_event"; readonly guild: number }
  | { readonly _tag: "user_event"; readonly users: ReadonlyArray<number> }
  | { readonly _tag: "revoke"; readonly user: number; readonly guild: number; readonly ban: boolean }

const CONNECTIONS = USERS.flatMap((user, index) => Array.from({ length: user.connections }, () => index))

const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      _tag: fc.constantFrom("subscribe" as const, "unsubscribe" as const),
      conn: fc.nat(CONNECTIONS.length - 1),
      guild: fc.nat(GUILDS - 1),
      channel: fc.nat(CHANNELS - 1)
    })
  },
  {
    weight: 3,
    arbitrary: fc.record({
      _tag: fc.constant("channel_event" as const),
      guild: fc.nat(GUILDS - 1),
      channel: fc.nat(CHANNELS - 1)
    })
  },
  {
    weight: 2,
    arbitrary: fc.record({ _tag: fc.constant("guild_event" as const), guild: fc.nat(GUILDS - 1) })
  },
  {
    weight: 1,
    arbitrary: fc.record({
      _tag: fc.constant("user_event" as const),
      users: fc.uniqueArray(fc.nat(USERS.length - 1), { minLength: 1, maxLength: USERS.length })
    })
  },
  {
    weight: 1,
    arbitrary: fc.record({
      _tag: fc.constant("revoke" as const),
      user: fc.nat(USERS.length - 1),
      guild: fc.nat(GUILDS - 1),
      ban: fc.boolean()
    })
  }
)

/** The event's identity on the wire (every published event carries a fresh id or number). */
const markerOf = (frame: Frame): string | undefined => {
  const d = frame.d
  switch (frame.t) {
    case "message_delete":
      return `message_delete:${String(d["message_id"])}`
    case "channel_create":
      return `channel_create:${(d["channel"] as { channel_id: string }).channel_id}`
    case "profile_update":
      return `profile_update:${String(d["updated_at_unix"])}`
    case "workspace_member_remove":
    case "workspace_member_ban":
      return `${frame.t}:${String(d["guild_id"])}:${String(d["user_id"])}:${String(d[frame.t === "workspace_member_ban" ? "banned_at_unix" : "removed_at_unix"])}`
    default:
      return undefined
  }
}

/** Runs one sequence against fresh users, guilds and channels on a shared gateway. */
const runSequence = (harness: Harness, ops: ReadonlyArray<Op>) =>
  Effect.gen(function* () {
    const guilds = Array.from({ length: GUILDS }, () => newId())
    const channels = guilds.map(() => Array.from({ length: CHANNELS }, () => newId()))
    const userIds = USERS.map(() => newId())
    const grants = USERS.map((user) => {
      const claim: Record<string, "*" | ReadonlyArray<string>> = {}
      user.grants.forEach((grant, g) => {
        if (grant === "*") claim[guilds[g]!] = "*"
        else if (grant.length > 0) claim[guilds[g]!] = grant.map((c) => channels[g]![c]!)
      })
      return claim
    })
    const allowed = (user: number, g: number, c: number) => {
      const grant = USERS[user]!.grants[g]!
      return grant === "*" || (grant as ReadonlyArray<number>).includes(c)
    }
    const clients: Array<TestClient> = []
    for (const user of CONNECTIONS) clients.push(yield* harness.connectReady(userIds[user]!, grants[user]))

    // The model: each connection's channels as "g:c".
    const subscribed = CONNECTIONS.map(() => new Set<string>())
    // A connection revoked from a guild may not subscribe there again (it must reconnect).
    const revokedFrom = CONNECTIONS.map(() => new Set<number>())
    const expected = CONNECTIONS.map((): Array<string> => [])
    const received = CONNECTIONS.map((): Array<string> => [])

    /** Reads a connection's frames, recording every event marker, up to the frame `until` accepts. */
    const readUntil = (conn: number, label: string, until: (frame: Frame) => boolean) =>
      Effect.gen(function* () {
        for (;;) {
          const frame = yield* clients[conn]!.next(label)
          if (until(frame)) return
          const marker = markerOf(frame)
          if (marker !== undefined) received[conn]!.push(marker)
        }
      })
    let stamp = 1_700_000_000

    /** A command has taken effect once the ack of a probe sent after it arrives (commands run in order). */
    const settle = (conn: number) => {
      const probe = newId()
      clients[conn]!.send({ v: 1, t: "unsubscribe", d: { guild_id: guilds[0], channel_id: probe } })
      return readUntil(
        conn,
        "probe ack",
        (frame) => frame.t === "unsubscribed" && frame.d["channel_id"] === probe
      )
    }

    for (const step of ops) {
      switch (step._tag) {
        case "subscribe":
        case "unsubscribe": {
          const client = clients[step.conn]!
          client.send({
            v: 1,
            t: step._tag,
            d: { guild_id: guilds[step.guild], channel_id: channels[step.guild]![step.channel] }
          })
          yield* settle(step.conn)
          const key = `${step.guild}:${step.channel}`
          if (step._tag === "unsubscribe") subscribed[step.conn]!.delete(key)
          else if (
            allowed(CONNECTIONS[step.conn]!, step.guild, step.channel) &&
            !revokedFrom[step.conn]!.has(step.guild)
          )
            subscribed[step.conn]!.add(key)
          break
        }
        case "channel_event": {
          const messageId = newId()
          yield* harness.gateway.publish(MessageDelete, {
            guild_id: guilds[step.guild] as GuildId,
            channel_id: channels[step.guild]![step.channel] as ChannelId,
            message_id: messageId as MessageId,
            deleted_at_unix: stamp++
          })
          subscribed.forEach((keys, conn) => {
            if (keys.has(`${step.guild}:${step.channel}`)) expected[conn]!.push(`message_delete:${messageId}`)
          })
          break
        }
        case "guild_event": {
          const channelId = newId()
          yield* harness.gateway.publish(ChannelCreate, {
            guild_id: guilds[step.guild] as GuildId,
            channel: { channel_id: channelId as ChannelId, name: "new", kind: "text" }
          })
          subscribed.forEach((keys, conn) => {
            if ([...keys].some((key) => key.startsWith(`${step.guild}:`)))
              expected[conn]!.push(`channel_create:${channelId}`)
          })
          break
        }
        case "user_event": {
          const at = stamp++
          yield* harness.gateway.publishToUsers(
            ProfileUpdate,
            {
              user_id: userIds[step.users[0]!] as UserId,
              updated_fields: { username: "someone" },
              updated_at_unix: at
            },
            step.users.map((user) => userIds[user] as UserId)
          )
          CONNECTIONS.forEach((user, conn) => {
            if (step.users.includes(user)) expected[conn]!.push(`profile_update:${at}`)
          })
          break
        }
        case "revoke": {
          const at = stamp++
          const guildId = guilds[step.guild] as GuildId
          const userId = userIds[step.user] as UserId
          // The event itself still reaches the guild (the revoked user's connections included).
          const inGuild = (conn: number) =>
            [...subscribed[conn]!].some((key) => key.startsWith(`${step.guild}:`))
          if (step.ban) {
            yield* harness.gateway.publish(WorkspaceMemberBan, {
              guild_id: guildId,
              user_id: userId,
              banned_at_unix: at
            })
            subscribed.forEach((_, conn) => {
              if (inGuild(conn)) expected[conn]!.push(`workspace_member_ban:${guildId}:${userId}:${at}`)
            })
          } else {
            yield* harness.gateway.publish(WorkspaceMemberRemove, {
              guild_id: guildId,
              user_id: userId,
              reason: "kick",
              removed_at_unix: at
            })
            subscribed.forEach((_, conn) => {
              if (inGuild(conn)) expected[conn]!.push(`workspace_member_remove:${guildId}:${userId}:${at}`)
            })
          }
          CONNECTIONS.forEach((user, conn) => {
            if (user !== step.user) return
            revokedFrom[conn]!.add(step.guild)
            for (const key of [...subscribed[conn]!])
              if (key.startsWith(`${step.guild}:`)) subscribed[conn]!.delete(key)
          })
          break
        }
      }
    }

    // A final event to every user closes each stream; then compare everything each one received.
    const end = stamp++
    yield* harness.gateway.publishToUsers(
      ProfileUpdate,
      { user_id: userIds[0] as UserId, updated_fields: { username: "end" }, updated_at_unix: end },
      userIds as Array<UserId>
    )
    for (const [conn, client] of clients.entries()) {
      yield* readUntil(
        conn,
        `connection ${conn}: end marker`,
        (frame) => markerOf(frame) === `profile_update:${end}`
      )
      expect(
        received[conn],
        `connection ${conn} (user ${CONNECTIONS[conn]}) after ${JSON.stringify(ops)}`
      ).toEqual(expected[conn])
      expect(client.closed).toBeUndefined()
      client.socket.terminate()
    }
  })

describe("authorization property", () => {
  it.scoped("no event outside the current grants; every due event exactly once, in publish order", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway({ ingressEventsPerWindow: 1_000_000 }, undefined, "chat")
      const sequences = fc.sample(fc.array(op, { minLength: 5, maxLength: 40 }), { numRuns: 60 })
      for (const ops of sequences) yield* Effect.scoped(runSequence(harness, ops))
    })
  )
})
