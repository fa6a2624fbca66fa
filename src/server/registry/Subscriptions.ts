/**
 * registry/: who receives what on this node — the subscription indexes (this module, with
 * `MemberList`) — and where its interest in other nodes' events lies (`Interest`). It knows the
 * core's connections by type only and imports nothing from core/, chat/ or cluster/.
 *
 * SubscriptionRegistry: who receives what. Persistent indexes in one `Ref` — channel key ->
 * connections, guild -> connections, user -> connections, connection -> its subscriptions (with a
 * per-guild channel count) — so every change is a single `Ref.modify` and the indexes never
 * disagree. Member lists are persistent (`MemberList`: a change copies a chunk, not the list), and a
 * fanout loops over a plain array snapshot of one that later changes cannot disturb.
 */
import { Context, Effect, HashMap, Layer, Option, Ref } from "effect"
import type { ChannelId, GuildId, UserId } from "../../protocol/Ids.js"
import type { Connection, ConnectionId } from "../core/Connection.js"
import { GatewayConfig } from "../Config.js"
import { guildTopic, TopicInterest, userTopic, type TopicInterestShape } from "./Interest.js"
import * as MemberList from "./MemberList.js"
import { GatewayMetrics } from "../Metrics.js"

export type ChannelKey = `${string}:${string}`

export const channelKey = (guildId: GuildId, channelId: ChannelId): ChannelKey => `${guildId}:${channelId}`

export interface ConnectionEntry {
  readonly connection: Connection
  /** Copied on write, never mutated: a connection holds few channels and changes them rarely. */
  readonly channels: ReadonlySet<ChannelKey>
  /** Guild -> number of this connection's channels in it (an entry exists iff the count is > 0). */
  readonly guilds: ReadonlyMap<GuildId, number>
  /** Guilds this connection was revoked from: it may not subscribe there again (reconnect instead). */
  readonly revoked: ReadonlySet<GuildId>
}

export interface RegistryState {
  readonly connections: HashMap.HashMap<ConnectionId, ConnectionEntry>
  readonly channels: HashMap.HashMap<ChannelKey, MemberList.MemberList>
  readonly guilds: HashMap.HashMap<GuildId, MemberList.MemberList>
  readonly users: HashMap.HashMap<UserId, MemberList.MemberList>
}

export const emptyState: RegistryState = {
  connections: HashMap.empty(),
  channels: HashMap.empty(),
  guilds: HashMap.empty(),
  users: HashMap.empty()
}

export type SubscribeOutcome =
  | {
      readonly _tag: "Subscribed"
      /** False when the connection already held this channel (idempotent re-subscribe). */
      readonly added: boolean
      /** This connection had no channel of the guild before. */
      readonly connectionJoinedGuild: boolean
      /** No connection of the user had a channel of the guild before (presence: online). */
      readonly userJoinedGuild: boolean
    }
  | { readonly _tag: "SubscriptionLimit" }
  /** The connection's user was removed from the guild while it was open (revocation). */
  | { readonly _tag: "Revoked" }
  | { readonly _tag: "NotConnected" }

export interface UnsubscribeOutcome {
  readonly removed: boolean
  readonly connectionLeftGuild: boolean
  /** The user's last channel in the guild went (presence: offline). */
  readonly userLeftGuild: boolean
}

export interface RevokeOutcome {
  /** The user's connections that lost subscriptions. */
  readonly connections: ReadonlyArray<Connection>
  /** The user held the guild before (presence: offline). */
  readonly userLeftGuild: boolean
  /** Channel subscriptions removed. */
  readonly channels: number
}

export interface DisconnectOutcome {
  readonly removed: boolean
  /** Guilds where the user now holds no subscription on any connection (presence: offline). */
  readonly userLeftGuilds: ReadonlyArray<GuildId>
}

const NO_CHANNELS: ReadonlySet<ChannelKey> = new Set()
const NO_GUILDS: ReadonlyMap<GuildId, number> = new Map()
const NO_REVOKED: ReadonlySet<GuildId> = new Set()

const setWithout = <K>(set: ReadonlySet<K>, key: K): ReadonlySet<K> => {
  const copy = new Set(set)
  copy.delete(key)
  return copy
}

