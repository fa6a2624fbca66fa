/**
 * In-process dispatch, after the original's fanout snapshot (reference §8.7): L listeners (512)
 * × K iterations (128) on the channel, guild and user paths, "enqueue only", ns per dispatch =
 * total / (L × K).
 *
 * Everything is the real gateway in this process: `Composition.layerGateway` + the HTTP server on port
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
 * `--inspector`: the same measurement on four gateways in one process, their rounds taking turns
 * (so drift and other load hit them alike) — the inspector off (no `GATEWAY_ADMIN_KEY`), on with
 * nobody looking (`idle`), on with its overview open (`watched`: the publish tap installed, counting
 * publishes per event type), and off again (the control: the run's own noise) — to show what an
 * enabled inspector nobody watches costs per delivery.
 *
 * usage: node --expose-gc --import tsx bench/micro/dispatch.ts [--listeners 512] [--iterations 128]
 *        [--rounds 15] [--inspector] [--out file.json]
 */
import { writeFileSync } from "node:fs"
import { Effect, Either, Layer, ManagedRuntime, MutableQueue, Option, Redacted } from "effect"
import WebSocket from "ws"
import type { EventDefinition, PayloadOf } from "../../src/protocol/EventDefinition.js"
import { Ready } from "../../src/protocol/events/connection.js"
import { FriendRemove } from "../../src/protocol/events/friend.js"
import { MessageDelete } from "../../src/protocol/events/message.js"
import { PresenceUpdate } from "../../src/protocol/events/presence.js"
import * as Auth from "../../src/server/Auth.js"
import * as Config from "../../src/server/Config.js"
import type { Connection } from "../../src/server/core/Connection.js"
import * as Composition from "../../src/server/Composition.js"
import * as Gateway from "../../src/server/core/Gateway.js"
import * as Http from "../../src/server/edge/Http.js"
import * as Inspector from "../../src/server/inspector/Inspector.js"
import * as Outbound from "../../src/server/core/Outbound.js"
import { SubscriptionRegistry } from "../../src/server/registry/Subscriptions.js"
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
const ADMIN_KEY = "bench-only-admin-key-0123456789abcdef"
const COMPARE_INSPECTOR = process.argv.includes("--inspector")

/** `off`: no admin key. `idle`: the inspector on, nobody looking. `watched`: its overview open. */
type InspectorMode = "off" | "idle" | "watched"

const USER = benchUlid("user", 1)
const GUILD_A = benchUlid("guild", 100)
const HOT_CHANNEL = benchUlid("channel", 100)
const GUILD_B = benchUlid("guild", 101)
const channelOfB = (i: number) => benchUlid("channel", 1000 + i)

const gc = () => (globalThis as { gc?: () => void }).gc?.()

// Cast helper: bench ids are canonical ULIDs; brands exist only at compile time.
const typed = <E extends EventDefinition>(_event: E, payload: Record<string, unknown>) =>
  payload as unknown as PayloadOf<E>

const gatewayLive = (inspector: InspectorMode) =>
  Http.layer.pipe(
    Layer.provideMerge(Inspector.layer),
    Layer.provideMerge(Composition.layerGateway),
    Layer.provideMerge(
      Config.layerWith({
        host: "127.0.0.1",
        port: 0,
        jwtSecret: Redacted.make(SECRET),
        outboundQueue: ITERATIONS + 4,
        maxConnectionsPerUser: LISTENERS,
        adminKey: inspector === "off" ? Option.none() : Option.some(Redacted.make(ADMIN_KEY))
      })
    )
  )

interface PathResult {
  readonly path: string
  readonly totalMs: number
  readonly nsPerDispatch: number
  readonly bestNsPerDispatch: number
}

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

interface Bench {
  readonly paths: ReadonlyArray<string>
  /** One measured round of `path`: `ITERATIONS` publishes, each asserted to reach every listener (ns). */
  readonly round: (path: string) => number
  readonly close: () => Promise<void>
}

