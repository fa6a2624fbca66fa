/**
 * registry/: who receives what on this node — the subscription service (this module) over its
 * indexes (`Indexes`, `MemberList`) — and where its interest in other nodes' events lies
 * (`Interest`). It knows the core's connections by their type only: no code from core/, nothing
 * from chat/ or cluster/.
 *
 * SubscriptionRegistry: who receives what. Persistent indexes in one `Ref` — channel key ->
 * connections, guild -> connections, user -> connections, connection -> its subscriptions — so
 * every change is a single `Ref.modify` and the indexes never disagree. Member lists are persistent
 * (`MemberList`: a change copies a chunk, not the list), and a fanout loops over a plain array
 * snapshot of one that later changes cannot disturb.
 */
import { Context, Effect, HashMap, Layer, Option, Ref } from "effect"
import type { ChannelId, GuildId, UserId } from "../../protocol/Ids.js"
import type { Connection } from "../core/Connection.js"
import {
  channelKey,
  emptyState,
  guildsOf,
  transitions,
  type DisconnectOutcome,
  type RegistryState,
  type RevokeOutcome,
  type SubscribeOutcome,
  type UnsubscribeOutcome
} from "./Indexes.js"
import { GatewayConfig } from "../Config.js"
import { guildTopic, TopicInterest, userTopic, type TopicInterestShape } from "./Interest.js"
import * as MemberList from "./MemberList.js"
import { GatewayMetrics } from "../Metrics.js"

const NONE: ReadonlyArray<Connection> = []

export interface SubscriptionRegistryShape {
  readonly register: (connection: Connection) => Effect.Effect<void>
  readonly subscribe: (
    connection: Connection,
    guildId: GuildId,
    channelId: ChannelId
  ) => Effect.Effect<SubscribeOutcome>
  readonly unsubscribe: (
    connection: Connection,
    guildId: GuildId,
    channelId: ChannelId
  ) => Effect.Effect<UnsubscribeOutcome>
  /** Removes every subscription the user's connections hold in the guild, in one update (revocation). */
  readonly revoke: (userId: UserId, guildId: GuildId) => Effect.Effect<RevokeOutcome>
  /** Removes the connection from every index in one update. */
  readonly unregister: (connection: Connection) => Effect.Effect<DisconnectOutcome>
  /** Index lookups (never scans): the recipients of a channel, guild or user broadcast. */
  readonly channelMembers: (
    guildId: GuildId,
    channelId: ChannelId
  ) => Effect.Effect<ReadonlyArray<Connection>>
  readonly guildMembers: (guildId: GuildId) => Effect.Effect<ReadonlyArray<Connection>>
  readonly userMembers: (userId: UserId) => Effect.Effect<ReadonlyArray<Connection>>
  readonly state: Effect.Effect<RegistryState>
}

export class SubscriptionRegistry extends Context.Tag("filament/SubscriptionRegistry")<
  SubscriptionRegistry,
  SubscriptionRegistryShape
>() {}

/**
 * Tells the bus (`TopicInterest`) where this node's interest begins and ends: a guild topic while any local connection
 * holds a channel of the guild, a user topic while the user has a local connection. Called with the
 * states before and after each update, inside that update, so the bus sees the changes in their order.
 */
const followInterest = (
  interest: TopicInterestShape,
  before: RegistryState,
  after: RegistryState,
  guildIds: Iterable<GuildId>,
  userId?: UserId
) => {
  if (before === after) return
  for (const guildId of guildIds) {
    const interested = HashMap.has(after.guilds, guildId)
    if (HashMap.has(before.guilds, guildId) !== interested)
      interest.setInterest(guildTopic(guildId), interested)
  }
  if (userId === undefined) return
  const interested = HashMap.has(after.users, userId)
  if (HashMap.has(before.users, userId) !== interested) interest.setInterest(userTopic(userId), interested)
}

export const make = Effect.gen(function* () {
  const metrics = yield* GatewayMetrics
  const { maxSubscriptionsPerConnection } = yield* GatewayConfig
  const interest = yield* TopicInterest
  const ref = yield* Ref.make(emptyState)
  /** One `Ref.modify` whose interest changes reach the bus in the same step. */
  const modify = <A>(
    transition: (state: RegistryState) => readonly [A, RegistryState],
    touched: (before: RegistryState, outcome: A) => { guilds: Iterable<GuildId>; user?: UserId }
  ) =>
    Ref.modify(ref, (before) => {
      const [outcome, after] = transition(before)
      if (before !== after) {
        const { guilds, user } = touched(before, outcome)
        followInterest(interest, before, after, guilds, user)
      }
      return [outcome, after]
    })
  const lookup = <K>(select: (state: RegistryState) => HashMap.HashMap<K, MemberList.MemberList>, key: K) =>
    Effect.map(Ref.get(ref), (state) => {
      const members = HashMap.get(select(state), key)
      return Option.isSome(members) ? MemberList.toArray(members.value) : NONE
    })
  const registry: SubscriptionRegistryShape = {
    register: (connection) =>
      Effect.zipRight(
        modify(
          (state) => [undefined, transitions.register(state, connection)] as const,
          () => ({ guilds: [], user: connection.userId })
        ),
        interest.awaitActive(userTopic(connection.userId))
      ),
    subscribe: (connection, guildId, channelId) =>
      Effect.tap(
        modify(
          (state) =>
            transitions.subscribe(state, connection, guildId, channelId, maxSubscriptionsPerConnection),
          () => ({ guilds: [guildId] })
        ),
        (outcome) => {
          if (outcome._tag !== "Subscribed") return Effect.void
          if (outcome.added) metrics.subscriptionsChanged(1)
          // The ack follows once other nodes' events for the guild reach this node.
          return interest.awaitActive(guildTopic(guildId))
        }
      ),
    unsubscribe: (connection, guildId, channelId) =>
      Effect.tap(
        modify(
          (state) => transitions.unsubscribe(state, connection, guildId, channelId),
          () => ({ guilds: [guildId] })
        ),
        (outcome) => {
          if (outcome.removed) metrics.subscriptionsChanged(-1)
        }
      ),
    unregister: (connection) =>
      Effect.map(
        modify(
          (state) => transitions.unregister(state, connection),
          (before) => ({
            guilds: Option.match(HashMap.get(before.connections, connection.id), {
              onNone: () => [],
              onSome: (entry) => guildsOf(entry.channels)
            }),
            user: connection.userId
          })
        ),
        ({ channels, ...outcome }) => {
          metrics.subscriptionsChanged(-channels)
          return outcome
        }
      ),
    revoke: (userId, guildId) =>
      Effect.tap(
        modify(
          (state) => transitions.revoke(state, userId, guildId),
          () => ({ guilds: [guildId] })
        ),
        (outcome) => metrics.subscriptionsChanged(-outcome.channels)
      ),
    channelMembers: (guildId, channelId) => lookup((state) => state.channels, channelKey(guildId, channelId)),
    guildMembers: (guildId) => lookup((state) => state.guilds, guildId),
    userMembers: (userId) => lookup((state) => state.users, userId),
    state: Ref.get(ref)
  }
  return registry
})

/** Needs the node's `TopicInterest`: the bus layer's (`core/Bus.ts`), or `Interest.layerNone` for one node. */
export const layer: Layer.Layer<SubscriptionRegistry, never, GatewayMetrics | GatewayConfig | TopicInterest> =
  Layer.effect(SubscriptionRegistry, make)