const mapWithout = <K, V>(map: ReadonlyMap<K, V>, key: K): ReadonlyMap<K, V> => {
  const copy = new Map(map)
  copy.delete(key)
  return copy
}

const removeMember = <K>(
  index: HashMap.HashMap<K, MemberList.MemberList>,
  key: K,
  connection: Connection
): HashMap.HashMap<K, MemberList.MemberList> => {
  const members = HashMap.get(index, key)
  if (Option.isNone(members)) return index
  const rest = MemberList.remove(members.value, connection)
  if (rest === members.value) return index
  return rest.size === 0 ? HashMap.remove(index, key) : HashMap.set(index, key, rest)
}

const addMember = <K>(
  index: HashMap.HashMap<K, MemberList.MemberList>,
  key: K,
  connection: Connection
): HashMap.HashMap<K, MemberList.MemberList> =>
  HashMap.set(
    index,
    key,
    MemberList.add(
      Option.getOrElse(HashMap.get(index, key), () => MemberList.empty),
      connection
    )
  )

/** Whether a connection of `userId` other than `except` holds a channel of `guildId`. */
const userHoldsGuild = (
  state: RegistryState,
  userId: UserId,
  guildId: GuildId,
  except: Connection
): boolean => {
  const members = Option.getOrElse(HashMap.get(state.users, userId), () => MemberList.empty)
  return MemberList.toArray(members).some((member) => {
    if (member === except) return false
    const entry = HashMap.get(state.connections, member.id)
    return Option.isSome(entry) && entry.value.guilds.has(guildId)
  })
}

/**
 * A connection's first subscription, to `key`: the `{key}` set and `{guild: 1}` map of a member that
 * holds exactly that channel, if one does. They are never mutated (copy on write), so thousands of
 * connections on one channel share them instead of holding a copy each.
 */
const soleSubscriptionOfMember = (state: RegistryState, key: ChannelKey): ConnectionEntry | undefined => {
  const members = HashMap.get(state.channels, key)
  if (Option.isNone(members)) return undefined
  const member = MemberList.last(members.value)
  const entry = member === undefined ? Option.none() : HashMap.get(state.connections, member.id)
  return Option.isSome(entry) && entry.value.channels.size === 1 && entry.value.guilds.size === 1
    ? entry.value
    : undefined
}

