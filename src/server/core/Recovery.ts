/**
 * Missed-event recovery on a connection that opted in (`recovery=1`): what it holds while a stream
 * is replayed, and the replay itself — after `ready` for the user stream, after an authorized
 * `subscribe` for its channel and guild streams. The history is the `History` service
 * (`recovery/History.ts`); what goes into it is the publish path's (`RecordedDelivery`).
 *
 * The seam: a stream's live positioned frames are held for the connection from before its
 * recipients can include it (before `register` / `registry.subscribe`) until the replay and the
 * `recovery` event are out; then those after the replayed head go out in order, the others (already
 * replayed, or before a position that could not be recovered) are dropped. Held frames count
 * against the connection's outbound bound (`GATEWAY_OUTBOUND_QUEUE`): over it the connection closes
 * 1008 `slow_consumer` like a full outbox, so the client reconnects and recovers again — never a
 * silent gap.
 */
import { Effect, Either } from "effect"
import { Recovery as RecoveryEvent } from "../../protocol/events/connection.js"
import type { ChannelId, GuildId } from "../../protocol/Ids.js"
import { Manifest } from "../../protocol/Manifest.js"
import type { StreamRecovery as StreamRecoverySchema } from "../../protocol/Recovery.js"
import {
  channelStream,
  guildStream,
  userStream,
  type NotRecoveredReason,
  type StreamPosition
} from "../../protocol/Streams.js"
import type { GatewayMetricsShape } from "../Metrics.js"
import {
  scopeOf,
  type Entry,
  type HistoryShape,
  type Position,
  type StreamName
} from "../recovery/History.js"
import type { Connection, DeliveryResult } from "./Connection.js"
import * as Outbound from "./Outbound.js"
import type { Publisher } from "./Seams.js"

type StreamRecovery = typeof StreamRecoverySchema.Type

interface HeldFrame {
  readonly offset: number
  readonly frame: Outbound.Frame
}

/** The recovery state of one opted-in connection (a legacy connection has none: `undefined`). */
export class ConnectionRecovery {
  /** Streams being replayed, with the live frames that arrived meanwhile; made on first use. */
  private held: Map<string, Array<HeldFrame>> | undefined = undefined
  private heldFrames = 0

  constructor(
    /** The client's last position of its own user stream (`user_since`), if it gave one. */
    readonly userSince: StreamPosition | undefined,
    /** Frames this connection may hold at once (its outbound bound). */
    private readonly maxHeld: number
  ) {}

  /** A positioned live frame: held while its stream is replayed, else delivered. */
  deliver(connection: Connection, stream: string, offset: number, frame: Outbound.Frame): DeliveryResult {
    const held = this.held?.get(stream)
    if (held === undefined) return connection.deliver(frame)
    if (!connection.isOpen) return "closed"
    if (this.heldFrames >= this.maxHeld) {
      connection.close("slow_consumer")
      return "evicted"
    }
    held.push({ offset, frame })
    this.heldFrames++
    return "queued"
  }

  /** Live frames of `stream` wait from now on (until `release`). */
  hold(stream: string): void {
    const held = (this.held ??= new Map())
    if (!held.has(stream)) held.set(stream, [])
  }

  /** Sends the held frames of `stream` up to `head` (in order); the later ones stay held. */
  sendUpTo(connection: Connection, stream: string, head: number): void {
    const frames = this.held?.get(stream)
    if (frames === undefined || frames.length === 0 || frames[0]!.offset > head) return
    const later = frames.filter(({ offset }) => offset > head)
    this.heldFrames -= frames.length - later.length
    this.held!.set(stream, later)
    for (const { frame, offset } of frames) if (offset <= head) connection.deliver(frame)
  }

  /** Ends the hold of `stream`: the held frames after `after` go out in order, the others are dropped. */
  release(connection: Connection, stream: string, after: number): void {
    const frames = this.held?.get(stream)
    if (frames === undefined) return
    this.held!.delete(stream)
    this.heldFrames -= frames.length
    for (const { frame, offset } of frames) if (offset > after) connection.deliver(frame)
  }
}

/** The answer for one stream: its entry of the `recovery` event, and what to replay. */
interface StreamAnswer {
  readonly stream: StreamName
  readonly entry: StreamRecovery
  readonly replay: ReadonlyArray<Entry>
  /** The stream's head when it was read. */
  readonly head: number
  /**
   * What the held live frames up to `head` are: `replayed` (or not wanted: not recovered) — dropped;
   * `live` (no position given, or the stream live already) — never sent yet, so they go out before
   * the `recovery` event that states `head`.
   */
  readonly heldUpToHead: "replayed" | "live"
}

export interface RecoveryOptions {
  readonly history: HistoryShape
  readonly metrics: GatewayMetricsShape
  readonly publisher: Publisher
  readonly maxReplay: number
}

const positionEntry = (stream: StreamName, position: Position): StreamRecovery => ({
  stream,
  epoch: position.epoch,
  offset: position.offset
})

