/**
 * Adversarial helpers: raw TCP peers that speak (or trickle, or withhold) HTTP or WebSocket, each
 * bounded by a deadline (the waits for a server-side condition are in `test/deadline.ts`).
 */
import { connect, type Socket } from "node:net"
import { Effect } from "effect"
import { DEADLINE_MS } from "../deadline.js"

export interface RawAnswer {
  /** HTTP status of the answer; 0 when the server closed without answering. */
  readonly status: number
  readonly head: string
  readonly body: string
  /** Real milliseconds from connect to the server closing the socket. */
  readonly elapsedMs: number
}

/**
 * Opens a TCP connection, lets `drive` write to it (possibly slowly, possibly nothing), and resolves
 * when the server closes it, with whatever the server answered.
 */
export const rawExchange = (
  port: number,
  drive: (socket: Socket) => void | (() => void),
  deadlineMs = DEADLINE_MS
): Effect.Effect<RawAnswer> =>
  Effect.promise(
    () =>
      new Promise<RawAnswer>((resolve, reject) => {
        const started = performance.now()
        const chunks: Array<Buffer> = []
        let stop: void | (() => void)
        const socket = connect(port, "127.0.0.1", () => {
          stop = drive(socket)
        })
        const timer = setTimeout(() => {
          stop?.()
          socket.destroy()
          reject(new Error(`deadline: server did not close the socket within ${deadlineMs} ms`))
        }, deadlineMs)
        socket.on("data", (chunk) => chunks.push(chunk))
        socket.on("error", () => undefined)
        socket.on("close", () => {
          clearTimeout(timer)
          stop?.()
          const text = Buffer.concat(chunks).toString("utf8")
          const [head = "", body = ""] = text.split("\r\n\r\n", 2)
          const status = /^HTTP\/1\.1 (\d{3})/.exec(head)
          resolve({
            status: status === null ? 0 : Number(status[1]),
            head,
            body,
            elapsedMs: performance.now() - started
          })
        })
      })
  )

/** Writes `pieces` one every `everyMs` while the socket is writable (a slowloris peer). */
export const trickle =
  (first: string, piece: string, everyMs: number) =>
  (socket: Socket): (() => void) => {
    socket.write(first)
    const interval = setInterval(() => {
      if (socket.writable) socket.write(piece)
    }, everyMs)
    return () => clearInterval(interval)
  }

/** Sum of every series of a counter family in a `/metrics` text. */
export const familySum = (text: string, name: string): number => {
  let sum = 0
  for (const line of text.split("\n")) {
    if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) sum += Number(line.split(" ").pop())
  }
  return sum
}

/** One client frame, built by hand: any opcode, RSV bits, mask or length header, valid or not. */
export interface RawFrame {
  readonly opcode: number
  readonly payload?: Uint8Array
  /** FIN bit; default set. */
  readonly fin?: boolean
  /** RSV1..RSV3 as the 3-bit value; default 0. */
  readonly rsv?: number
  /** Masked as a client must; default true. */
  readonly masked?: boolean
  /** The length the header claims (64-bit form), instead of the payload's own. */
  readonly claimedLength?: bigint
}

/** The wire bytes of `frame` (RFC 6455 §5.2), masked with a fixed key when `masked`. */
export const encodeFrame = (frame: RawFrame): Buffer => {
  const payload = Buffer.from(frame.payload ?? new Uint8Array(0))
  const masked = frame.masked ?? true
  const first = ((frame.fin ?? true) ? 0x80 : 0) | ((frame.rsv ?? 0) << 4) | frame.opcode
  const length = frame.claimedLength ?? BigInt(payload.length)
  let header: Buffer
  if (frame.claimedLength === undefined && length < 126n) header = Buffer.from([first, Number(length)])
  else if (frame.claimedLength === undefined && length < 65_536n) {
    header = Buffer.alloc(4)
    header.writeUInt16BE(Number(length), 2)
    header[1] = 126
  } else {
    header = Buffer.alloc(10)
    header.writeBigUInt64BE(length, 2)
    header[1] = 127
  }
  header[0] = first
  if (!masked) return Buffer.concat([header, payload])
  header[1]! |= 0x80
  const key = Buffer.from([0x37, 0xfa, 0x21, 0x3d])
  const body = Buffer.from(payload.map((byte, i) => byte ^ key[i % 4]!))
  return Buffer.concat([header, key, body])
}

/** What a raw WebSocket peer saw: the server's text frames and its close frame (if any). */
export interface RawSession {
  readonly texts: ReadonlyArray<string>
  /** The code and reason of the server's close frame; undefined when the socket ended without one. */
  readonly close: { readonly code: number; readonly reason: string } | undefined
}

/**
 * A WebSocket client on a raw TCP socket: the upgrade with `token`, then, once the server's first
 * text frame (`ready`) arrived, `frames` written as given; resolves when the server closes the TCP
 * socket, with every server frame parsed.
 */
export const rawWebSocket = (
  port: number,
  token: string,
  frames: ReadonlyArray<Buffer>,
  deadlineMs = DEADLINE_MS
): Effect.Effect<RawSession> =>
  Effect.promise(
    () =>
      new Promise<RawSession>((resolve, reject) => {
        let buffer = Buffer.alloc(0)
        let upgraded = false
        let sent = false
        const texts: Array<string> = []
        let close: RawSession["close"]
        const socket = connect(port, "127.0.0.1", () => {
          socket.write(
            `GET /gateway/ws?access_token=${encodeURIComponent(token)} HTTP/1.1\r\n` +
              "Host: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
          )
        })
        const timer = setTimeout(() => {
          socket.destroy()
          reject(new Error(`deadline: server did not close the socket within ${deadlineMs} ms`))
        }, deadlineMs)
        const parse = () => {
          if (!upgraded) {
            const end = buffer.indexOf("\r\n\r\n")
            if (end < 0) return
            const head = buffer.subarray(0, end).toString("latin1")
            if (!head.startsWith("HTTP/1.1 101")) return reject(new Error(`no upgrade: ${head}`))
            upgraded = true
            buffer = buffer.subarray(end + 4)
          }
          // Server frames are unmasked and (here) never over 64 KiB.
          while (buffer.length >= 2) {
            const short = buffer[1]! & 0x7f
            const offset = short === 126 ? 4 : 2
            if (buffer.length < offset) return
            const length = short === 126 ? buffer.readUInt16BE(2) : short
            if (buffer.length < offset + length) return
            const opcode = buffer[0]! & 0x0f
            const payload = buffer.subarray(offset, offset + length)
            buffer = buffer.subarray(offset + length)
            if (opcode === 0x1) texts.push(payload.toString("utf8"))
            if (opcode === 0x8) {
              close = {
                code: payload.length >= 2 ? payload.readUInt16BE(0) : 1005,
                reason: payload.subarray(2).toString("utf8")
              }
              // The close handshake ends with this side's FIN (no close frame: it may be mid-message).
              socket.end()
            }
          }
          if (!sent && texts.length > 0) {
            sent = true
            for (const frame of frames) if (socket.writable) socket.write(frame)
          }
        }
        socket.on("data", (chunk: Buffer) => {
          buffer = Buffer.concat([buffer, chunk])
          parse()
        })
        socket.on("error", () => undefined)
        socket.on("close", () => {
          clearTimeout(timer)
          resolve({ texts, close })
        })
      })
  )
