/**
 * The reconnecting gateway connection, for browsers (`WebSocket`) and Node (`ws`, injected).
 *
 * One socket at a time. On every open it re-subscribes each channel of its subscription set; on a
 * close it asks the close-code table whether to reconnect, waits a full-jitter exponential backoff
 * (reset by a successful open) and calls the token provider again, telling it when the server said
 * the token expired (4010). With recovery (default on) it keeps the last position of every stream and
 * hands it back on each reconnect, so the gateway replays what was missed or says per stream that it
 * cannot. This module is the plain-callback API (`make`); `GatewayConnection` wraps
 * it as an Effect API, kept apart so callback users do not bundle Effect's Stream runtime.
 */
import { needsFreshToken, shouldReconnect } from "../protocol/CloseCodes.js"
import type { EventPosition, RecoveryReason } from "../protocol/Recovery.js"
import {
  channelStream,
  formatPosition,
  guildStream,
  parseStream,
  RECOVERY_PARAM,
  RECOVERY_PARAM_VALUE,
  USER_SINCE_PARAM,
  userStream
} from "../protocol/Streams.js"
import type { StreamPosition, StreamTarget } from "../protocol/Streams.js"
import { decodeFrame, FrameDropped } from "./Decode.js"
import type { ClientEvent } from "./Decode.js"
import { makeDispatcher } from "./Dispatch.js"
import type { CompatibilityCounterKey, Handlers } from "./Dispatch.js"
import { COMMAND_PAYLOAD_DECODERS, MAX_EVENT_BYTES, PROTOCOL_VERSION } from "./generated/decoders.js"
import type { Decoded } from "./generated/decoders.js"

export const GATEWAY_PATH = "/gateway/ws"

/**
 * Bounded by default below the gateway's 60 frames / 10 s ingress window, so the re-subscribe burst
 * on open can never trip `ingress_rate_limited` and loop.
 */
export const DEFAULT_MAX_SUBSCRIPTIONS = 50

// ---------------------------------------------------------------------------------------------
// WebSocket seam
// ---------------------------------------------------------------------------------------------

// Method-style signature: parameters are checked bivariantly, so both the DOM `WebSocket` (handlers
// take a DOM `MessageEvent`) and `ws` (its own event classes) satisfy `WebSocketLike`.
type EventHandler<E> = { bivarianceHack(event: E): void }["bivarianceHack"]

/** The part of the WebSocket API the client uses: the browser's `WebSocket` and `ws` both have it. */
export interface WebSocketLike {
  onopen: EventHandler<unknown> | null
  onmessage: EventHandler<{ readonly data: unknown }> | null
  onclose: EventHandler<{ readonly code: number; readonly reason: string }> | null
  onerror: EventHandler<unknown> | null
  send(data: string): void
  close(code?: number, reason?: string): void
}

export type WebSocketConstructor = new (url: string) => WebSocketLike

// ---------------------------------------------------------------------------------------------
// Backoff
// ---------------------------------------------------------------------------------------------

export interface BackoffPolicy {
  /** Base delay; the ceiling doubles before each retry, as the web client's does (retry 1: 2×). */
  readonly initialDelayMs: number
  /** Cap on the ceiling. */
  readonly maxDelayMs: number
  /** Consecutive failed attempts before giving up; reset by a successful open. */
  readonly maxRetries: number
}

export const DEFAULT_BACKOFF: BackoffPolicy = {
  initialDelayMs: 1_000,
  maxDelayMs: 30_000,
  maxRetries: Number.POSITIVE_INFINITY
}

/** Upper bound of the delay before retry `retry` (1-based): `min(max, initial × 2^retry)`. */
export const backoffCeiling = (retry: number, policy: BackoffPolicy): number =>
  Math.min(policy.maxDelayMs, policy.initialDelayMs * 2 ** retry)

/**
 * Full jitter: a uniform delay in `[0, ceiling)`, so clients dropped together by one server restart
 * spread their reconnects instead of arriving in waves.
 */