/** Pure state transitions; the service applies each with one `Ref.modify`. */
export const transitions = {
  register: (state: RegistryState, connection: Connection): RegistryState =>
    HashMap.has(state.connections, connection.id)
      ? state
      : {
          ...state,
          connections: HashMap.set(state.connections, connection.id, {
            connection,
            channels: NO_CHANNELS,
            guilds: NO_GUILDS,
            revoked: NO_REVOKED
          }),
          users: addMember(state.users, connection.userId, connection)
        },

  subscribe: (
    state: RegistryState,
    connection: Connection,
    guildId: GuildId,
    channelId: ChannelId,
    maxSubscriptions: number
  ): [SubscribeOutcome, RegistryState] => {
    const entry = HashMap.get(state.connections, connection.id)
    if (Option.isNone(entry)) return [{ _tag: "NotConnected" }, state]
    if (entry.value.revoked.has(guildId)) return [{ _tag: "Revoked" }, state]
    const key = channelKey(guildId, channelId)
    const heldInGuild = entry.value.guilds.get(guildId) ?? 0
    if (entry.value.channels.has(key)) {
      return [
        { _tag: "Subscribed", added: false, connectionJoinedGuild: false, userJoinedGuild: false },
        state
      ]
    }
    if (entry.value.channels.size >= maxSubscriptions) return [{ _tag: "SubscriptionLimit" }, state]
    const connectionJoinedGuild = heldInGuild === 0
    const userJoinedGuild =
      connectionJoinedGuild && !userHoldsGuild(state, connection.userId, guildId, connection)
    const shared = entry.value.channels.size === 0 ? soleSubscriptionOfMember(state, key) : undefined
    return [
      { _tag: "Subscribed", added: true, connectionJoinedGuild, userJoinedGuild },
      {
        ...state,
        connections: HashMap.set(state.connections, connection.id, {
          ...entry.value,
          channels: shared?.channels ?? new Set(entry.value.channels).add(key),
          guilds: shared?.guilds ?? new Map(entry.value.guilds).set(guildId, heldInGuild + 1)
        }),
        channels: addMember(state.channels, key, connection),
        guilds: connectionJoinedGuild ? addMember(state.guilds, guildId, connection) : state.guilds
      }
    ]
  },

  unsubscribe: (
    state: RegistryState,
    connection: Connection,
    guildId: GuildId,
    channelId: ChannelId
  ): [UnsubscribeOutcome, RegistryState] => {
    const entry = HashMap.get(state.connections, connection.id)
    const key = channelKey(guildId, channelId)
    if (Option.isNone(entry) || !entry.value.channels.has(key)) {
      return [{ removed: false, connectionLeftGuild: false, userLeftGuild: false }, state]
    }
    const heldInGuild = entry.value.guilds.get(guildId) ?? 1
    const connectionLeftGuild = heldInGuild <= 1
    const userLeftGuild =
      connectionLeftGuild && !userHoldsGuild(state, connection.userId, guildId, connection)
    return [
      { removed: true, connectionLeftGuild, userLeftGuild },
      {
        ...state,
        connections: HashMap.set(state.connections, connection.id, {
          ...entry.value,
          channels: setWithout(entry.value.channels, key),
          guilds: connectionLeftGuild
            ? mapWithout(entry.value.guilds, guildId)
            : new Map(entry.value.guilds).set(guildId, heldInGuild - 1)
        }),
        channels: removeMember(state.channels, key, connection),
        guilds: connectionLeftGuild ? removeMember(state.guilds, guildId, connection) : state.guilds
      }
    ]
  },

  unregister: (
    state: RegistryState,
    connection: Connection
  ): [DisconnectOutcome & { channels: number }, RegistryState] => {
    const entry = HashMap.get(state.connections, connection.id)
    if (Option.isNone(entry)) return [{ removed: false, userLeftGuilds: [], channels: 0 }, state]
    let channels = state.channels
    for (const key of entry.value.channels) channels = removeMember(channels, key, connection)
    let guilds = state.guilds
    const userLeftGuilds: Array<GuildId> = []
    for (const guildId of entry.value.guilds.keys()) {
      guilds = removeMember(guilds, guildId, connection)
      if (!userHoldsGuild(state, connection.userId, guildId, connection)) userLeftGuilds.push(guildId)
    }
    return [
      { removed: true, userLeftGuilds, channels: entry.value.channels.size },
      {
        connections: HashMap.remove(state.connections, connection.id),
        channels,
        guilds,
        users: removeMember(state.users, connection.userId, connection)
      }
    ]
  },

  /**
   * Every subscription of every connection of `userId` in `guildId` goes, in one step, and those
   * connections may not subscribe in the guild again.
   */
  revoke: (state: RegistryState, userId: UserId, guildId: GuildId): [RevokeOutcome, RegistryState] => {
    const prefix = `${guildId}:`
    let { channels, connections, guilds } = state
    const affected: Array<Connection> = []
    let removed = 0
    let marked = false
    const members = Option.getOrElse(HashMap.get(state.users, userId), () => MemberList.empty)
    for (const connection of MemberList.toArray(members)) {
      const entry = HashMap.get(connections, connection.id)
      if (Option.isNone(entry)) continue
      const revoked = entry.value.revoked.has(guildId)
        ? entry.value.revoked
        : new Set(entry.value.revoked).add(guildId)
      marked ||= revoked !== entry.value.revoked
      if (!entry.value.guilds.has(guildId)) {
        connections = HashMap.set(connections, connection.id, { ...entry.value, revoked })
        continue
      }
      const kept = new Set<ChannelKey>()
      for (const key of entry.value.channels) {
        if (key.startsWith(prefix)) {
          channels = removeMember(channels, key, connection)
          removed++
        } else kept.add(key)
      }
      connections = HashMap.set(connections, connection.id, {
        connection,
        channels: kept,
        guilds: mapWithout(entry.value.guilds, guildId),
        revoked
      })
      guilds = removeMember(guilds, guildId, connection)
      affected.push(connection)
    }
    return [
      { connections: affected, userLeftGuild: affected.length > 0, channels: removed },
      affected.length === 0 && !marked ? state : { connections, channels, guilds, users: state.users }
    ]
  }
}

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
              onSome: (entry) => entry.guilds.keys()
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
