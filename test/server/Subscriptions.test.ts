/**
 * SubscriptionRegistry: after any sequence of connect / subscribe / unsubscribe / disconnect the
 * channel, guild and user indexes agree with a plain reference model (and with each other), the
 * presence flags in the outcomes are right, once every connection is gone every index is empty, and
 * every earlier state (what a fanout iterates) still lists exactly the members it had.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, HashMap, Layer, Option } from "effect"
import fc from "fast-check"
import type { ChannelId, GuildId, UserId } from "../../src/protocol/Ids.js"
import * as Config from "../../src/server/Config.js"
import type { Connection } from "../../src/server/core/Connection.js"
import * as MemberList from "../../src/server/registry/MemberList.js"
import * as Metrics from "../../src/server/Metrics.js"
import * as Interest from "../../src/server/registry/Interest.js"
import * as Subscriptions from "../../src/server/registry/Subscriptions.js"
import * as Indexes from "../../src/server/registry/Indexes.js"
import { channelKey, type RegistryState } from "../../src/server/registry/Indexes.js"

const USERS = ["U0", "U1"].map((id) => id as UserId)
const GUILDS = ["G0", "G1"].map((id) => id as GuildId)
const CHANNELS = ["C0", "C1"].map((id) => id as ChannelId)
const CONNECTIONS = 4
const MAX_SUBSCRIPTIONS = 3

/** The registry only uses a connection's identity, id and user. */
const connections: ReadonlyArray<Connection> = Array.from(
  { length: CONNECTIONS },
  (_, id) => ({ id, userId: USERS[id % USERS.length]! }) as unknown as Connection
)

type Op =
  | { readonly op: "connect" | "disconnect"; readonly conn: number }
  | { readonly op: "revoke"; readonly user: number; readonly guild: number }
  | {
      readonly op: "subscribe" | "unsubscribe"
      readonly conn: number
      readonly guild: number
      readonly channel: number
    }

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    op: fc.constant("revoke" as const),
    user: fc.nat(USERS.length - 1),
    guild: fc.nat(GUILDS.length - 1)
  }),
  fc.record({
    op: fc.constantFrom("connect" as const, "disconnect" as const),
    conn: fc.nat(CONNECTIONS - 1)
  }),
  fc.record({
    op: fc.constantFrom("subscribe" as const, "unsubscribe" as const),
    conn: fc.nat(CONNECTIONS - 1),
    guild: fc.nat(GUILDS.length - 1),
    channel: fc.nat(CHANNELS.length - 1)
  })
)

/** Reference model: connected connections and their channel keys. */
type Model = Map<number, Set<string>>

const sorted = (members: ReadonlyArray<Connection>) => members.map((member) => member.id).sort()

/** The members a fanout over the list visits. */
const visited = (members: MemberList.MemberList | undefined) =>
  members === undefined ? [] : MemberList.toArray(members)

const userHolds = (model: Model, user: UserId, guild: GuildId, except?: number) =>
  [...model].some(
    ([id, keys]) =>
      id !== except &&
      connections[id]!.userId === user &&
      [...keys].some((key) => key.startsWith(`${guild}:`))
  )

const expectAgrees = (state: RegistryState, model: Model) => {
  expect(sorted([...HashMap.values(state.connections)].map((entry) => entry.connection))).toEqual(
    [...model.keys()].sort()
  )
  for (const [id, keys] of model) {
    const entry = Option.getOrThrow(HashMap.get(state.connections, id))
    expect([...entry.channels].sort()).toEqual([...keys].sort())
    const held = GUILDS.filter((guild) => [...keys].some((key) => key.startsWith(`${guild}:`)))
    expect([...Indexes.guildsOf(entry.channels)].sort()).toEqual(held.sort())
    for (const guild of GUILDS) expect(Indexes.holdsGuild(entry.channels, guild)).toBe(held.includes(guild))
  }
  for (const guild of GUILDS) {
    const holders = [...model].filter(([, keys]) => [...keys].some((key) => key.startsWith(`${guild}:`)))
    expect(sorted(visited(Option.getOrUndefined(HashMap.get(state.guilds, guild))))).toEqual(
      holders.map(([id]) => id).sort()
    )
    for (const channel of CHANNELS) {
      const key = channelKey(guild, channel)
      const members = [...model].filter(([, keys]) => keys.has(key)).map(([id]) => id)
      expect(sorted(visited(Option.getOrUndefined(HashMap.get(state.channels, key))))).toEqual(members.sort())
    }
  }
  for (const user of USERS) {
    const members = [...model.keys()].filter((id) => connections[id]!.userId === user)
    expect(sorted(visited(Option.getOrUndefined(HashMap.get(state.users, user))))).toEqual(members.sort())
  }
  // Pruned: no index keeps an empty member list.
  for (const index of [state.channels, state.guilds, state.users] as const) {
    for (const members of HashMap.values(index as HashMap.HashMap<unknown, MemberList.MemberList>)) {
      expect(members.size).toBeGreaterThan(0)
    }
  }
}

