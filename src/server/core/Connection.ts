/**
 * One WebSocket connection: a plain record with its bounded outbox, socket writes, ingress rate
 * window and close. No fiber lives per connection; everything here is synchronous and called from
 * the fanout loop, the `ws` callbacks or the heartbeat sweep.
 */
import { Chunk, MutableQueue } from "effect"
import { closeCodeFor, type CloseReason } from "../../protocol/CloseCodes.js"
import type { Command } from "../../protocol/Commands.js"
import type { Principal } from "../Auth.js"
import type { Frame } from "./Outbound.js"
import type { ConnectionRecovery } from "./Recovery.js"

export type ConnectionId = number

/** What a connection uses of its `ws` WebSocket (narrow, so it can be driven in-process too). */
export interface ConnectionSocket {
  readonly readyState: number
  /** Bytes accepted but not yet handed to the kernel. */
  readonly bufferedAmount: number
  close(code: number, reason: string): void
  ping(): void
  terminate(): void
}

/** What a connection uses of the TCP socket under it: prebuilt frames are written here directly. */
export interface ConnectionTransport {
  readonly writableHighWaterMark: number
  /** How many `cork()` calls are not yet undone by `uncork()`. */
  readonly writableCorked: number
  write(chunk: Buffer): boolean
  cork(): void
  uncork(): void
  on(event: "drain", listener: () => void): unknown
}

const OPEN = 1
const NO_FRAMES: ReadonlyArray<Frame> = []

const uncork = (transport: ConnectionTransport) => transport.uncork()

/**
 * Whatever is written to the transport until the current tick ends goes out in one `writev`: for a
 * burst of command answers and for the handshake with `ready`, never per delivery.
 */
export const corkUntilNextTick = (transport: ConnectionTransport): void => {
  if (transport.writableCorked > 0) return
  transport.cork()
  process.nextTick(uncork, transport)
}

/**
 * `sent`: written to the socket. `queued`: in the outbox, written on drain. `evicted`: the outbox was
 * full, the connection is now closing with 1008. `closed`: the connection was already closing.
 */
export type DeliveryResult = "sent" | "queued" | "evicted" | "closed"

/** Why a connection ended: one of our close reasons, or what the peer / transport did. */
export type DisconnectReason = CloseReason | "connection_closed" | "socket_error"

/**
 * What `ws` refuses itself (before a frame reaches the gateway), by the code of the error it emits,
 * and the reason that close gets: ws closes with a bare code, the gateway gives it this reason and
 * counts the disconnect under it. Any other socket error is `socket_error`.
 */
const WS_ERROR_REASONS: Readonly<Record<string, CloseReason>> = {
  WS_ERR_UNEXPECTED_RSV_1: "protocol_error",
  WS_ERR_UNEXPECTED_RSV_2_3: "protocol_error",
  WS_ERR_INVALID_OPCODE: "protocol_error",
  WS_ERR_EXPECTED_FIN: "protocol_error",
  WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH: "protocol_error",
  WS_ERR_EXPECTED_MASK: "protocol_error",
  WS_ERR_UNEXPECTED_MASK: "protocol_error",
  WS_ERR_INVALID_CLOSE_CODE: "protocol_error",
  // A text frame (or a close reason) that is not UTF-8 is not JSON text: like any other such frame.
  WS_ERR_INVALID_UTF8: "invalid_envelope",
  // ws's maxFragments (16 384 per message) and maxBufferedChunks.
  WS_ERR_TOO_MANY_BUFFERED_PARTS: "too_many_fragments",
  // Over maxPayload (the event cap), or a length header beyond 2^53 - 1, both from the frame header.
  WS_ERR_UNSUPPORTED_MESSAGE_LENGTH: "event_too_large",
  WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH: "event_too_large"
}

/** The disconnect reason of a `ws` socket error. */
export const wsErrorReason = (errorCode: string | undefined): DisconnectReason =>
  (errorCode === undefined ? undefined : WS_ERROR_REASONS[errorCode]) ?? "socket_error"