/** A gateway with `LISTENERS` subscribed clients, ready to measure. */
const open = async (inspector: InspectorMode): Promise<Bench> => {
  const runtime = ManagedRuntime.make(gatewayLive(inspector))
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
    if (inspector === "watched") {
      // Opening the overview starts the sampler, which installs the publish tap for 30 s.
      const overview = await fetch(`http://127.0.0.1:${port}/admin/api/overview`, {
        headers: { authorization: `Bearer ${ADMIN_KEY}` }
      })
      if (overview.status !== 200) throw new Error(`overview answered ${overview.status}`)
    }
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

    const byPath = new Map(paths.map(({ path, publish }) => [path, publish]))
    return {
      paths: paths.map(({ path }) => path),
      round: (path) => {
        const publish = byPath.get(path)!
        drainAndPrime()
        gc()
        const start = process.hrtime.bigint()
        for (let k = 0; k < ITERATIONS; k++) {
          const delivered = runtime.runSync(publish)
          if (delivered !== LISTENERS)
            throw new Error(`${path}: a publish reached ${delivered} of ${LISTENERS}`)
        }
        const elapsed = Number(process.hrtime.bigint() - start)
        for (const connection of connections) {
          const held = MutableQueue.length(connection.outbox)
          if (held !== ITERATIONS + 1)
            throw new Error(`${path}: an outbox holds ${held}, expected ${ITERATIONS + 1}`)
        }
        return elapsed
      },
      close: async () => {
        for (const connection of connections)
          while (MutableQueue.poll(connection.outbox, undefined) !== undefined) continue
        for (const socket of sockets) socket.terminate()
        await runtime.dispose()
      }
    }
  } catch (error) {
    await runtime.dispose()
    throw error
  }
}

/** The median and best of a path's rounds, printed as one line. */
const summarize = (path: string, times: Array<number>, label: string): PathResult => {
  times.sort((a, b) => a - b)
  const medianNs = times[times.length >> 1]!
  const line = {
    path,
    totalMs: medianNs / 1e6,
    nsPerDispatch: medianNs / (LISTENERS * ITERATIONS),
    bestNsPerDispatch: times[0]! / (LISTENERS * ITERATIONS)
  }
  process.stdout.write(
    `fanout_snapshot ${label}path=${path} listeners=${LISTENERS} iterations=${ITERATIONS} ` +
      `total_ms=${line.totalMs.toFixed(3)} ns_per_dispatch=${line.nsPerDispatch.toFixed(1)} (median of ${ROUNDS})\n`
  )
  return line
}

const main = async () => {
  const out = argValue("out")
  // A second `off` gateway is the control: its difference from the first is the run's own noise.
  const modes: ReadonlyArray<InspectorMode> = COMPARE_INSPECTOR ? ["off", "idle", "watched", "off"] : ["off"]
  const benches: Array<Bench> = []
  try {
    for (const mode of modes) benches.push(await open(mode))
    const runs = modes.map((inspector) => ({ inspector, paths: [] as Array<PathResult> }))
    for (const path of benches[0]!.paths) {
      // Round -1 warms the JIT; then the modes take turns, round by round, so drift hits them alike.
      for (const bench of benches) bench.round(path)
      const times = benches.map((): Array<number> => [])
      for (let round = 0; round < ROUNDS; round++)
        benches.forEach((bench, i) => times[i]!.push(bench.round(path)))
      runs.forEach((run, i) =>
        run.paths.push(summarize(path, times[i]!, COMPARE_INSPECTOR ? `inspector=${run.inspector} ` : ""))
      )
    }
    if (out !== undefined)
      writeFileSync(
        out,
        JSON.stringify(
          COMPARE_INSPECTOR
            ? { listeners: LISTENERS, iterations: ITERATIONS, rounds: ROUNDS, runs }
            : { listeners: LISTENERS, iterations: ITERATIONS, rounds: ROUNDS, paths: runs[0]!.paths },
          null,
          2
        )
      )
  } finally {
    for (const bench of benches) await bench.close()
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
