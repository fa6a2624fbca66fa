/**
 * The bus's wire codec, apart from any transport: the topics a frame travels on, the signed binary
 * message (routing header + the publisher's envelope), its checks on receipt (size caps, HMAC,
 * header shape, routing) and the replay guard. Pure: no connection, no clock of its own, no metrics
 * (a refusal is returned as the drop reason the caller counts).
 *
 * Wire format of a bus message (binary):
 *   [0]       format version (1)
 *   [1..33)   HMAC-SHA256 over everything after it, keyed with GATEWAY_BUS_SECRET
 *   [33..35)  header length (uint16 BE)
 *   header    JSON: publishing node, its sequence number, publish time, scope, event type, routing ids
 *   envelope  the UTF-8 envelope `{"v":1,"t":...,"d":...}` exactly as the publisher encoded it
 *
 * A recorded event (one the history keeps, `recorded: true` in the header) is published by the
 * history's append script, which writes the stream position it assigned in front of the signed
 * message: `[2]` `<epoch>:<offset>` `\n` then the message above. The position is outside the HMAC
 * (Redis writes it after the node signed): it is checked for shape only, so whoever can write to
 * Redis can misnumber an event (not forge or replay one; the signed part is checked as always).
 */
import { createHmac, timingSafeEqual } from "node:crypto"
import { Either, Schema } from "effect"
import { ChannelId, GuildId, UserId } from "../../protocol/Ids.js"
import { Manifest } from "../../protocol/Manifest.js"
import { parsePosition, type StreamPosition } from "../../protocol/Streams.js"
import type { BusDropReason } from "../Metrics.js"
import type { Route } from "../core/Bus.js"
import { guildTopic, userTopic, USER_TOPIC_PREFIX, type Topic } from "../registry/Interest.js"

const FORMAT_VERSION = 1
/** The first byte of a recorded event's message: the position Redis wrote follows, then `\n`. */
const POSITIONED_FORMAT = 2
const POSITION_END = 0x0a
/** `<epoch>:<offset>`: an epoch of at most 64 characters, an offset of at most 16 digits. */
const MAX_POSITION_BYTES = 64 + 1 + 16
/** What the append script writes before and after the position (`positionedSuffix`). */
export const POSITIONED_PREFIX = Buffer.from([POSITIONED_FORMAT])
export const positionedSuffix = (message: Buffer): Buffer =>
  Buffer.concat([Buffer.from([POSITION_END]), message])
const MAC_BYTES = 32
const PREFIX_BYTES = 1 + MAC_BYTES + 2
/** Users per signed user-scoped message: keeps the header small and bounded (one HMAC per batch). */
export const USERS_PER_MESSAGE = 256

const BusHeader = Schema.Struct({
  node: Schema.String.pipe(Schema.pattern(/^[0-9a-f]{32}$/)),
  /** Increases with every message the node publishes: a receiver drops one it has seen (replay). */
  seq: Schema.Number.pipe(Schema.int(), Schema.nonNegative()),
  at: Schema.Number.pipe(Schema.finite()),
  scope: Schema.Literal("channel", "guild", "user"),
  type: Schema.String,
  guild: Schema.optional(GuildId),
  channel: Schema.optional(ChannelId),
  users: Schema.optional(Schema.Array(UserId).pipe(Schema.minItems(1), Schema.maxItems(USERS_PER_MESSAGE))),
  trace: Schema.optional(Schema.String.pipe(Schema.pattern(/^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/))),
  /** Published by the history's append script: a position precedes the signed message. */
  recorded: Schema.optional(Schema.Literal(true))
})
export type BusHeader = typeof BusHeader.Type
// Fields a later version adds are ignored rather than refused: the header is signed, so they come from a
// genuine node, and a rolling deploy keeps cross-node delivery.
const decodeHeader = Schema.decodeUnknownEither(Schema.parseJson(BusHeader), { onExcessProperty: "ignore" })

const mac = (secret: Buffer, body: Uint8Array) => createHmac("sha256", secret).update(body).digest()

/** Signs and frames one bus message. */
export const encodeMessage = (secret: Buffer, header: BusHeader, envelope: Uint8Array): Buffer => {
  const headerBytes = Buffer.from(JSON.stringify(header))
  const message = Buffer.allocUnsafe(PREFIX_BYTES + headerBytes.length + envelope.length)
  message[0] = FORMAT_VERSION
  message.writeUInt16BE(headerBytes.length, 1 + MAC_BYTES)
  headerBytes.copy(message, PREFIX_BYTES)
  message.set(envelope, PREFIX_BYTES + headerBytes.length)
  mac(secret, message.subarray(1 + MAC_BYTES)).copy(message, 1)
  return message
}

/** What a publish stamps on each of its messages; the routing ids come from the route. */
export type Stamp = Pick<BusHeader, "node" | "seq" | "at" | "type" | "trace" | "recorded">

/**
 * Signs a publish for its route and hands each message to `send` with its topic: a guild or channel
 * event once, on its guild's topic; a user event once per batch of `USERS_PER_MESSAGE` users, the
 * batch's message on each of its users' topics.
 */
export const encodeRoute = (
  secret: Buffer,
  stamp: Stamp,
  route: Route,
  envelope: Uint8Array,
  send: (topic: Topic, message: Buffer) => void
): void => {
  const base = { ...stamp, scope: route.scope }
  if (route.scope !== "user") {
    const header: BusHeader =
      route.scope === "channel"
        ? { ...base, guild: route.guildId, channel: route.channelId }
        : { ...base, guild: route.guildId }
    return send(guildTopic(route.guildId), encodeMessage(secret, header, envelope))
  }
  for (let i = 0; i < route.userIds.length; i += USERS_PER_MESSAGE) {
    const users = route.userIds.slice(i, i + USERS_PER_MESSAGE)
    const message = encodeMessage(secret, { ...base, users }, envelope)
    for (const user of users) send(userTopic(user), message)
  }
}