const TestLayer = Subscriptions.layer.pipe(
  Layer.provide(Interest.layerNone),
  Layer.provide(Metrics.layer),
  Layer.provide(Config.layerWith({ maxSubscriptionsPerConnection: MAX_SUBSCRIPTIONS }))
)

describe("SubscriptionRegistry", () => {
  it.effect("indexes agree with the model under random operation sequences; empty after all disconnect", () =>
    Effect.promise(() =>
      fc.assert(
        fc.asyncProperty(fc.array(opArb, { minLength: 20, maxLength: 80 }), (ops) =>
          Effect.runPromise(
            Effect.gen(function* () {
              const registry = yield* Subscriptions.SubscriptionRegistry
              const model: Model = new Map()
              /** Per connected connection: guilds it was revoked from (it may not subscribe there). */
              const revoked = new Map<number, Set<GuildId>>()
              /** Every state with the model it had: later changes must not disturb any of them. */
              const snapshots: Array<[RegistryState, Model]> = []
              const snapshot = (state: RegistryState) => {
                expectAgrees(state, model)
                snapshots.push([state, new Map([...model].map(([id, keys]) => [id, new Set(keys)]))])
              }
              for (const step of ops) {
                if (step.op === "revoke") {
                  const [user, guild] = [USERS[step.user]!, GUILDS[step.guild]!]
                  const holders = [...model].filter(
                    ([id, keys]) =>
                      connections[id]!.userId === user && [...keys].some((key) => key.startsWith(`${guild}:`))
                  )
                  const outcome = yield* registry.revoke(user, guild)
                  expect(outcome.connections.map((c) => c.id).sort()).toEqual(
                    holders.map(([id]) => id).sort()
                  )
                  expect(outcome.userLeftGuild).toBe(holders.length > 0)
                  for (const [, keys] of holders) {
                    for (const key of [...keys]) if (key.startsWith(`${guild}:`)) keys.delete(key)
                  }
                  for (const id of model.keys()) {
                    if (connections[id]!.userId === user) revoked.get(id)!.add(guild)
                  }
                  snapshot(yield* registry.state)
                  continue
                }
                const connection = connections[step.conn]!
                switch (step.op) {
                  case "connect":
                    yield* registry.register(connection)
                    if (!model.has(step.conn)) {
                      model.set(step.conn, new Set())
                      revoked.set(step.conn, new Set())
                    }
                    break
                  case "disconnect": {
                    const held = model.get(step.conn)
                    const expectedLeft = held
                      ? GUILDS.filter(
                          (guild) =>
                            [...held].some((key) => key.startsWith(`${guild}:`)) &&
                            !userHolds(model, connection.userId, guild, step.conn)
                        )
                      : []
                    const outcome = yield* registry.unregister(connection)
                    expect(outcome.removed).toBe(held !== undefined)
                    expect([...outcome.userLeftGuilds].sort()).toEqual(expectedLeft)
                    model.delete(step.conn)
                    revoked.delete(step.conn)
                    break
                  }
                  case "subscribe": {
                    const [guild, channel] = [GUILDS[step.guild]!, CHANNELS[step.channel]!]
                    const held = model.get(step.conn)
                    const wasOnline = userHolds(model, connection.userId, guild)
                    const outcome = yield* registry.subscribe(connection, guild, channel)
                    if (held === undefined) expect(outcome._tag).toBe("NotConnected")
                    else if (revoked.get(step.conn)!.has(guild)) expect(outcome._tag).toBe("Revoked")
                    else if (held.has(channelKey(guild, channel))) {
                      expect(outcome).toMatchObject({ _tag: "Subscribed", added: false })
                    } else if (held.size >= MAX_SUBSCRIPTIONS) expect(outcome._tag).toBe("SubscriptionLimit")
                    else {
                      expect(outcome).toMatchObject({
                        _tag: "Subscribed",
                        added: true,
                        userJoinedGuild: !wasOnline
                      })
                      held.add(channelKey(guild, channel))
                    }
                    break
                  }
                  case "unsubscribe": {
                    const [guild, channel] = [GUILDS[step.guild]!, CHANNELS[step.channel]!]
                    const held = model.get(step.conn)
                    const removed = held?.delete(channelKey(guild, channel)) ?? false
                    const outcome = yield* registry.unsubscribe(connection, guild, channel)
                    expect(outcome.removed).toBe(removed)
                    if (removed)
                      expect(outcome.userLeftGuild).toBe(!userHolds(model, connection.userId, guild))
                    break
                  }
                }
                snapshot(yield* registry.state)
              }
              for (const connection of connections) yield* registry.unregister(connection)
              for (const [state, then] of snapshots) expectAgrees(state, then)
              const state = yield* registry.state
              expect(HashMap.size(state.connections)).toBe(0)
              expect(HashMap.size(state.channels)).toBe(0)
              expect(HashMap.size(state.guilds)).toBe(0)
              expect(HashMap.size(state.users)).toBe(0)
            }).pipe(Effect.provide(TestLayer))
          )
        ),
        { numRuns: 200 }
      )
    )
  )

  it.effect(
    "guild lookups are index reads: unrelated subscriptions do not change a guild's member list",
    () =>
      Effect.gen(function* () {
        const registry = yield* Subscriptions.SubscriptionRegistry
        const [a, b] = [connections[0]!, connections[1]!]
        yield* registry.register(a)
        yield* registry.register(b)
        yield* registry.subscribe(a, GUILDS[0]!, CHANNELS[0]!)
        yield* registry.subscribe(a, GUILDS[0]!, CHANNELS[1]!)
        const members = yield* registry.guildMembers(GUILDS[0]!)
        yield* registry.subscribe(b, GUILDS[1]!, CHANNELS[0]!)
        expect(yield* registry.guildMembers(GUILDS[0]!)).toBe(members)
        expect(sorted(members)).toEqual([a.id])
      }).pipe(Effect.provide(TestLayer))
  )

  it("a member list changed from two states keeps each state's members", () => {
    const [a, b, c, d] = connections as [Connection, Connection, Connection, Connection]
    const [guild, channel] = [GUILDS[0]!, CHANNELS[0]!]
    const subscribe = (state: RegistryState, connection: Connection) =>
      Indexes.transitions.subscribe(
        Indexes.transitions.register(state, connection),
        connection,
        guild,
        channel,
        MAX_SUBSCRIPTIONS
      )[1]
    const members = (state: RegistryState) =>
      sorted(visited(Option.getOrUndefined(HashMap.get(state.channels, channelKey(guild, channel)))))
    const base = subscribe(Indexes.emptyState, a)
    const left = subscribe(base, b)
    const right = subscribe(base, c)
    const leftAgain = subscribe(left, d)
    const [, leftWithoutA] = Indexes.transitions.unsubscribe(leftAgain, a, guild, channel)
    expect(members(base)).toEqual([a.id])
    expect(members(left)).toEqual([a.id, b.id])
    expect(members(right)).toEqual([a.id, c.id])
    expect(members(leftAgain)).toEqual([a.id, b.id, d.id])
    expect(members(leftWithoutA)).toEqual([b.id, d.id])
    expect(members(subscribe(leftWithoutA, a))).toEqual([a.id, b.id, d.id])
    expect(members(leftAgain)).toEqual([a.id, b.id, d.id])
  })
})