export const backoffDelay = (retry: number, policy: BackoffPolicy, random: () => number): number => {
  const value = random()
  // A broken random source must not turn into a reconnect storm: NaN counts as the ceiling.
  const unit = Number.isNaN(value) ? 1 - Number.EPSILON : Math.min(Math.max(value, 0), 1 - Number.EPSILON)
  return Math.floor(unit * backoffCeiling(retry, policy))
}

/** Schedules a callback; returns its cancellation. The default uses `setTimeout`. */
export interface Timer {
  readonly schedule: (callback: () => void, delayMs: number) => () => void
}

const systemTimer: Timer = {
  schedule: (callback, delayMs) => {
    const handle = setTimeout(callback, delayMs)
    return () => clearTimeout(handle)
  }
}

// ---------------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------------

export type GatewayClientErrorReason =
  | "invalid_url"
  | "invalid_channel"
  | "invalid_message"
  | "too_many_subscriptions"
  | "no_websocket"
  | "retries_exhausted"
  | "event_buffer_full"

/** A typed client error (`_tag` `GatewayClientError`); a plain `Error`, so the client needs no Effect. */
export class GatewayClientError extends Error {
  readonly _tag = "GatewayClientError"
  override readonly name = "GatewayClientError"
  readonly reason: GatewayClientErrorReason
  readonly detail: string

  constructor(fields: { readonly reason: GatewayClientErrorReason; readonly detail: string }) {
    super(`${fields.reason}: ${fields.detail}`)
    this.reason = fields.reason
    this.detail = fields.detail
  }
}

/** A channel of a guild, in the wire form of the `subscribe` command. Ids in any case. */
export interface ChannelRef {
  readonly guild_id: string
  readonly channel_id: string
}

export interface TokenRequest {
  /** The server closed with `token_expired` (4010): the previous token must not be reused. */
  readonly refresh: boolean
  /** Consecutive failed attempts so far (0 on the first connect and after an open). */
  readonly retry: number
}

export type ConnectionState = "connecting" | "open" | "reconnecting" | "closed"

export interface CloseInfo {
  readonly code: number
  readonly reason: string
  /** Whether the client will reconnect; `delayMs` is then the backoff it waits. */
  readonly reconnect: boolean
  readonly delayMs?: number
}

/**
 * What became of one stream at a (re)connect, from the gateway's `recovery` event. `recovered`:
 * `true` — every missed event was replayed (`replayed` of them, already delivered); `false` — it
 * could not be exact (`reason`): refetch that stream's state (channel messages, guild, user data);
 * absent — a first subscribe, nothing to recover. `no_position` is the client's own reason: the
 * stream was live on an earlier connection but no position of it was ever received.
 */
export interface RecoveryVerdict {
  readonly stream: string
  readonly target: StreamTarget
  /** The position the client continues from. */
  readonly epoch: string
  readonly offset: number
  readonly recovered?: boolean
  readonly replayed?: number
  readonly reason?: RecoveryReason | "no_position"
}

export interface GatewayClientOptions {
  /** The gateway origin (`wss://chat.example.com`, `https:` is mapped to `wss:`) or the full endpoint. */
  readonly url: string | URL
  /** Called before every (re)connect; may return a promise. */
  readonly accessToken: (request: TokenRequest) => string | PromiseLike<string>
  /** Defaults to `globalThis.WebSocket`; pass `WebSocket` from `ws` in Node. */
  readonly WebSocket?: WebSocketConstructor
  /** Initial subscription set. */
  readonly channels?: Iterable<ChannelRef>
  /** Handlers by event type, typed from the manifest. */
  readonly on?: Handlers
  /** Every decoded event, after its handler. */
  readonly onEvent?: (event: ClientEvent) => void
  /** Frames that did not become events (binary frames are ignored silently). */
  readonly onDrop?: (dropped: FrameDropped) => void
  readonly onOpenChange?: (open: boolean) => void
  readonly onClose?: (close: CloseInfo) => void
  /**
   * Missed-event recovery (default `true`): the client opts in (`recovery=1`), keeps the last
   * position of each stream and hands it back on every reconnect. `false`: the original protocol.
   */
  readonly recovery?: boolean
  /** One verdict per stream of every `recovery` event, after its handler (see `RecoveryVerdict`). */
  readonly onRecovery?: (verdict: RecoveryVerdict) => void
  /** A token provider that failed, a socket that could not be created, a handler that threw. */
  readonly onError?: (error: unknown) => void
  readonly backoff?: Partial<BackoffPolicy>
  readonly maxSubscriptions?: number
  readonly maxFrameBytes?: number
  /** Injected for deterministic tests; default `setTimeout`. */
  readonly timer?: Timer
  /** Injected for deterministic tests; default `Math.random`. */
  readonly random?: () => number
}

