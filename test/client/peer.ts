/**
 * A minimal network peer for client tests: a real `ws` server on 127.0.0.1 port 0 that records the
 * access token, the query and every frame of each connection, can send frames and close with a code, and can
 * refuse upgrades (401) to make connection attempts fail before open.
 * It stands in for the network, not for the product under test.
 */
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { WebSocketServer } from "ws"
import type { WebSocket } from "ws"
import { DEADLINE_MS, within } from "../deadline.js"

export interface PeerConnection {
  readonly token: string | null
  /** The upgrade request's query parameters. */
  readonly query: URLSearchParams
  readonly socket: WebSocket
  /** Parsed text frames received from the client, in order. */
  readonly frames: Array<unknown>
  closed?: { readonly code: number; readonly reason: string }
  readonly send: (frame: unknown) => void
  readonly close: (code: number, reason: string) => void
}

export interface TestPeer {
  readonly url: string
  readonly connections: Array<PeerConnection>
  /** Upgrade attempts refused while `refuse` was set. */
  refused: number
  refuse: boolean
  /** Resolves when `condition` holds, re-checked on every peer event; rejects after `timeoutMs`. */
  /** Re-checks pending `waitFor` conditions; tests call it from client callbacks. */
  readonly notify: () => void
  readonly waitFor: <A>(
    describe: string,
    condition: () => A | undefined | false,
    timeoutMs?: number
  ) => Promise<A>
  readonly stop: () => Promise<void>
}

export const startPeer = async (): Promise<TestPeer> => {
  const listeners = new Set<() => void>()
  const notify = () => {
    for (const listener of [...listeners]) listener()
  }
  const server = createServer()
  const peer: TestPeer = {
    url: "",
    connections: [],
    refused: 0,
    refuse: false,
    notify,
    waitFor: <A>(describe: string, condition: () => A | false | undefined, timeoutMs = DEADLINE_MS) => {
      let check = () => {}
      return within(
        describe,
        new Promise<A>((resolve) => {
          check = () => {
            const value = condition()
            if (value === undefined || value === false) return
            resolve(value)
          }
          listeners.add(check)
          check()
        }),
        timeoutMs
      ).finally(() => listeners.delete(check))
    },
    stop: async () => {
      for (const client of wss.clients) client.terminate()
      await new Promise<void>((resolve) => wss.close(() => resolve()))
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
  const wss = new WebSocketServer({
    server,
    path: "/gateway/ws",
    verifyClient: (_info, callback) => {
      if (!peer.refuse) return callback(true)
      peer.refused++
      callback(false, 401)
      notify()
    }
  })
  wss.on("connection", (socket, request) => {
    const query = new URL(request.url ?? "/", "http://peer").searchParams
    const connection: PeerConnection = {
      token: query.get("access_token"),
      query,
      socket,
      frames: [],
      send: (frame) => socket.send(typeof frame === "string" ? frame : JSON.stringify(frame)),
      close: (code, reason) => socket.close(code, reason)
    }
    socket.on("message", (data, isBinary) => {
      connection.frames.push(isBinary ? data : JSON.parse(data.toString()))
      notify()
    })
    socket.on("close", (code, reason) => {
      connection.closed = { code, reason: reason.toString() }
      notify()
    })
    peer.connections.push(connection)
    notify()
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const { port } = server.address() as AddressInfo
  return Object.assign(peer, { url: `ws://127.0.0.1:${port}` })
}

/** Runs `body` against a fresh peer, stopped afterwards whatever happens. */
export const withPeer = async (body: (peer: TestPeer) => Promise<void>) => {
  const peer = await startPeer()
  try {
    await body(peer)
  } finally {
    await peer.stop()
  }
}
