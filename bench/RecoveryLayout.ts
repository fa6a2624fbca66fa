/**
 * The workload of the missed-event recovery benchmark (issue 14), shared by the bench gateway (what
 * to publish) and the recovery clients (what each client must receive): N clients, each its own user,
 * spread over G guilds of C channels; client i is in guild `i mod G` and subscribes to two adjacent
 * channels of it, so every channel has several subscribers and the guild stream is recovered by the
 * first subscribe and answered `already_live` by the second. Users are grouped `userGroup` at a time
 * for user events (one publish to several users, as a profile change reaches its observers).
 *
 * One **round** publishes exactly one event to every stream: a `message_create` to each channel, a
 * `workspace_update` to each guild, a `profile_avatar_update` to each user group. A fresh server
 * process therefore gives every stream offset `r + 1` to the event of round `r`, and every payload
 * carries its round in its `*_at_unix` field: a client checks each event's identity from its offset
 * without parsing the frame.
 */
import { plainTextMessage } from "../test/fixtures/messages.js"
import { AUTHOR, benchUlid } from "./Workload.js"

export interface RecoveryShape {
  readonly clients: number
  readonly guilds: number
  readonly channelsPerGuild: number
  /** Users one user event goes to. */
  readonly userGroup: number
  /** Rounds of every phase: the events each stream gets while the clients are away. */
  readonly rounds: number
}

export const FULL_RECOVERY_SHAPE: RecoveryShape = {
  clients: 1000,
  guilds: 10,
  channelsPerGuild: 5,
  userGroup: 25,
  rounds: 100
}

export const SMOKE_RECOVERY_SHAPE: RecoveryShape = {
  clients: 20,
  guilds: 2,
  channelsPerGuild: 2,
  userGroup: 5,
  rounds: 3
}

/** The environment variable that hands the shape to the bench gateway (JSON). */
export const RECOVERY_SHAPE_ENV = "BENCH_RECOVERY_SHAPE"

/** Channel subscriptions per client. */
export const SUBSCRIPTIONS_PER_CLIENT = 2

export const guildOf = (guild: number) => benchUlid("guild", 1 + guild)
export const channelOf = (shape: RecoveryShape, guild: number, channel: number) =>
  benchUlid("channel", 1 + guild * shape.channelsPerGuild + channel)
export const userOf = (client: number) => benchUlid("user", 1 + client)

export interface ClientLayout {
  readonly user: string
  readonly guild: string
  readonly channels: ReadonlyArray<string>
  /** Its streams: the user stream, then the guild stream, then one per channel. */
  readonly streams: ReadonlyArray<string>
}

export const clientLayout = (shape: RecoveryShape, client: number): ClientLayout => {
  const guild = client % shape.guilds
  const first = Math.floor(client / shape.guilds) % shape.channelsPerGuild
  const channels = Array.from({ length: SUBSCRIPTIONS_PER_CLIENT }, (_, k) =>
    channelOf(shape, guild, (first + k) % shape.channelsPerGuild)
  )
  const user = userOf(client)
  const guildId = guildOf(guild)
  return {
    user,
    guild: guildId,
    channels,
    streams: [
      `user:${user}`,
      `guild:${guildId}`,
      ...channels.map((channel) => `channel:${guildId}:${channel}`)
    ]
  }
}

/** Events one round publishes: one per channel, per guild and per user group. */
export const publishesPerRound = (shape: RecoveryShape) =>
  shape.guilds * shape.channelsPerGuild + shape.guilds + Math.ceil(shape.clients / shape.userGroup)

/** Deliveries one round makes when every client is connected: each stream of each client once. */
export const deliveriesPerRound = (shape: RecoveryShape) => shape.clients * (2 + SUBSCRIPTIONS_PER_CLIENT)

/** The unix time every payload carries, `ROUND_EPOCH_UNIX + round`. */
export const ROUND_EPOCH_UNIX = 1_735_689_600

export type RecoveryPublish =
  | { readonly scope: "channel"; readonly payload: ReturnType<typeof plainTextMessage> }
  | {
      readonly scope: "guild"
      readonly payload: {
        readonly guild_id: string
        readonly updated_fields: { readonly name: string }
        readonly updated_at_unix: number
      }
    }
  | {
      readonly scope: "user"
      readonly payload: {
        readonly user_id: string
        readonly avatar_version: number
        readonly updated_at_unix: number
      }
      readonly users: ReadonlyArray<string>
    }

/** Round numbers in payloads are fixed width, so frames of every phase have the same size. */
const FIXED_WIDTH = 1_000_000
const fixedWidth = (round: number) => String(FIXED_WIDTH + round)

/** Publish number `seq` of the run: round `⌊seq / P⌋`, target `seq mod P` (channels, guilds, user groups). */
export const recoveryPublish = (shape: RecoveryShape, seq: number): RecoveryPublish => {
  const perRound = publishesPerRound(shape)
  const round = Math.floor(seq / perRound)
  let k = seq % perRound
  const at = ROUND_EPOCH_UNIX + round
  const channels = shape.guilds * shape.channelsPerGuild
  if (k < channels) {
    const guild = Math.floor(k / shape.channelsPerGuild)
    const ids = {
      message_id: benchUlid("message", seq),
      guild_id: guildOf(guild),
      channel_id: channelOf(shape, guild, k % shape.channelsPerGuild),
      author_id: AUTHOR
    }
    return {
      scope: "channel",
      payload: plainTextMessage(ids, `round ${fixedWidth(round)} of the recovery bench`, at)
    }
  }
  k -= channels
  if (k < shape.guilds) {
    return {
      scope: "guild",
      payload: {
        guild_id: guildOf(k),
        updated_fields: { name: `bench ${fixedWidth(round)}` },
        updated_at_unix: at
      }
    }
  }
  k -= shape.guilds
  const users: Array<string> = []
  for (
    let client = k * shape.userGroup;
    client < Math.min(shape.clients, (k + 1) * shape.userGroup);
    client++
  )
    users.push(userOf(client))
  return {
    scope: "user",
    payload: { user_id: users[0]!, avatar_version: FIXED_WIDTH + round, updated_at_unix: at },
    users
  }
}

const AT_MARKER = Buffer.from('_at_unix":')

/** The round an event frame of this workload carries (`*_at_unix`), or -1. */
export const roundOf = (frame: Buffer): number => {
  const at = frame.indexOf(AT_MARKER)
  if (at < 0) return -1
  let value = 0
  let digits = 0
  for (let i = at + AT_MARKER.length; i < frame.length; i++) {
    const c = frame[i]!
    if (c < 48 || c > 57) break
    value = value * 10 + (c - 48)
    digits++
  }
  return digits === 0 ? -1 : value - ROUND_EPOCH_UNIX
}