export interface DecodedMessage {
  readonly header: BusHeader
  readonly envelope: Buffer
  /** The stream position of a recorded event, as the append script wrote it. */
  readonly position: StreamPosition | undefined
}

/**
 * Checks one received message: size, signature, header shape, a known event whose scope matches the
 * routing ids, an envelope within the event cap. Nothing after the signature is trusted before it.
 */
export const decodeMessage = (
  /** The signing secret first, then any accepted during a rotation. */
  secrets: ReadonlyArray<Buffer>,
  message: Buffer,
  limits: { readonly maxMessageBytes: number; readonly maxEventBytes: number }
): Either.Either<DecodedMessage, BusDropReason> => {
  if (message.length > limits.maxMessageBytes) return Either.left("oversized")
  if (message[0] !== POSITIONED_FORMAT) {
    const decoded = decodeSigned(secrets, message, limits)
    return Either.isRight(decoded) && decoded.right.header.recorded === true
      ? Either.left("malformed")
      : decoded
  }
  const end = message.subarray(0, 2 + MAX_POSITION_BYTES).indexOf(POSITION_END)
  const position = end < 0 ? undefined : parsePosition(message.toString("latin1", 1, end))
  if (position === undefined || position.offset === 0) return Either.left("malformed")
  const decoded = decodeSigned(secrets, message.subarray(end + 1), limits)
  if (Either.isLeft(decoded)) return decoded
  if (decoded.right.header.recorded !== true) return Either.left("malformed")
  return Either.right({ ...decoded.right, position })
}

/** The signed message: signature first, then the header's shape and routing, then the envelope. */
const decodeSigned = (
  secrets: ReadonlyArray<Buffer>,
  message: Buffer,
  limits: { readonly maxEventBytes: number }
): Either.Either<DecodedMessage, BusDropReason> => {
  if (message.length < PREFIX_BYTES || message[0] !== FORMAT_VERSION) return Either.left("malformed")
  const body = message.subarray(1 + MAC_BYTES)
  const signature = message.subarray(1, 1 + MAC_BYTES)
  if (!secrets.some((secret) => timingSafeEqual(mac(secret, body), signature)))
    return Either.left("bad_signature")
  const headerEnd = PREFIX_BYTES + message.readUInt16BE(1 + MAC_BYTES)
  if (headerEnd > message.length) return Either.left("malformed")
  const header = decodeHeader(message.toString("utf8", PREFIX_BYTES, headerEnd))
  if (Either.isLeft(header)) return Either.left("malformed")
  const { channel, guild, scope, type, users } = header.right
  const event = Manifest.lookup(type)
  const routed =
    scope === "user"
      ? users !== undefined && guild === undefined && channel === undefined
      : guild !== undefined && users === undefined && (scope === "channel") === (channel !== undefined)
  if (event === undefined || event.scope !== scope || !routed) return Either.left("malformed")
  const envelope = message.subarray(headerEnd)
  if (envelope.length === 0 || envelope.length > limits.maxEventBytes) return Either.left("malformed")
  return Either.right({ header: header.right, envelope, position: undefined })
}

/** The route a verified message has on the topic it arrived on, or undefined when it does not belong there. */
export const routeOn = (topic: Topic, header: BusHeader): Route | undefined => {
  if (header.scope === "user") {
    if (!topic.startsWith(USER_TOPIC_PREFIX) || !topic.endsWith("}")) return undefined
    const user = topic.slice(USER_TOPIC_PREFIX.length, -1) as UserId
    // One signed batch goes to each of its users' topics; here it is for that user alone.
    return header.users!.includes(user) ? { scope: "user", userIds: [user] } : undefined
  }
  const guildId = header.guild!
  if (topic !== guildTopic(guildId)) return undefined
  return header.scope === "channel"
    ? { scope: "channel", guildId, channelId: header.channel! }
    : { scope: "guild", guildId }
}

/**
 * Replay guard: per topic, each publishing node's highest sequence number seen on it. A publisher
 * sends on one topic over one connection to the topic's one shard, so its messages arrive on the
 * topic in sequence order; anything at or below the mark has been seen. A mark is forgotten once
 * its message is older than the staleness window (every older message of that publisher is then
 * dropped as stale anyway), so the memory is bounded by the topics subscribed and the nodes that
 * published on them within the window.
 */
export const makeReplayGuard = (maxLagMillis: number, startedAt: number) => {
  const highWater = new Map<Topic, Map<string, { seq: number; at: number }>>()
  let prunedAt = startedAt
  const prune = (now: number) => {
    prunedAt = now
    for (const [topic, marks] of highWater) {
      for (const [origin, mark] of marks) if (now - mark.at > maxLagMillis) marks.delete(origin)
      if (marks.size === 0) highWater.delete(topic)
    }
  }
  return {
    /** True when the message was seen on this topic before; marks it seen otherwise. */
    replayed: (topic: Topic, header: BusHeader, now: number): boolean => {
      if (now - prunedAt > maxLagMillis) prune(now)
      let marks = highWater.get(topic)
      if (marks === undefined) highWater.set(topic, (marks = new Map()))
      const mark = marks.get(header.node)
      if (mark !== undefined && header.seq <= mark.seq) return true
      marks.set(header.node, { seq: header.seq, at: header.at })
      return false
    }
  }
}
