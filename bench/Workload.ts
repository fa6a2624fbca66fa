/**
 * The benchmark workload, shared by every server under test and the load generator: ids, the
 * hot channel, the idle channels of the registry-scaling runs, the event, and where the latency stamp
 * sits in a delivered frame. Definitions follow the agreed fanout workload (docs/BENCHMARKS.md).
 */
import { plainTextMessage } from "../test/fixtures/messages.js"

/** One clock for every process on the machine: `process.hrtime` is CLOCK_MONOTONIC on Linux. */
export const nowUs = (): number => Number(process.hrtime.bigint()) / 1000

const CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

const KIND_LETTER = { guild: "G", channel: "C", user: "A", message: "M" } as const

/** A deterministic canonical ULID: `01` + a kind letter + `index` in base 32, 26 characters. */
export const benchUlid = (kind: keyof typeof KIND_LETTER, index: number): string => {
  let digits = ""
  let rest = index
  do {
    digits = CROCKFORD[rest % 32] + digits
    rest = Math.floor(rest / 32)
  } while (rest > 0)
  return `01${KIND_LETTER[kind]}${digits.padStart(23, "0")}`
}

export const HOT_GUILD = benchUlid("guild", 0)
export const HOT_CHANNEL = benchUlid("channel", 0)

/** Idle channels of the registry-scaling runs are grouped into guilds of this many channels. */
export const IDLE_CHANNELS_PER_GUILD = 20

export interface ChannelTarget {
  readonly guild_id: string
  readonly channel_id: string
}

/** Idle channel number `room` (0-based); never receives traffic, it only grows the registry. */
export const idleChannel = (room: number): ChannelTarget => ({
  guild_id: benchUlid("guild", 1 + Math.floor(room / IDLE_CHANNELS_PER_GUILD)),
  channel_id: benchUlid("channel", 1 + room)
})

/**
 * Connection `i` subscribes to the hot channel plus idle rooms `(i*S + j) mod M`, `j < S` (the
 * assignment of docs/BENCHMARKS.md, Registry scaling), so `N*S` extra subscriptions spread over `M` channels.
 */
export const channelsFor = (i: number, idleRooms: number, subsPerConn: number): Array<ChannelTarget> => {
  const channels: Array<ChannelTarget> = [{ guild_id: HOT_GUILD, channel_id: HOT_CHANNEL }]
  if (idleRooms > 0) {
    for (let j = 0; j < Math.min(subsPerConn, idleRooms); j++)
      channels.push(idleChannel((i * subsPerConn + j) % idleRooms))
  }
  return channels
}

/** Every guild a connection may subscribe to in a run with `idleRooms` idle channels. */
export const guildsOf = (idleRooms: number): Array<string> => {
  const guilds = [HOT_GUILD]
  for (let g = 0; g * IDLE_CHANNELS_PER_GUILD < idleRooms; g++) guilds.push(benchUlid("guild", 1 + g))
  return guilds
}

/**
 * The connect-storm layout: guilds of `usersPerGuild` users, each guild with `channelsPerGuild`
 * channels; every user has `connectionsPerUser` connections, and every connection subscribes to
 * `subscriptionsPerConnection` channels of its user's guild. Connection i belongs to user
 * ⌊i / connectionsPerUser⌋.
 */
export interface StormLayout {
  readonly usersPerGuild: number
  readonly channelsPerGuild: number
  readonly connectionsPerUser: number
  readonly subscriptionsPerConnection: number
}

export const STORM_LAYOUT: StormLayout = {
  usersPerGuild: 250,
  channelsPerGuild: 8,
  connectionsPerUser: 4,
  subscriptionsPerConnection: 4
}

export const SMOKE_STORM_LAYOUT: StormLayout = {
  usersPerGuild: 5,
  channelsPerGuild: 4,
  connectionsPerUser: 2,
  subscriptionsPerConnection: 2
}

/** Storm handshakes pending at once: below the gateway's listen backlog (Node's default, 511). */
export const STORM_HANDSHAKES_IN_FLIGHT = 500

