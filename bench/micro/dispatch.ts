/**
 * In-process dispatch, after the original's fanout snapshot (reference §8.7): L listeners (512)
 * × K iterations (128) on the channel, guild and user paths, "enqueue only", ns per dispatch =
 * total / (L × K).
 *
 * Everything is the real gateway in this process: `Gateway.layerDefault` + the HTTP server on port
 * 0, L real `ws` clients authenticated with HS256 tokens of one user (the user path's 512
 * connections of one user, as in the original), each subscribed over the wire to the hot channel of
 * guild A (channel path) and to its own channel of guild B (guild path: 512 connections, one
 * distinct channel each). Events go through the public `Gateway.publish` / `publishToUsers`, so a
 * dispatch includes the per-broadcast encode, the index lookup, the loop and the metrics.
 *
 * "Enqueue only": before a measured round every connection's outbox holds one frame, so each
 * delivery takes the outbox branch of `Connection.deliver` (the socket is not written); the outbox
 * capacity is K + 4 as in the original, so nothing is dropped. Reported: the median of 15 rounds. Every round asserts that each
 * publish reached all L connections and that each outbox then holds exactly K + 1 frames.
 *
 * usage: node --expose-gc --import tsx bench/micro/dispatch.ts [--listeners 512] [--iterations 128]
 *        [--rounds 15] [--out file.json]
 */
import { writeFileSync } from "node:fs"
import { Effect, Either, Layer, ManagedRuntime, MutableQueue, Redacted } from "effect"
import WebSocket from "ws"
import type { EventDefinition, PayloadOf } from "../../src/protocol/EventDefinition.js"
import { Ready } from "../../src/protocol/events/connection.js"
import { FriendRemove } from "../../src/protocol/events/friend.js"
import { MessageDelete } from "../../src/protocol/events/message.js"
import { PresenceUpdate } from "../../src/protocol/events/presence.js"
import * as Auth from "../../src/server/Auth.js"
import * as Config from "../../src/server/Config.js"
import type { Connection } from "../../src/server/Connection.js"
import * as Gateway from "../../src/server/Gateway.js"
import * as Http from "../../src/server/Http.js"
import * as Outbound from "../../src/server/Outbound.js"
import { SubscriptionRegistry } from "../../src/server/Registry.js"
import type { UserId } from "../../src/protocol/Ids.js"
import { benchUlid, subscribeFrame } from "../Workload.js"

const argValue = (name: string): string | undefined => {
  const at = process.argv.indexOf(`--${name}`)
  return at < 0 ? undefined : process.argv[at + 1]
}
const LISTENERS = Number(argValue("listeners") ?? 512)
const ITERATIONS = Number(argValue("iterations") ?? 128)
const ROUNDS = Number(argValue("rounds") ?? 15)
const SECRET = "bench-only-jwt-secret-0123456789abcdef"

const USER = benchUlid("user", 1)
const GUILD_A = benchUlid("guild", 100)
const HOT_CHANNEL = benchUlid("channel", 100)
const GUILD_B = benchUlid("guild", 101)
const channelOfB = (i: number) => benchUlid("channel", 1000 + i)

const gc = () => (globalThis as { gc?: () => void }).gc?.()

// Cast helper: bench ids are canonical ULIDs; brands exist only at compile time.
const typed = <E extends EventDefinition>(_event: E, payload: Record<string, unknown>) =>
  payload as unknown as PayloadOf<E>

const GatewayLive = Http.layer.pipe(
  Layer.provideMerge(Gateway.layerDefault),
  Layer.provideMerge(
    Config.layerWith({
      host: "127.0.0.1",
      port: 0,
      jwtSecret: Redacted.make(SECRET),
      outboundQueue: ITERATIONS + 4,
      maxConnectionsPerUser: LISTENERS
    })
  )
)

const connectAll = async (port: number, token: string): Promise<Array<WebSocket>> => {
  const open = (i: number) =>
    new Promise<WebSocket>((resolve, reject) => {
      const socket = new WebSocket(`ws://127.0.0.1:${port}/gateway/ws?access_token=${token}`, {
        perMessageDeflate: false
      })
      let acks = 0
      socket.on("message", (data: Buffer) => {
        if ((JSON.parse(String(data)) as { t: string }).t === "subscribed" && ++acks === 2) resolve(socket)
      })
      socket.on("error", reject)
      socket.once("open", () => {
        socket.send(subscribeFrame({ guild_id: GUILD_A, channel_id: HOT_CHANNEL }))
        socket.send(subscribeFrame({ guild_id: GUILD_B, channel_id: channelOfB(i) }))
      })
      socket.once("close", (code) => reject(new Error(`client ${i} closed with ${code}`)))
    })
  const sockets: Array<WebSocket> = []
  for (let start = 0; start < LISTENERS; start += 100) {
    const batch = Array.from({ length: Math.min(100, LISTENERS - start) }, (_, k) => open(start + k))
    sockets.push(...(await Promise.all(batch)))
  }
  return sockets
}

