/**
 * Registry churn on one big channel: K connections register and subscribe to one channel of one
 * guild, then all disconnect, through the real `SubscriptionRegistry` service (one `Ref.modify` per
 * change, metrics included). Reported per K: µs per subscribe and per disconnect, averaged over the
 * whole flood, and the same for a plain `Map<room, Set>` (what raw `ws` keeps) as the floor. A
 * registry whose change cost grows with the channel shows up as per-op time growing with K.
 *
 * The registry reads only a connection's id and user (32 connections per user, the default cap), so
 * the connections here are those two fields; no socket is involved.
 *
 * usage: node --expose-gc --import tsx bench/micro/churn.ts [--members 5000,50000] [--out file.json]
 */
import { writeFileSync } from "node:fs"
import { Effect, Layer, ManagedRuntime } from "effect"
import type { ChannelId, GuildId, UserId } from "../../src/protocol/Ids.js"
import * as Config from "../../src/server/Config.js"
import type { Connection } from "../../src/server/core/Connection.js"
import * as Metrics from "../../src/server/Metrics.js"
import * as Interest from "../../src/server/registry/Interest.js"
import * as Subscriptions from "../../src/server/registry/Subscriptions.js"
import { benchUlid } from "../Workload.js"

const argValue = (name: string): string | undefined => {
  const at = process.argv.indexOf(`--${name}`)
  return at < 0 ? undefined : process.argv[at + 1]
}
const sizes = (argValue("members") ?? "5000,50000").split(",").map(Number)
const out = argValue("out")

const GUILD = benchUlid("guild", 0) as GuildId
const CHANNEL = benchUlid("channel", 0) as ChannelId

const connectionsOf = (members: number): ReadonlyArray<Connection> =>
  Array.from({ length: members }, (_, i) => ({ id: i + 1, userId: `user-${i >> 5}` as UserId }) as Connection)

const microseconds = (startNs: bigint, ops: number) => Number(process.hrtime.bigint() - startNs) / 1000 / ops

const measureRegistry = async (members: number) => {
  const runtime = ManagedRuntime.make(
    Subscriptions.layer.pipe(
      Layer.provide(Interest.layerNone),
      Layer.provide(Metrics.layer),
      Layer.provide(Config.layerWith({}))
    )
  )
  const connections = connectionsOf(members)
  const result = await runtime.runPromise(
    Effect.gen(function* () {
      const registry = yield* Subscriptions.SubscriptionRegistry
      for (const connection of connections) yield* registry.register(connection)
      let start = process.hrtime.bigint()
      for (const connection of connections) {
        const outcome = yield* registry.subscribe(connection, GUILD, CHANNEL)
        if (outcome._tag !== "Subscribed") throw new Error(`subscribe refused: ${outcome._tag}`)
      }
      const subscribeUs = microseconds(start, members)
      const held = (yield* registry.channelMembers(GUILD, CHANNEL)).length
      if (held !== members) throw new Error(`channel holds ${held} of ${members}`)
      start = process.hrtime.bigint()
      for (const connection of connections) yield* registry.unregister(connection)
      const disconnectUs = microseconds(start, members)
      if ((yield* registry.channelMembers(GUILD, CHANNEL)).length !== 0) throw new Error("channel not empty")
      return { subscribeUs, disconnectUs }
    })
  )
  await runtime.dispose()
  return result
}

const measureMapSet = (members: number) => {
  const rooms = new Map<string, Set<Connection>>()
  const connections = connectionsOf(members)
  const room = `${GUILD}:${CHANNEL}`
  let start = process.hrtime.bigint()
  for (const connection of connections) {
    let set = rooms.get(room)
    if (set === undefined) rooms.set(room, (set = new Set()))
    set.add(connection)
  }
  const subscribeUs = microseconds(start, members)
  start = process.hrtime.bigint()
  for (const connection of connections) {
    const set = rooms.get(room)!
    set.delete(connection)
    if (set.size === 0) rooms.delete(room)
  }
  return { subscribeUs, disconnectUs: microseconds(start, members) }
}

const main = async () => {
  const cases = []
  for (const members of sizes) {
    const registry = await measureRegistry(members)
    const mapSet = measureMapSet(members)
    cases.push({ members, registry, mapSet })
    console.log(
      `[churn] ${members} members: registry subscribe ${registry.subscribeUs.toFixed(2)} µs, disconnect ${registry.disconnectUs.toFixed(2)} µs; Map/Set ${mapSet.subscribeUs.toFixed(3)} / ${mapSet.disconnectUs.toFixed(3)} µs`
    )
  }
  const result = { cases }
  if (out !== undefined) writeFileSync(out, JSON.stringify(result, null, 2))
}

void main()