export interface GatewayClient {
  readonly state: () => ConnectionState
  readonly isOpen: () => boolean
  /** Adds a channel to the subscription set (sent now if open, and on every later open). */
  readonly subscribe: (guildId: string, channelId: string) => void
  /** Removes a channel from the set (sends `unsubscribe` if open). */
  readonly unsubscribe: (guildId: string, channelId: string) => void
  /** Replaces the set: removed channels are unsubscribed, added ones subscribed (deduplicated). */
  readonly setSubscribedChannels: (channels: Iterable<ChannelRef>) => void
  /** The current subscription set, canonical uppercase ids, in insertion order. */
  readonly subscribedChannels: () => ReadonlyArray<ChannelRef>
  /** Sends `message_create`; `false` when not open (messages are not queued). */
  readonly sendMessage: (
    guildId: string,
    channelId: string,
    content: string,
    attachmentIds?: ReadonlyArray<string>
  ) => boolean
  readonly compatibilityCounters: () => ReadonlyMap<CompatibilityCounterKey, number>
  /** The last position held per stream (what the next reconnect hands back). */
  readonly positions: () => ReadonlyMap<string, StreamPosition>
  /** Closes for good (1000 `client_close`); no reconnect. */
  readonly close: () => void
}

/**
 * The endpoint URL with the token in `access_token`, as the gateway expects it; with `recovery`,
 * also `recovery=1` and, when a position of the user stream is held, `user_since=<epoch>:<offset>`.
 */
export const gatewayUrl = (
  base: string | URL,
  token: string,
  recovery?: { readonly userSince?: StreamPosition | undefined }
): string => {
  const url = new URL(base)
  if (url.protocol === "http:") url.protocol = "ws:"
  else if (url.protocol === "https:") url.protocol = "wss:"
  if (url.pathname === "/" || url.pathname === "") url.pathname = GATEWAY_PATH
  url.searchParams.set("access_token", token)
  if (recovery !== undefined) {
    url.searchParams.set(RECOVERY_PARAM, RECOVERY_PARAM_VALUE)
    if (recovery.userSince !== undefined)
      url.searchParams.set(USER_SINCE_PARAM, formatPosition(recovery.userSince))
    else url.searchParams.delete(USER_SINCE_PARAM)
  }
  return url.toString()
}

/** Whether `next` is past `held`: another epoch, or a greater offset in the same one. */
const isAhead = (next: StreamPosition, held: StreamPosition | undefined): boolean =>
  held === undefined || next.epoch !== held.epoch || next.offset > held.offset

/** The decoded command, or the typed error: the same decoders (strict) the server's verdict follows. */
const commandOrThrow = <A>(decoded: Decoded<A>, reason: "invalid_channel" | "invalid_message"): A => {
  if (decoded.ok) return decoded.value
  throw new GatewayClientError({ reason, detail: decoded.error })
}

const channelKey = (channel: ChannelRef): string => `${channel.guild_id}:${channel.channel_id}`

/** Canonical (uppercase) channel, or a typed error for ids the server would reject (and close for). */
const canonicalChannel = (channel: ChannelRef): ChannelRef =>
  commandOrThrow(
    COMMAND_PAYLOAD_DECODERS.subscribe({ guild_id: channel.guild_id, channel_id: channel.channel_id }),
    "invalid_channel"
  )