/** The user (0-based) of storm connection `i`; bench user ids start at 1 (user 0 is the author). */
export const stormUserOf = (layout: StormLayout, i: number): number =>
  Math.floor(i / layout.connectionsPerUser)

export const stormGuildOf = (layout: StormLayout, user: number): string =>
  benchUlid("guild", Math.floor(user / layout.usersPerGuild))

/** The channels storm connection `i` subscribes to: consecutive channels of its guild, from `i`. */
export const stormChannelsOf = (layout: StormLayout, i: number): Array<ChannelTarget> => {
  const guildIndex = Math.floor(stormUserOf(layout, i) / layout.usersPerGuild)
  const count = Math.min(layout.subscriptionsPerConnection, layout.channelsPerGuild)
  return Array.from({ length: count }, (_, j) => ({
    guild_id: benchUlid("guild", guildIndex),
    channel_id: benchUlid(
      "channel",
      guildIndex * layout.channelsPerGuild + ((i + j) % layout.channelsPerGuild)
    )
  }))
}

/**
 * Client sockets spread over this many loopback source addresses (127.0.0.2 …): each (source,
 * destination) pair has its own ~28 000 ephemeral ports, so 50 000 sockets to one port need several.
 */
export const SOURCE_ADDRESSES = 8
export const sourceAddressOf = (i: number): string => `127.0.0.${2 + (i % SOURCE_ADDRESSES)}`

export const subscribeFrame = (target: ChannelTarget): string =>
  JSON.stringify({ v: 1, t: "subscribe", d: { guild_id: target.guild_id, channel_id: target.channel_id } })

export const AUTHOR = benchUlid("user", 0)
const CONTENT = "hello from the fanout bench"

/**
 * The `message_create` payload (a MessageSnapshot) of event `seq`. The stamp (integer µs, taken
 * when the event object is created, before any serialization) leads `content`, so a delivery's
 * latency is read from the frame without a JSON parse.
 */
export const messageSnapshot = (seq: number) =>
  plainTextMessage(
    {
      message_id: benchUlid("message", seq),
      guild_id: HOT_GUILD,
      channel_id: HOT_CHANNEL,
      author_id: AUTHOR
    },
    `${Math.round(nowUs())} ${CONTENT}`,
    1_735_689_600 + seq
  )

const STAMP_MARKER = Buffer.from('"content":"')

/**
 * Reads the stamp of a delivered `message_create` frame, or returns -1 for any other frame. The
 * marker's offset is the same in every frame of a run (fixed-width ids), so it is checked at the
 * last offset first and searched only when that misses.
 */
export const makeStampReader = () => {
  let offset = -1
  const markerAt = (data: Buffer, at: number): boolean => {
    if (at < 0 || at + STAMP_MARKER.length > data.length) return false
    for (let k = 0; k < STAMP_MARKER.length; k++) if (data[at + k] !== STAMP_MARKER[k]) return false
    return true
  }
  return (data: Buffer): number => {
    if (!markerAt(data, offset)) {
      offset = data.indexOf(STAMP_MARKER)
      if (offset < 0) return -1
    }
    let value = 0
    let digits = 0
    for (let i = offset + STAMP_MARKER.length; i < data.length; i++) {
      const c = data[i]!
      if (c < 48 || c > 57) break
      value = value * 10 + (c - 48)
      digits++
    }
    return digits === 0 ? -1 : value
  }
}

/** The run shape: phase sizes in deliveries, as in the agreed workload. */
export interface Shape {
  readonly warmupDeliveries: number
  readonly rateDeliveriesPerSec: number
  readonly rateSeconds: number
  readonly burstDeliveries: number
  /** Pause between "everyone subscribed" and the idle-memory snapshot. */
  readonly idleWaitMs: number
}

export const FULL_SHAPE: Shape = {
  warmupDeliveries: 100_000,
  rateDeliveriesPerSec: 10_000,
  rateSeconds: 5,
  burstDeliveries: 200_000,
  idleWaitMs: 1000
}

export const SMOKE_SHAPE: Shape = {
  warmupDeliveries: 500,
  rateDeliveriesPerSec: 1000,
  rateSeconds: 0.5,
  burstDeliveries: 2000,
  idleWaitMs: 100
}
