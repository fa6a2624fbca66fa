/**
 * A load-generator WebSocket client over `node:net` that costs the generator as little as possible
 * per delivery, so that on a small machine the servers, not their clients, are what a run measures.
 *
 * A `ws` client costs its process about what a server spends to send the frame (a stream `data`
 * event, a Receiver pass and a `message` event per frame). Here every socket reads into one shared
 * buffer (`onread`: no allocation, no stream machinery), frames are walked in place, and a read that
 * holds several frames is handled in one callback. Only what a bench client needs: the handshake,
 * masked text frames out, unfragmented text/binary/ping/close frames in; anything else closes the
 * socket with an error.
 */
import { randomBytes } from "node:crypto"
import * as Net from "node:net"
import { nowUs } from "./Workload.js"

export interface LeanHandlers {
  /** One message's payload, a view valid only during the call; `receivedUs` = its read's time. */
  readonly onMessage: (payload: Buffer, receivedUs: number) => void
  /** The socket is gone: the server's close code and reason, or 1006 and the error. */
  readonly onClose: (code: number, reason: string) => void
}

export interface LeanSocket {
  /** Sends one masked text frame. */
  readonly send: (text: string) => void
  readonly destroy: () => void
}

/** Every socket's reads land here; a callback consumes its bytes before the next read can happen. */
const READ_BUFFER = Buffer.allocUnsafe(256 * 1024)
const HEADER_END = Buffer.from("\r\n\r\n")

const maskedFrame = (opcode: number, payload: Buffer): Buffer => {
  const extended = payload.length < 126 ? 0 : payload.length < 65_536 ? 2 : 8
  const frame = Buffer.allocUnsafe(2 + extended + 4 + payload.length)
  frame[0] = 0x80 | opcode
  if (extended === 0) frame[1] = 0x80 | payload.length
  else if (extended === 2) {
    frame[1] = 0x80 | 126
    frame.writeUInt16BE(payload.length, 2)
  } else {
    frame[1] = 0x80 | 127
    frame.writeBigUInt64BE(BigInt(payload.length), 2)
  }
  const mask = randomBytes(4)
  const at = 2 + extended
  mask.copy(frame, at)
  for (let i = 0; i < payload.length; i++) frame[at + 4 + i] = payload[i]! ^ mask[i & 3]!
  return frame
}

/**
 * Opens `ws://host:port<path>`; resolves once the server answered `101` (frames that arrived with
 * the answer are delivered right after). Rejects on any other answer, an error or `timeoutMs`.
 */
export const connect = (
  options: {
    readonly host: string
    readonly port: number
    readonly path: string
    readonly timeoutMs: number
    /** Source address of the socket (a loopback alias spreads ephemeral ports). */
    readonly localAddress?: string
  },
  handlers: LeanHandlers
): Promise<LeanSocket> =>
  new Promise((resolve, reject) => {
    // Bytes of an unfinished frame (or of the handshake answer) carried into the next read.
    let pending: Buffer | undefined
    let upgraded = false
    let closed = false
    let closeCode = 1006
    let closeReason = ""

    const fail = (reason: string) => {
      closeReason = reason
      socket.destroy()
    }

    /** Walks the complete frames of `data`; returns where the first incomplete one starts. */
    const frames = (data: Buffer, receivedUs: number): number => {
      let at = 0
      while (data.length - at >= 2) {
        const head = data[at]!
        const opcode = head & 0x0f
        let length = data[at + 1]! & 0x7f
        let start = at + 2
        if (length === 126) {
          if (data.length - at < 4) break
          length = data.readUInt16BE(at + 2)
          start = at + 4
        } else if (length === 127) {
          if (data.length - at < 10) break
          length = Number(data.readBigUInt64BE(at + 2))
          start = at + 10
        }
        if (data.length - start < length) break
        const end = start + length
        if ((head & 0x80) === 0 || opcode === 0) {
          fail("fragmented frames are not supported")
          return data.length
        }
        if (opcode === 1 || opcode === 2) handlers.onMessage(data.subarray(start, end), receivedUs)
        else if (opcode === 9) socket.write(maskedFrame(10, Buffer.from(data.subarray(start, end))))
        else if (opcode === 8) {
          closeCode = length >= 2 ? data.readUInt16BE(start) : 1005
          closeReason = data.toString("utf8", start + 2, end)
          socket.end()
          return data.length
        } else if (opcode !== 10) {
          fail(`unexpected opcode ${opcode}`)
          return data.length
        }
        at = end
      }
      return at
    }

    const onRead = (bytes: number, buffer: Uint8Array) => {
      const receivedUs = nowUs()
      const read = Buffer.from(buffer.buffer, buffer.byteOffset, bytes)
      let data = pending === undefined ? read : Buffer.concat([pending, read])
      pending = undefined
      if (!upgraded) {
        const headerEnd = data.indexOf(HEADER_END)
        if (headerEnd < 0) {
          pending = Buffer.from(data)
          if (pending.length > 16_384) fail("handshake answer too large")
          return
        }
        const status = data.toString("latin1", 0, data.indexOf("\r\n"))
        if (!status.startsWith("HTTP/1.1 101")) {
          fail(status)
          return
        }
        upgraded = true
        clearTimeout(timer)
        resolve({
          send: (text) => socket.write(maskedFrame(1, Buffer.from(text))),
          destroy: () => socket.destroy()
        })
        data = data.subarray(headerEnd + HEADER_END.length)
      }
      const consumed = frames(data, receivedUs)
      // Copied: `data` may be the shared read buffer, which the next socket's read overwrites.
      if (consumed < data.length) pending = Buffer.from(data.subarray(consumed))
    }

    const socket = Net.connect({
      host: options.host,
      port: options.port,
      ...(options.localAddress === undefined ? {} : { localAddress: options.localAddress }),
      noDelay: true,
      onread: {
        buffer: READ_BUFFER,
        callback: (bytes, buffer) => {
          onRead(bytes, buffer)
          return true
        }
      }
    })
    const timer = setTimeout(() => fail("handshake timeout"), options.timeoutMs)
    socket.on("connect", () => {
      const key = randomBytes(16).toString("base64")
      socket.write(
        `GET ${options.path} HTTP/1.1\r\nHost: ${options.host}:${options.port}\r\nUpgrade: websocket\r\n` +
          `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`
      )
    })
    socket.on("error", (error) => {
      if (closeReason === "") closeReason = error.message
    })
    socket.on("close", () => {
      if (closed) return
      closed = true
      clearTimeout(timer)
      if (!upgraded) reject(new Error(`no upgrade: ${closeReason || "connection closed"}`))
      else handlers.onClose(closeCode, closeReason)
    })
  })