/** The bare codes ws closes with on those errors (1002, 1007, 1008, 1009), as our reasons. */
const WS_CLOSE_REASONS: Readonly<Record<number, CloseReason>> = {
  1002: "protocol_error",
  1007: "invalid_envelope",
  1008: "too_many_fragments",
  1009: "event_too_large"
}

/** The reason for a close ws starts with a bare `code` (no reason of its own), if it is one of ours. */
export const wsCloseReason = (code: number): CloseReason | undefined => WS_CLOSE_REASONS[code]

export interface ConnectionLimits {
  readonly outboundQueue: number
  readonly socketHighWaterBytes: number
  readonly ingressEventsPerWindow: number
  readonly ingressWindowMillis: number
}

export class Connection {
  /** Allocated on the first frame that has to wait: most connections never need one. */
  private queue: MutableQueue.MutableQueue<Frame> | undefined = undefined
  /** Set once, at the moment the connection is decided to end. */
  disconnectReason: DisconnectReason | undefined = undefined
  /** Heartbeat state, driven by the sweep: when the unanswered ping was sent, if any. */
  pingSentAt: number | undefined = undefined
  lastPingAt: number
  /** Commands awaiting execution, in arrival order (see Ingress); allocated only while there are some. */
  pendingCommands: Array<Command> | undefined = undefined
  /** The command running now; set from the first command of a burst until the queue is empty. */
  runningCommand: Command | undefined = undefined
  /** Gateway `Clock` time (ms) the running command started: the heartbeat sweep times it out. */
  commandStartedAt = 0
  /** In the registry: commands may run and closing must clean the indexes. */
  registered = false
  /**
   * Set on a connection that opted in to missed-event recovery (`recovery=1`): the fanout sends it
   * the positioned frame variant. A legacy connection pays this one field and one check per delivery.
   */
  recovery: ConnectionRecovery | undefined = undefined
  private readonly highWaterBytes: number
  /** Accept times of the frames inside the window, oldest first (at most the limit); lazily made. */
  private rateLog: Array<number> | undefined = undefined

  constructor(
    readonly id: ConnectionId,
    readonly principal: Principal,
    readonly socket: ConnectionSocket,
    readonly transport: ConnectionTransport,
    private readonly limits: ConnectionLimits,
    /** Gateway `Clock` time of the upgrade (ms). */
    readonly connectedAt: number,
    /**
     * Called exactly once, with the reason, when the connection ends (the one cleanup path), with the
     * frames its outbox still held: accepted for this client, never written.
     */
    private readonly onDisconnect: (
      connection: Connection,
      reason: DisconnectReason,
      discarded: ReadonlyArray<Frame>
    ) => void
  ) {
    this.lastPingAt = connectedAt
    // Below the transport's own high-water mark `drain` would never fire for a partly full buffer.
    this.highWaterBytes = Math.max(limits.socketHighWaterBytes, transport.writableHighWaterMark)
    transport.on("drain", () => this.flush())
  }

  /** The bounded outbox (capacity `limits.outboundQueue`). */
  get outbox(): MutableQueue.MutableQueue<Frame> {
    return (this.queue ??= MutableQueue.bounded(this.limits.outboundQueue))
  }

  get userId() {
    return this.principal.userId
  }

  get isOpen(): boolean {
    return this.disconnectReason === undefined
  }

  /** Frames waiting in the outbox (without allocating one). */
  get outboxDepth(): number {
    return this.queue === undefined ? 0 : MutableQueue.length(this.queue)
  }

  /** Bytes accepted by `ws` but not yet handed to the kernel. */
  get bufferedAmount(): number {
    return this.socket.bufferedAmount
  }

