/**
 * Explore: what the registry holds, read from one state snapshot — the guilds and channels with the
 * most subscribers, and one user's connections on this node (age, subscriptions, outbox depth, socket
 * buffered bytes) — and the connection a close or drop action targets.
 */
import { HashMap, Option } from "effect"
import type { ChannelId, GuildId, UserId } from "../../protocol/Ids.js"
import type { Connection, ConnectionId } from "../core/Connection.js"
import * as MemberList from "../registry/MemberList.js"
import type { RegistryState } from "../registry/Indexes.js"

export interface Ranked {
  readonly id: string
  readonly subscribers: number
}

export interface ConnectionView {
  readonly id: ConnectionId
  readonly node: string
  readonly connectedAt: number
  readonly ageSeconds: number
  readonly subscriptions: ReadonlyArray<{ readonly guild_id: GuildId; readonly channel_id: ChannelId }>
  readonly outboxDepth: number
  readonly bufferedBytes: number
  readonly open: boolean
}

const topOf = <K extends string>(index: HashMap.HashMap<K, MemberList.MemberList>, limit: number) => {
  const ranked: Array<Ranked> = []
  for (const [id, members] of index) ranked.push({ id, subscribers: members.size })
  ranked.sort((a, b) => b.subscribers - a.subscribers || (a.id < b.id ? -1 : 1))
  return ranked.slice(0, limit)
}

/** The `limit` guilds and channels (`guild:channel`) with the most subscribed connections. */
export const top = (state: RegistryState, limit: number) => ({
  guilds: topOf(state.guilds, limit),
  channels: topOf(state.channels, limit)
})

/** The user's connections on this node. */
export const userConnections = (
  state: RegistryState,
  userId: UserId,
  now: number,
  node: string
): ReadonlyArray<ConnectionView> => {
  const members = HashMap.get(state.users, userId)
  if (Option.isNone(members)) return []
  const views: Array<ConnectionView> = []
  for (const connection of MemberList.toArray(members.value)) {
    const entry = Option.getOrUndefined(HashMap.get(state.connections, connection.id))
    if (entry === undefined) continue
    views.push({
      id: connection.id,
      node,
      connectedAt: connection.connectedAt,
      ageSeconds: Math.max(0, Math.round((now - connection.connectedAt) / 1000)),
      subscriptions: [...entry.channels].map((key) => {
        const [guild, channel] = key.split(":")
        return { guild_id: guild as GuildId, channel_id: channel as ChannelId }
      }),
      outboxDepth: connection.outboxDepth,
      bufferedBytes: connection.bufferedAmount,
      open: connection.isOpen
    })
  }
  return views.sort((a, b) => a.id - b.id)
}

/** A registered connection of this node by id. */
export const connectionById = (state: RegistryState, id: ConnectionId): Connection | undefined =>
  Option.getOrUndefined(Option.map(HashMap.get(state.connections, id), (entry) => entry.connection))

/** The channels a connection holds (`guild:channel` keys), if it is registered. */
export const subscriptionsOf = (
  state: RegistryState,
  connection: Connection
): ReadonlySet<string> | undefined =>
  Option.getOrUndefined(Option.map(HashMap.get(state.connections, connection.id), (entry) => entry.channels))
