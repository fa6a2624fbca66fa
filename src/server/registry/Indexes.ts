/**
 * The subscription indexes as a value: channel key -> connections, guild -> connections, user ->
 * connections, connection -> its subscriptions (its guilds follow from its channel keys), and the pure
 * transitions between states with what each changed (the outcomes the hooks act on). The service
 * (`Subscriptions.ts`) applies each transition with one `Ref.modify`.
 */
import { HashMap, Option } from "effect"
import type { ChannelId, GuildId, UserId } from "../../protocol/Ids.js"
import type { Connection, ConnectionId } from "../core/Connection.js"
import * as MemberList from "./MemberList.js"

export type ChannelKey = `${string}:${string}`

export const channelKey = (guildId: GuildId, channelId: ChannelId): ChannelKey => `${guildId}:${channelId}`

/** The guild of a channel key (ids are ULIDs: the first `:` ends the guild). */
const guildOf = (key: ChannelKey): GuildId => key.slice(0, key.indexOf(":")) as GuildId

/** Whether `key` is a channel of `guildId`. */
const inGuild = (key: ChannelKey, guildId: GuildId): boolean =>
  key.startsWith(guildId) && key[guildId.length] === ":"

/** Whether `channels` holds a channel of `guildId`. */
export const holdsGuild = (channels: ReadonlySet<ChannelKey>, guildId: GuildId): boolean => {
  for (const key of channels) if (inGuild(key, guildId)) return true
  return false
}

/** The guilds of `channels`, each once. */
export const guildsOf = (channels: ReadonlySet<ChannelKey>): ReadonlySet<GuildId> =>
  new Set(Array.from(channels, guildOf))

export interface ConnectionEntry {
  readonly connection: Connection
  /**
   * Copied on write, never mutated: a connection holds few channels and changes them rarely. Its
   * guilds are read from these keys rather than kept in a map of their own, which cost each idle
   * connection about 200 bytes.
   */
  readonly channels: ReadonlySet<ChannelKey>
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
const NO_REVOKED: ReadonlySet<GuildId> = new Set()

const setWithout = <K>(set: ReadonlySet<K>, key: K): ReadonlySet<K> => {
  const copy = new Set(set)
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
    return Option.isSome(entry) && holdsGuild(entry.value.channels, guildId)
  })
}

/**
 * A connection's first subscription, to `key`: the `{key}` set of a member that holds exactly that
 * channel, if one does. It is never mutated (copy on write), so thousands of connections on one
 * channel share it instead of holding a copy each.
 */
const soleSubscriptionOfMember = (state: RegistryState, key: ChannelKey): ConnectionEntry | undefined => {
  const members = HashMap.get(state.channels, key)
  if (Option.isNone(members)) return undefined
  const member = MemberList.last(members.value)
  const entry = member === undefined ? Option.none() : HashMap.get(state.connections, member.id)
  return Option.isSome(entry) && entry.value.channels.size === 1 ? entry.value : undefined
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
    if (entry.value.channels.has(key)) {
      return [
        { _tag: "Subscribed", added: false, connectionJoinedGuild: false, userJoinedGuild: false },
        state
      ]
    }
    if (entry.value.channels.size >= maxSubscriptions) return [{ _tag: "SubscriptionLimit" }, state]
    const connectionJoinedGuild = !holdsGuild(entry.value.channels, guildId)
    const userJoinedGuild =
      connectionJoinedGuild && !userHoldsGuild(state, connection.userId, guildId, connection)
    const shared = entry.value.channels.size === 0 ? soleSubscriptionOfMember(state, key) : undefined
    return [
      { _tag: "Subscribed", added: true, connectionJoinedGuild, userJoinedGuild },
      {
        ...state,
        connections: HashMap.set(state.connections, connection.id, {
          ...entry.value,
          channels: shared?.channels ?? new Set(entry.value.channels).add(key)
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
    const channels = setWithout(entry.value.channels, key)
    const connectionLeftGuild = !holdsGuild(channels, guildId)
    const userLeftGuild =
      connectionLeftGuild && !userHoldsGuild(state, connection.userId, guildId, connection)
    return [
      { removed: true, connectionLeftGuild, userLeftGuild },
      {
        ...state,
        connections: HashMap.set(state.connections, connection.id, { ...entry.value, channels }),
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
    for (const guildId of guildsOf(entry.value.channels)) {
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
      if (!holdsGuild(entry.value.channels, guildId)) {
        connections = HashMap.set(connections, connection.id, { ...entry.value, revoked })
        continue
      }
      const kept = new Set<ChannelKey>()
      for (const key of entry.value.channels) {
        if (inGuild(key, guildId)) {
          channels = removeMember(channels, key, connection)
          removed++
        } else kept.add(key)
      }
      connections = HashMap.set(connections, connection.id, { connection, channels: kept, revoked })
      guilds = removeMember(guilds, guildId, connection)
      affected.push(connection)
    }
    return [
      { connections: affected, userLeftGuild: affected.length > 0, channels: removed },
      affected.length === 0 && !marked ? state : { connections, channels, guilds, users: state.users }
    ]
  }
}