/** Creates a client and starts connecting. */
export const make = (options: GatewayClientOptions): GatewayClient => {
  const WebSocketImpl =
    options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket ?? undefined
  if (WebSocketImpl === undefined) {
    throw new GatewayClientError({
      reason: "no_websocket",
      detail: "no global WebSocket: pass the `WebSocket` option (e.g. from `ws`)"
    })
  }
  try {
    // Checked once here: a URL that cannot be built would otherwise fail every reconnect forever.
    gatewayUrl(options.url, "")
  } catch (error) {
    throw new GatewayClientError({ reason: "invalid_url", detail: String(error) })
  }
  const policy: BackoffPolicy = { ...DEFAULT_BACKOFF, ...options.backoff }
  const timer = options.timer ?? systemTimer
  const random = options.random ?? Math.random
  const maxSubscriptions = options.maxSubscriptions ?? DEFAULT_MAX_SUBSCRIPTIONS
  const maxBytes = options.maxFrameBytes ?? MAX_EVENT_BYTES
  const reportError = options.onError ?? ((error: unknown) => console.error("[filament-gateway]", error))
  const dispatcher = makeDispatcher(options.on ?? {})

  const channels = new Map<string, ChannelRef>()
  const recovery = options.recovery ?? true
  /** The last position per stream, from each event's `pos` and each `recovery` event. */
  const positions = new Map<string, StreamPosition>()
  /** Channels of the set whose `subscribe` was sent on some connection: a reconnect recovers them. */
  const subscribedOnce = new Set<string>()
  /** The user of the last `ready`: its stream is recovered on the next connect. */
  let userId: string | undefined
  /**
   * Streams live on an earlier connection that this connection is to recover: a `recovery` entry
   * for one without a verdict means the gateway got no position for it (`no_position`).
   */
  let awaitingVerdict = new Set<string>()
  let state: ConnectionState = "connecting"
  let socket: WebSocketLike | undefined
  let socketOpen = false
  let retry = 0
  let refreshToken = false
  let cancelReconnect: (() => void) | undefined

  const setChannels = (next: Map<string, ChannelRef>): void => {
    if (next.size > maxSubscriptions) {
      throw new GatewayClientError({
        reason: "too_many_subscriptions",
        detail: `${next.size} channels, over the limit of ${maxSubscriptions}`
      })
    }
    for (const [key, channel] of channels) {
      if (next.has(key)) continue
      send("unsubscribe", channel)
      forget(key, channel, next)
    }
    for (const [key, channel] of next)
      if (!channels.has(key) && send("subscribe", channel)) subscribedOnce.add(key)
    channels.clear()
    for (const [key, channel] of next) channels.set(key, channel)
  }

  /** A channel left the set: its positions (and its guild's, when it was the last there) go. */
  const forget = (key: string, channel: ChannelRef, remaining: ReadonlyMap<string, ChannelRef>): void => {
    subscribedOnce.delete(key)
    positions.delete(channelStream(channel.guild_id, channel.channel_id))
    if (![...remaining.values()].some((other) => other.guild_id === channel.guild_id))
      positions.delete(guildStream(channel.guild_id))
  }

  /** Positions are held only for the streams of the subscription set and the user (bounded by it). */
  const isTracked = (stream: string): boolean => {
    const target = parseStream(stream)
    switch (target?.scope) {
      case "channel":
        return channels.has(channelKey(target))
      case "guild":
        return [...channels.values()].some((channel) => channel.guild_id === target.guild_id)
      case "user":
        return target.user_id === userId
      default:
        return false
    }
  }

  /** Adopts an event's position; `false` when the client already has it (a duplicate). */
  const advance = (pos: EventPosition): boolean => {
    const held = positions.get(pos.stream)
    if (!isAhead(pos, held)) return false
    if (isTracked(pos.stream)) positions.set(pos.stream, { epoch: pos.epoch, offset: pos.offset })
    return true
  }

  /** Adopts the positions of a `recovery` event and turns its entries into verdicts. */
  const verdictsOf = (event: ClientEvent & { readonly type: "recovery" }): Array<RecoveryVerdict> =>
    event.payload.streams.map((entry) => {
      const position = { epoch: entry.epoch, offset: entry.offset }
      // Not recovered: the gateway's position replaces ours, even a bogus one ahead of it.
      if (
        isTracked(entry.stream) &&
        (entry.recovered === false || isAhead(position, positions.get(entry.stream)))
      )
        positions.set(entry.stream, position)
      const awaited = awaitingVerdict.delete(entry.stream)
      const base = { stream: entry.stream, target: parseStream(entry.stream)!, ...position }
      if (entry.recovered === undefined)
        return awaited ? { ...base, recovered: false, reason: "no_position" as const } : base
      return {
        ...base,
        recovered: entry.recovered,
        ...(entry.replayed === undefined ? {} : { replayed: entry.replayed }),
        ...(entry.reason === undefined ? {} : { reason: entry.reason })
      }
    })

  /**
   * The `subscribe` of a channel on open: after a reconnect, with `since` — the channel's position
   * when it was subscribed before, the guild's with the guild's first subscribe when the guild was.
   */
  const resubscribe = (
    key: string,
    channel: ChannelRef,
    liveGuilds: ReadonlySet<string>,
    guildsSent: Set<string>
  ): void => {
    const since: { channel?: StreamPosition; guild?: StreamPosition } = {}
    const expect = (stream: string, assign: (position: StreamPosition) => void) => {
      awaitingVerdict.add(stream)
      const held = positions.get(stream)
      if (held !== undefined) assign(held)
    }
    if (recovery && subscribedOnce.has(key))
      expect(channelStream(channel.guild_id, channel.channel_id), (held) => (since.channel = held))
    if (recovery && liveGuilds.has(channel.guild_id) && !guildsSent.has(channel.guild_id))
      expect(guildStream(channel.guild_id), (held) => (since.guild = held))
    guildsSent.add(channel.guild_id)
    const sent = send(
      "subscribe",
      since.channel === undefined && since.guild === undefined ? channel : { ...channel, since }
    )
    if (sent) subscribedOnce.add(key)
  }

  const send = (type: string, payload: object): boolean => {
    if (socket === undefined || !socketOpen) return false
    socket.send(JSON.stringify({ v: PROTOCOL_VERSION, t: type, d: payload }))
    return true
  }

  const safely = (callback: () => void): void => {
    try {
      callback()
    } catch (error) {
      reportError(error)
    }
  }

  const notifyClose = (close: CloseInfo): void => {
    if (options.onClose !== undefined) safely(() => options.onClose!(close))
  }

  const onFrame = (data: unknown): void => {
    if (typeof data !== "string") return
    const result = decodeFrame(data, { maxBytes })
    if (result._tag === "Left") {
      if (options.onDrop !== undefined) safely(() => options.onDrop!(result.left))
      return
    }
    const event = result.right
    let verdicts: Array<RecoveryVerdict> = []
    if (recovery) {
      if (event.pos !== undefined && !advance(event.pos)) {
        const detail = `${event.pos.stream} offset ${event.pos.offset} is already held`
        if (options.onDrop !== undefined)
          safely(() =>
            options.onDrop!(new FrameDropped({ reason: "duplicate", eventType: event.type, detail }))
          )
        return
      }
      if (event.type === "ready") {
        if (userId !== undefined && userId !== event.payload.user_id) positions.delete(userStream(userId))
        userId = event.payload.user_id
      } else if (event.type === "recovery") verdicts = verdictsOf(event)
    }
    safely(() => dispatcher.dispatch(event))
    if (options.onEvent !== undefined) safely(() => options.onEvent!(event))
    if (options.onRecovery !== undefined)
      for (const verdict of verdicts) safely(() => options.onRecovery!(verdict))
  }

  const scheduleReconnect = (code: number, reason: string): void => {
    if (!shouldReconnect(code) || retry >= policy.maxRetries) {
      state = "closed"
      notifyClose({ code, reason, reconnect: false })
      return
    }
    if (needsFreshToken(code)) refreshToken = true
    retry++
    const delayMs = backoffDelay(retry, policy, random)
    state = "reconnecting"
    cancelReconnect = timer.schedule(() => {
      cancelReconnect = undefined
      connect()
    }, delayMs)
    notifyClose({ code, reason, reconnect: true, delayMs })
  }

  const openSocket = (token: string): void => {
    let current: WebSocketLike
    try {
      const userSince = userId === undefined ? undefined : positions.get(userStream(userId))
      current = new WebSocketImpl(gatewayUrl(options.url, token, recovery ? { userSince } : undefined))
    } catch (error) {
      reportError(error)
      scheduleReconnect(1006, "socket_error")
      return
    }
    socket = current
    current.onopen = () => {
      if (socket !== current) return
      socketOpen = true
      state = "open"
      retry = 0
      awaitingVerdict = new Set()
      if (recovery && userId !== undefined) awaitingVerdict.add(userStream(userId))
      const liveGuilds = new Set([...subscribedOnce].map((key) => channels.get(key)!.guild_id))
      const guildsSent = new Set<string>()
      for (const [key, channel] of channels) resubscribe(key, channel, liveGuilds, guildsSent)
      if (options.onOpenChange !== undefined) safely(() => options.onOpenChange!(true))
    }
    current.onmessage = (event) => {
      if (socket === current) onFrame(event.data)
    }
    // Every failure ends in `close` (browser and `ws` alike); reconnecting is decided there.
    current.onerror = () => {}
    current.onclose = (event) => {
      if (socket !== current) return
      const wasOpen = socketOpen
      socket = undefined
      socketOpen = false
      if (wasOpen && options.onOpenChange !== undefined) safely(() => options.onOpenChange!(false))
      if (state === "closed") {
        notifyClose({ code: event.code, reason: event.reason, reconnect: false })
        return
      }
      scheduleReconnect(event.code, event.reason)
    }
  }

  const connect = (): void => {
    state = "connecting"
    const request: TokenRequest = { refresh: refreshToken, retry }
    refreshToken = false
    let token: string | PromiseLike<string>
    try {
      token = options.accessToken(request)
    } catch (error) {
      reportError(error)
      scheduleReconnect(1006, "token_unavailable")
      return
    }
    Promise.resolve(token).then(
      (value) => {
        if (state === "connecting") openSocket(value)
      },
      (error: unknown) => {
        if (state !== "connecting") return
        reportError(error)
        // A refresh that failed must be retried as a refresh.
        refreshToken = request.refresh
        scheduleReconnect(1006, "token_unavailable")
      }
    )
  }

  if (options.channels !== undefined) {
    const initial = new Map<string, ChannelRef>()
    for (const channel of options.channels) {
      const canonical = canonicalChannel(channel)
      initial.set(channelKey(canonical), canonical)
    }
    setChannels(initial)
  }
  connect()

  return {
    state: () => state,
    isOpen: () => socketOpen,
    subscribe: (guildId, channelId) => {
      const channel = canonicalChannel({ guild_id: guildId, channel_id: channelId })
      if (channels.has(channelKey(channel))) return
      setChannels(new Map([...channels, [channelKey(channel), channel]]))
    },
    unsubscribe: (guildId, channelId) => {
      const key = channelKey(canonicalChannel({ guild_id: guildId, channel_id: channelId }))
      const next = new Map(channels)
      next.delete(key)
      setChannels(next)
    },
    setSubscribedChannels: (list) => {
      const next = new Map<string, ChannelRef>()
      for (const channel of list) {
        const canonical = canonicalChannel(channel)
        next.set(channelKey(canonical), canonical)
      }
      setChannels(next)
    },
    subscribedChannels: () => [...channels.values()],
    sendMessage: (guildId, channelId, content, attachmentIds) => {
      const message = commandOrThrow(
        COMMAND_PAYLOAD_DECODERS.message_create({
          guild_id: guildId,
          channel_id: channelId,
          content,
          ...(attachmentIds === undefined ? {} : { attachment_ids: attachmentIds })
        }),
        "invalid_message"
      )
      return send("message_create", message)
    },
    compatibilityCounters: dispatcher.compatibilityCounters,
    positions: () => new Map(positions),
    close: () => {
      if (state === "closed") return
      state = "closed"
      cancelReconnect?.()
      cancelReconnect = undefined
      if (socket === undefined) notifyClose({ code: 1000, reason: "client_close", reconnect: false })
      else socket.close(1000, "client_close")
    }
  }
}