const main = async () => {
  const runtime = ManagedRuntime.make(GatewayLive)
  try {
    const { gateway, port, registry } = await runtime.runPromise(
      Effect.all({
        gateway: Gateway.Gateway,
        port: Effect.map(Http.GatewayServer, (s) => s.port),
        registry: SubscriptionRegistry
      })
    )
    const token = await runtime.runPromise(
      Auth.signToken({
        secret: Redacted.make(SECRET),
        userId: USER,
        expiresAt: Math.floor(Date.now() / 1000) + 3600,
        guilds: { [GUILD_A]: "*", [GUILD_B]: "*" }
      })
    )
    const sockets = await connectAll(port, token)
    const connections: ReadonlyArray<Connection> = await runtime.runPromise(
      registry.userMembers(USER as UserId)
    )
    if (connections.length !== LISTENERS)
      throw new Error(`expected ${LISTENERS} connections, registry has ${connections.length}`)
    const primer = Outbound.encode(Ready, typed(Ready, { user_id: USER }), 65_536)
    if (Either.isLeft(primer)) throw new Error("could not build the primer frame")

    const paths = [
      {
        path: "channel",
        publish: gateway.publish(
          MessageDelete,
          typed(MessageDelete, {
            guild_id: GUILD_A,
            channel_id: HOT_CHANNEL,
            message_id: benchUlid("message", 1),
            deleted_at_unix: 1_735_689_600
          })
        )
      },
      {
        path: "guild",
        publish: gateway.publish(
          PresenceUpdate,
          typed(PresenceUpdate, { guild_id: GUILD_B, user_id: USER, status: "online" })
        )
      },
      {
        path: "user",
        publish: gateway.publishToUsers(
          FriendRemove,
          typed(FriendRemove, {
            user_id: USER,
            friend_user_id: benchUlid("user", 2),
            removed_at_unix: 1_735_689_600
          }),
          [USER as UserId]
        )
      }
    ]

    const drainAndPrime = () => {
      for (const connection of connections) {
        while (MutableQueue.poll(connection.outbox, undefined) !== undefined) {
          /* drop: enqueue-only bench */
        }
        MutableQueue.offer(connection.outbox, primer.right)
      }
    }

    const results = []
    for (const { path, publish } of paths) {
      const runSync = (effect: typeof publish) => runtime.runSync(effect)
      const times: Array<number> = []
      for (let round = -1; round < ROUNDS; round++) {
        drainAndPrime()
        gc()
        const start = process.hrtime.bigint()
        for (let k = 0; k < ITERATIONS; k++) {
          const delivered = runSync(publish)
          if (delivered !== LISTENERS)
            throw new Error(`${path}: a publish reached ${delivered} of ${LISTENERS}`)
        }
        const elapsed = Number(process.hrtime.bigint() - start)
        for (const connection of connections) {
          const held = MutableQueue.length(connection.outbox)
          if (held !== ITERATIONS + 1)
            throw new Error(`${path}: an outbox holds ${held}, expected ${ITERATIONS + 1}`)
        }
        if (round >= 0) times.push(elapsed) // round -1 warms the JIT
      }
      times.sort((a, b) => a - b)
      const medianNs = times[times.length >> 1]!
      const line = {
        path,
        totalMs: medianNs / 1e6,
        nsPerDispatch: medianNs / (LISTENERS * ITERATIONS),
        bestNsPerDispatch: times[0]! / (LISTENERS * ITERATIONS)
      }
      results.push(line)
      process.stdout.write(
        `fanout_snapshot path=${path} listeners=${LISTENERS} iterations=${ITERATIONS} ` +
          `total_ms=${line.totalMs.toFixed(3)} ns_per_dispatch=${line.nsPerDispatch.toFixed(1)} (median of ${ROUNDS})\n`
      )
    }
    for (const connection of connections)
      while (MutableQueue.poll(connection.outbox, undefined) !== undefined) continue
    for (const socket of sockets) socket.terminate()
    const out = argValue("out")
    if (out !== undefined) {
      writeFileSync(
        out,
        JSON.stringify(
          { listeners: LISTENERS, iterations: ITERATIONS, rounds: ROUNDS, paths: results },
          null,
          2
        )
      )
    }
  } finally {
    await runtime.dispose()
  }
}

const hardStop = setTimeout(() => {
  process.stderr.write("dispatch bench: hard timeout (120 s)\n")
  process.exit(4)
}, 120_000)
hardStop.unref()

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`)
    process.exit(1)
  }
)