  /**
   * Offers a frame: straight to the socket while the outbox is empty and the socket is under its
   * high-water mark, else into the outbox; a full outbox evicts this connection alone (1008).
   */
  deliver(frame: Frame): DeliveryResult {
    // Not OPEN: the peer's close frame arrived and ws has answered it; nothing may follow.
    if (this.disconnectReason !== undefined || this.socket.readyState !== OPEN) return "closed"
    const queue = this.queue
    if (
      (queue === undefined || MutableQueue.isEmpty(queue)) &&
      this.socket.bufferedAmount < this.highWaterBytes
    ) {
      this.write(frame)
      return "sent"
    }
    if (MutableQueue.offer(this.outbox, frame)) return "queued"
    this.close("slow_consumer")
    return "evicted"
  }

  /** Writes queued frames in order while the socket stays under its high-water mark. */
  flush(): void {
    const queue = this.queue
    if (queue === undefined) return
    while (
      this.disconnectReason === undefined &&
      this.socket.readyState === OPEN &&
      this.socket.bufferedAmount < this.highWaterBytes
    ) {
      const frame = MutableQueue.poll(queue, undefined)
      if (frame === undefined) return
      this.write(frame)
    }
  }

  /**
   * Sliding-window log, as the original's: forget accepted frames older than the window (strictly),
   * refuse when `limit` remain, else record this one.
   */
  admitFrame(now: number): boolean {
    const log = this.rateLog
    if (log === undefined) {
      this.rateLog = [now]
      return true
    }
    while (log.length > 0 && now - log[0]! > this.limits.ingressWindowMillis) log.shift()
    if (log.length >= this.limits.ingressEventsPerWindow) return false
    log.push(now)
    return true
  }

  /** Closes with our code and reason. Only the first close of a connection counts. */
  close(reason: CloseReason): boolean {
    // Shutting down: what the outbox holds was accepted for this client, so it goes out ahead of the
    // close frame (the memory is already held; the close grace bounds how long the peer may take).
    const queue = this.queue
    if (queue !== undefined && reason === "going_away" && this.isOpen && this.socket.readyState === OPEN) {
      for (let frame = MutableQueue.poll(queue, undefined); frame !== undefined;) {
        this.write(frame)
        frame = MutableQueue.poll(queue, undefined)
      }
    }
    if (!this.markDisconnected(reason)) return false
    const { code } = closeCodeFor(reason)
    this.socket.close(code, reason)
    return true
  }

  /** Records an end the peer or the transport caused (the socket is already closing). */
  closedByPeer(reason: DisconnectReason): boolean {
    return this.markDisconnected(reason)
  }

  /** Sends a heartbeat ping; the sweep expects a pong before the timeout. */
  ping(now: number): void {
    this.pingSentAt = now
    this.lastPingAt = now
    // ws throws when not OPEN (the peer's close may be in flight); the pong deadline still applies.
    if (this.socket.readyState === OPEN) this.socket.ping()
  }

  /** Ends the connection without a close handshake (shutdown grace exhausted). */
  terminate(): void {
    this.markDisconnected("going_away")
    this.socket.terminate()
  }

  private markDisconnected(reason: DisconnectReason): boolean {
    if (this.disconnectReason !== undefined) return false
    this.disconnectReason = reason
    // Whatever was queued will never be written: release it now (not when the socket finally dies)
    // and report it, so the loss is counted.
    let discarded: ReadonlyArray<Frame> = NO_FRAMES
    if (this.queue !== undefined && !MutableQueue.isEmpty(this.queue)) {
      discarded = MutableQueue.pollUpTo(this.queue, Number.POSITIVE_INFINITY).pipe(Chunk.toReadonlyArray)
    }
    this.onDisconnect(this, reason, discarded)
    return true
  }

  /**
   * The frame is complete and ws writes only complete frames (no compression), so writing the
   * shared bytes to the transport cannot interleave with ws's own pings and close frames.
   */
  private write(frame: Frame): void {
    this.transport.write(frame.wire)
  }
}
