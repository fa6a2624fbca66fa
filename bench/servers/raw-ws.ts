/**
 * The baseline every ratio is against: a hand-written raw `ws` broadcast loop speaking just enough of
 * the gateway protocol for the same load generator (`ready` on open, `subscribe` -> `subscribed`).
 * Registry `Map<"guild:channel", Set<WebSocket>>`; per event one `JSON.stringify`, one
 * `Buffer.from`, then a synchronous `ws.send` loop. No validation, no limits, no metrics: the
 * practical ceiling of a Node process. The runner forces ws' pure-JS paths here and in the gateway.
 */
import { WebSocketServer, type WebSocket } from "ws"
import { AUTHOR, HOT_CHANNEL, HOT_GUILD, messageSnapshot } from "../Workload.js"
import { startControl } from "./Control.js"

const MAX_FRAME_BYTES = 65_536
const rooms = new Map<string, Set<WebSocket>>()
const join = (room: string, socket: WebSocket) => {
  let members = rooms.get(room)
  if (members === undefined) rooms.set(room, (members = new Set()))
  members.add(socket)
}
const leave = (room: string, socket: WebSocket) => {
  const members = rooms.get(room)
  if (members !== undefined && members.delete(socket) && members.size === 0) rooms.delete(room)
}

let connections = 0
const wss = new WebSocketServer({
  host: "127.0.0.1",
  port: 0,
  path: "/gateway/ws",
  backlog: 4096,
  maxPayload: MAX_FRAME_BYTES,
  perMessageDeflate: false,
  clientTracking: false
})
wss.on("connection", (socket) => {
  connections++
  const mine: Array<string> = []
  socket.send(JSON.stringify({ v: 1, t: "ready", d: { user_id: AUTHOR } }))
  socket.on("message", (data) => {
    try {
      const frame = JSON.parse(String(data)) as {
        t?: unknown
        d?: { guild_id?: unknown; channel_id?: unknown }
      }
      if (frame.t !== "subscribe" || typeof frame.d?.guild_id !== "string") return
      const room = `${frame.d.guild_id}:${String(frame.d.channel_id)}`
      join(room, socket)
      mine.push(room)
      socket.send(JSON.stringify({ v: 1, t: "subscribed", d: frame.d }))
    } catch {
      socket.close(4001, "invalid_envelope")
    }
  })
  socket.on("error", () => {})
  socket.on("close", () => {
    connections--
    for (const room of mine) leave(room, socket)
  })
})

const HOT_ROOM = `${HOT_GUILD}:${HOT_CHANNEL}`
const TEXT = { binary: false }
wss.on("listening", () => {
  const address = wss.address()
  startControl({
    name: "raw-ws",
    wsPort: typeof address === "object" && address !== null ? address.port : -1,
    publish: (seq) => {
      const members = rooms.get(HOT_ROOM)
      if (members === undefined) return
      const frame = Buffer.from(JSON.stringify({ v: 1, t: "message_create", d: messageSnapshot(seq) }))
      for (const socket of members) socket.send(frame, TEXT)
    },
    info: () => ({ connections, rooms: rooms.size })
  })
})