export const make = (options: RecoveryOptions) => {
  const { history, maxReplay, metrics, publisher } = options

  const notRecovered = (stream: StreamName, reason: NotRecoveredReason, position: Position): StreamAnswer => {
    metrics.recovery(scopeOf(stream), reason)
    return {
      stream,
      entry: { ...positionEntry(stream, position), recovered: false, reason },
      replay: [],
      head: position.offset,
      heldUpToHead: "replayed"
    }
  }

  /** Where the store cannot answer: the verdict names it; the client adopts no position of ours. */
  const unavailable = (stream: StreamName, since: StreamPosition | undefined): StreamAnswer =>
    notRecovered(stream, "history_unavailable", since ?? { epoch: "unavailable", offset: 0 })

  /** One stream: its position now, or the entries after `since` (or why not). */
  const answer = (stream: StreamName, since: StreamPosition | undefined): Effect.Effect<StreamAnswer> =>
    since === undefined
      ? Effect.match(history.position(stream), {
          onFailure: () => unavailable(stream, since),
          onSuccess: (position) => ({
            stream,
            entry: positionEntry(stream, position),
            replay: [],
            head: position.offset,
            heldUpToHead: "live"
          })
        })
      : Effect.match(history.readAfter(stream, since, maxReplay), {
          onFailure: () => unavailable(stream, since),
          onSuccess: (replay): StreamAnswer => {
            if (replay._tag === "NotRecovered") return notRecovered(stream, replay.reason, replay.position)
            // The entries run up to the head: the position after them is the stream's now.
            const position = replay.position
            metrics.recovery(scopeOf(stream), "recovered")
            metrics.eventsReplayed(scopeOf(stream), replay.entries.length)
            return {
              stream,
              entry: { ...positionEntry(stream, position), recovered: true, replayed: replay.entries.length },
              replay: replay.entries,
              head: position.offset,
              heldUpToHead: "replayed"
            }
          }
        })

  /**
   * Sends the replayed events (streams merged by publish stamp), the `recovery` event, and releases
   * the held live frames after each stream's head.
   */
  const finish = (
    connection: Connection,
    recovery: ConnectionRecovery,
    answers: ReadonlyArray<StreamAnswer>,
    ids: { readonly guild_id: GuildId; readonly channel_id: ChannelId } | undefined
  ) =>
    Effect.gen(function* () {
      const replay = answers
        .flatMap(({ replay, stream }) => replay.map((entry) => ({ entry, stream })))
        .sort((a, b) => a.entry.stamp - b.entry.stamp)
      const epochs = new Map(answers.map((answer) => [answer.stream, answer.entry.epoch]))
      for (const { entry, stream } of replay) {
        const scope = Manifest.lookup(entry.t)?.scope ?? scopeOf(stream)
        connection.deliver(
          Outbound.replayedFrame(entry.t, scope, entry.d, {
            stream,
            epoch: epochs.get(stream)!,
            offset: entry.offset
          })
        )
      }
      for (const answer of answers) {
        if (answer.heldUpToHead === "live") recovery.sendUpTo(connection, answer.stream, answer.head)
      }
      const sent = yield* Effect.either(
        publisher.send(connection, RecoveryEvent, { ...ids, streams: answers.map((answer) => answer.entry) })
      )
      for (const answer of answers) recovery.release(connection, answer.stream, answer.head)
      if (Either.isLeft(sent)) connection.close("internal_error")
    })

  /** After `ready` (the user stream held since before `register`): replay, verdict, live. */
  const recoverUser = (connection: Connection, recovery: ConnectionRecovery) =>
    Effect.flatMap(answer(userStream(connection.userId) as StreamName, recovery.userSince), (userAnswer) =>
      finish(connection, recovery, [userAnswer], undefined)
    )

  /** Holds the streams a subscribe may recover, before the registry can route them to the connection. */
  const holdSubscribe = (recovery: ConnectionRecovery, guildId: GuildId, channelId: ChannelId) => {
    recovery.hold(channelStream(guildId, channelId))
    recovery.hold(guildStream(guildId))
  }

  /** A refused subscribe replays nothing: whatever was held goes out as live. */
  const releaseSubscribe = (
    connection: Connection,
    recovery: ConnectionRecovery,
    guildId: GuildId,
    channelId: ChannelId
  ) => {
    recovery.release(connection, channelStream(guildId, channelId), -1)
    recovery.release(connection, guildStream(guildId), -1)
  }

  /**
   * After an authorized subscribe's `voice_participant_sync`: the channel stream, and the guild
   * stream when this subscribe made the guild live on the connection (else it is `already_live`).
   */
  const recoverSubscribe = (
    connection: Connection,
    recovery: ConnectionRecovery,
    ids: { readonly guild_id: GuildId; readonly channel_id: ChannelId },
    since: { readonly channel?: StreamPosition; readonly guild?: StreamPosition } | undefined,
    joinedGuild: boolean
  ) =>
    Effect.gen(function* () {
      const channel = channelStream(ids.guild_id, ids.channel_id) as StreamName
      const guild = guildStream(ids.guild_id) as StreamName
      const answers: Array<StreamAnswer> = [yield* answer(channel, since?.channel)]
      if (joinedGuild) answers.push(yield* answer(guild, since?.guild))
      else {
        // Live already through an earlier subscribe in the guild: its frames were never missed (the
        // held ones go out around the `recovery` event like a fresh stream's).
        const now = yield* answer(guild, undefined)
        if (since?.guild !== undefined && now.entry.recovered === undefined)
          metrics.recovery("guild", "recovered")
        answers.push(
          since?.guild === undefined || now.entry.recovered === false
            ? now
            : { ...now, entry: { ...now.entry, recovered: true, replayed: 0, reason: "already_live" } }
        )
      }
      yield* finish(connection, recovery, answers, ids)
    })

  return { recoverUser, holdSubscribe, releaseSubscribe, recoverSubscribe }
}

export type Recovery = ReturnType<typeof make>
