/**
 * The client process of the missed-event recovery benchmark (bench/recovery.ts starts it, pinned
 * to the other core than the gateway): owns the N client sockets (LeanClient.ts), drives the
 * gateway's control port through the phases, checks every event and every verdict, and writes one
 * JSON result. Phases, all against one gateway process:
 *
 *  1. steady state: the N clients without `recovery=1` (legacy) and with it (opted in: positions
 *     from the first verdicts), R rounds live each time, in the order legacy, opted in, opted in,
 *     legacy after warm-up rounds; then a fresh opted-in connect states every position.
 *  3. baseline storm: everyone drops, then reconnects at once with its positions, nothing missed.
 *  4. away: everyone drops; R rounds are published to nobody (the history grows by them).
 *  5. recovery storm: everyone reconnects at once with its positions: R events per stream replayed.
 *  6. seam: one more round live, to check the replay/live seam.
 *
 * Checks (any miss fails the run): every event of an opted-in connection has the next offset of its
 * stream in the known epoch (no gap, no duplicate) and is the event of that offset's round; every
 * verdict is exact and states the head, and `replayed` is what arrived; legacy frames carry no
 * `pos` and each client gets each round's events exactly once; the gateway's own counters agree.
 * If the gateway answers an opted-in client without any `recovery` event (recovery not integrated),
 * the result says so (`skipped`) and nothing after phase 1 runs.
 *
 * usage: node --import tsx bench/recovery-clients.ts '<RecoveryClientsConfig as JSON>'
 */
import { writeFileSync } from "node:fs"
import { setTimeout as sleep } from "node:timers/promises"
import { SignJWT } from "jose"
import * as LeanClient from "./LeanClient.js"
import {
  clientLayout,
  deliveriesPerRound,
  publishesPerRound,
  roundOf,
  SUBSCRIPTIONS_PER_CLIENT,
  type ClientLayout,
  type RecoveryShape
} from "./RecoveryLayout.js"
import type { ServerStats } from "./servers/Control.js"
import { nowUs } from "./Workload.js"

export interface RecoveryClientsConfig {
  readonly shape: RecoveryShape
  readonly wsPort: number
  readonly ctrlPort: number
  readonly jwtSecret: string
  readonly hardTimeoutS: number
  readonly out: string
}

const cfg = JSON.parse(process.argv[2] ?? "null") as RecoveryClientsConfig
if (cfg === null) throw new Error("usage: recovery-clients.ts '<config json>'")
const { shape } = cfg

setTimeout(() => {
  process.stderr.write(`[recovery] hard timeout ${cfg.hardTimeoutS}s reached, exiting\n`)
  process.exit(4)
}, cfg.hardTimeoutS * 1000).unref()

/** Why the run stopped after the legacy phase, when the gateway answers without positions. */
const NO_POSITIONS =
  "the gateway answered recovery=1 clients without any recovery event (missed-event recovery is not integrated in this build)"

// ------------------------------------------------------------------ checks
const MAX_ERRORS_KEPT = 30
const errors: Array<string> = []
let errorCount = 0
const fail = (message: string) => {
  if (++errorCount <= MAX_ERRORS_KEPT) errors.push(message)
}

// ------------------------------------------------------------------ control
const control = async <A>(path: string, timeoutMs = 60_000): Promise<A> => {
  const response = await fetch(`http://127.0.0.1:${cfg.ctrlPort}${path}`, {
    signal: AbortSignal.timeout(timeoutMs)
  })
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status} ${await response.text()}`)
  return (await response.json()) as A
}

/** Sums of the gateway's `/metrics` samples by family (all label sets added up). */
const metrics = async (): Promise<Record<string, number>> => {
  const response = await fetch(`http://127.0.0.1:${cfg.wsPort}/metrics`, {
    signal: AbortSignal.timeout(10_000)
  })
  const sums: Record<string, number> = {}
  for (const line of (await response.text()).split("\n")) {
    const match =
      /^(filament_gateway_(?:history_entries|history_bytes|events_replayed_total|recoveries_total))(\{[^}]*\})? (\S+)$/.exec(
        line
      )
    if (match === null) continue
    const outcome = /outcome="([^"]+)"/.exec(match[2] ?? "")?.[1]
    const key = outcome === undefined ? match[1]! : `${match[1]}:${outcome}`
    sums[key] = (sums[key] ?? 0) + Number(match[3])
  }
  return sums
}

const cpuUs = (s: ServerStats) => s.cpuUserUs + s.cpuSystemUs

/** Resolves once `condition()` holds (checked every 20 ms), rejects after `ms`. */
const until = async (label: string, condition: () => boolean, ms: number) => {
  const deadline = Date.now() + ms
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`deadline: ${label}`)
    await sleep(20)
  }
}

// ------------------------------------------------------------------ clients
type Mode = "legacy" | "fresh" | "resume"

interface Position {
  epoch: string
  offset: number
}

interface StreamVerdict {
  readonly stream: string
  readonly epoch: string
  readonly offset: number
  readonly recovered?: boolean
  readonly replayed?: number
  readonly reason?: string
}

interface Client {
  readonly index: number
  readonly layout: ClientLayout
  readonly token: string
  socket: LeanClient.LeanSocket | undefined
  mode: Mode
  /** The last position per stream, kept across connections as an SDK would. */
  readonly positions: Map<string, Position>
  /** This connection: positions handed back at connect, events per stream, acks, verdicts. */
  since: Map<string, Position>
  received: Map<string, number>
  acks: number
  verdicts: number
  readyAtUs: number
  closing: boolean
}

/** What the current phase counts. */
const tally = {
  events: 0,
  positionedBytes: 0,
  positionedFrames: 0,
  legacyBytes: 0,
  legacyFrames: 0,
  /** Events per (client, round) of the current live phase, to find a loss or a duplicate. */
  perRound: new Uint8Array(0),
  fromRound: 0,
  rounds: 0,
  other: new Map<string, number>()
}
/** Rounds published so far: every stream's head offset. */
let head = 0
let connectRetries = 0
let unexpectedCloses = 0

const POS_MARKER = Buffer.from('"pos":')
const TYPE_PREFIX = Buffer.from('{"v":1,"t":"')
const EVENT_TYPES = new Set(["message_create", "workspace_update", "profile_avatar_update"])

const frameType = (data: Buffer): string => {
  if (data.length > TYPE_PREFIX.length && data.subarray(0, TYPE_PREFIX.length).equals(TYPE_PREFIX)) {
    const end = data.indexOf(34, TYPE_PREFIX.length)
    if (end > 0) return data.toString("latin1", TYPE_PREFIX.length, end)
  }
  return String((JSON.parse(String(data)) as { t?: unknown }).t)
}

const onEvent = (client: Client, data: Buffer) => {
  tally.events++
  const round = roundOf(data)
  const posAt = data.lastIndexOf(POS_MARKER)
  if (client.mode === "legacy") {
    tally.legacyBytes += data.length
    tally.legacyFrames++
    if (posAt >= 0) fail(`client ${client.index}: a legacy connection got a frame with pos`)
    const slot = round - tally.fromRound
    if (slot < 0 || slot >= tally.rounds)
      fail(`client ${client.index}: legacy event of round ${round} outside the phase`)
    else tally.perRound[client.index * tally.rounds + slot]!++
    return
  }
  tally.positionedBytes += data.length
  tally.positionedFrames++
  if (posAt < 0) return fail(`client ${client.index}: an opted-in connection got an event without pos`)
  const pos = JSON.parse(data.toString("utf8", posAt + POS_MARKER.length, data.length - 1)) as {
    stream: string
    epoch: string
    offset: number
  }
  const known = client.positions.get(pos.stream)
  if (known === undefined) return fail(`client ${client.index}: event of ${pos.stream} before any position`)
  if (pos.epoch !== known.epoch)
    return fail(`client ${client.index}: ${pos.stream} epoch ${pos.epoch} ≠ ${known.epoch}`)
  if (pos.offset !== known.offset + 1) {
    return fail(
      `client ${client.index}: ${pos.stream} offset ${pos.offset} after ${known.offset} (${pos.offset <= known.offset ? "duplicate" : "gap"})`
    )
  }
  if (round !== pos.offset - 1)
    fail(`client ${client.index}: ${pos.stream} offset ${pos.offset} holds round ${round}`)
  known.offset = pos.offset
  client.received.set(pos.stream, (client.received.get(pos.stream) ?? 0) + 1)
  const slot = round - tally.fromRound
  if (slot >= 0 && slot < tally.rounds) tally.perRound[client.index * tally.rounds + slot]!++
}

const onVerdict = (client: Client, streams: ReadonlyArray<StreamVerdict>, channelId: string | undefined) => {
  const where = `client ${client.index} ${channelId === undefined ? "user verdict" : `verdict for ${channelId}`}`
  for (const verdict of streams) {
    if (!client.layout.streams.includes(verdict.stream)) {
      fail(`${where}: foreign stream ${verdict.stream}`)
      continue
    }
    if (verdict.offset !== head)
      fail(`${where}: ${verdict.stream} at offset ${verdict.offset}, head is ${head}`)
    const known = client.positions.get(verdict.stream)
    const given = client.since.get(verdict.stream)
    if (verdict.recovered === undefined) {
      if (given !== undefined) fail(`${where}: ${verdict.stream} has no verdict for the position given`)
      if (known !== undefined && (known.epoch !== verdict.epoch || known.offset !== verdict.offset))
        fail(`${where}: ${verdict.stream} restated as ${verdict.epoch}:${verdict.offset}`)
      client.positions.set(verdict.stream, { epoch: verdict.epoch, offset: verdict.offset })
      continue
    }
    if (verdict.recovered !== true) {
      fail(`${where}: ${verdict.stream} not recovered (${verdict.reason})`)
      continue
    }
    if (given === undefined) fail(`${where}: ${verdict.stream} recovered without a position given`)
    if (known === undefined || known.epoch !== verdict.epoch || known.offset !== verdict.offset)
      fail(`${where}: ${verdict.stream} recovered to ${verdict.offset}, the client holds ${known?.offset}`)
    if (verdict.reason === "already_live") {
      if (!verdict.stream.startsWith("guild:")) fail(`${where}: ${verdict.stream} already_live`)
      continue
    }
    const received = client.received.get(verdict.stream) ?? 0
    const missed = given === undefined ? 0 : head - given.offset
    if (verdict.replayed !== received || received !== missed)
      fail(`${where}: ${verdict.stream} replayed ${verdict.replayed}, received ${received}, missed ${missed}`)
  }
}

const isDone = (client: Client) =>
  client.acks === SUBSCRIPTIONS_PER_CLIENT &&
  (client.mode === "legacy" || client.verdicts === 1 + SUBSCRIPTIONS_PER_CLIENT)

let noPositions = false

const connect = (client: Client, mode: Mode): Promise<void> =>
  new Promise((resolve, reject) => {
    client.mode = mode
    // A fresh opted-in connect starts over: its verdicts state every position anew.
    if (mode === "fresh") client.positions.clear()
    client.since =
      mode === "resume" ? new Map([...client.positions].map(([s, p]) => [s, { ...p }])) : new Map()
    client.received = new Map()
    client.acks = 0
    client.verdicts = 0
    client.closing = false
    const { user, guild, channels } = client.layout
    const userPosition = client.since.get(`user:${user}`)
    const query =
      `?access_token=${client.token}` +
      (mode === "legacy" ? "" : "&recovery=1") +
      (userPosition === undefined ? "" : `&user_since=${userPosition.epoch}:${userPosition.offset}`)
    let finished = false
    const finish = () => {
      // Once: frames keep coming after (other clients' presence), the time is the last verdict's.
      if (finished) return
      finished = true
      client.readyAtUs = nowUs()
      resolve()
    }
    LeanClient.connect(
      { host: "127.0.0.1", port: cfg.wsPort, path: `/gateway/ws${query}`, timeoutMs: 60_000 },
      {
        onMessage: (data) => {
          const type = frameType(data)
          if (EVENT_TYPES.has(type)) return onEvent(client, data)
          if (type === "subscribed") {
            client.acks++
            // An opted-in connection gets its user-stream verdict right after `ready`, before any
            // command runs: every subscribe acked and no verdict means the gateway ignored `recovery=1`.
            if (mode !== "legacy" && client.acks === SUBSCRIPTIONS_PER_CLIENT && client.verdicts === 0) {
              noPositions = true
              return finish()
            }
          } else if (type === "recovery") {
            const frame = JSON.parse(String(data)) as {
              d: { channel_id?: string; streams: ReadonlyArray<StreamVerdict> }
            }
            if (mode === "legacy") fail(`client ${client.index}: a legacy connection got a recovery event`)
            client.verdicts++
            onVerdict(client, frame.d.streams, frame.d.channel_id)
          } else tally.other.set(type, (tally.other.get(type) ?? 0) + 1)
          if (isDone(client)) finish()
        },
        onClose: (code, reason) => {
          client.socket = undefined
          if (client.closing) return
          unexpectedCloses++
          fail(`client ${client.index}: closed ${code} ${reason}`)
          reject(new Error(`client ${client.index} closed ${code} ${reason}`))
        }
      }
    ).then(
      (socket) => {
        client.socket = socket
        for (const channel of channels) {
          const since =
            mode === "resume"
              ? {
                  since: {
                    channel: client.since.get(`channel:${guild}:${channel}`),
                    guild: client.since.get(`guild:${guild}`)
                  }
                }
              : {}
          socket.send(
            JSON.stringify({ v: 1, t: "subscribe", d: { guild_id: guild, channel_id: channel, ...since } })
          )
        }
      },
      (error: Error) => reject(error)
    )
  })

/** Connects a client, retrying a refused upgrade (a storm may overflow the accept backlog) at most 3 times. */
const connectRetrying = async (client: Client, mode: Mode) => {
  for (let attempt = 0; ; attempt++) {
    try {
      return await connect(client, mode)
    } catch (error) {
      if (client.socket !== undefined || attempt >= 3) throw error
      connectRetries++
      await sleep(50 * (attempt + 1))
    }
  }
}

/** Connects every client, `concurrency` at a time (`Infinity`: all at once, a storm). */
const connectAll = async (clients: ReadonlyArray<Client>, mode: Mode, concurrency: number) => {
  let next = 0
  const worker = async () => {
    while (next < clients.length) await connectRetrying(clients[next++]!, mode)
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, clients.length) }, worker))
}

const dropAll = async (clients: ReadonlyArray<Client>) => {
  for (const client of clients) {
    client.closing = true
    client.socket?.destroy()
  }
  const deadline = Date.now() + 30_000
  for (;;) {
    const stats = await control<ServerStats>("/stats")
    if (stats.info["connections"] === 0) return
    if (Date.now() > deadline)
      throw new Error(`deadline: ${String(stats.info["connections"])} connections still open`)
    await sleep(20)
  }
}

const startTally = (rounds: number) => {
  tally.events = 0
  tally.positionedBytes = tally.positionedFrames = tally.legacyBytes = tally.legacyFrames = 0
  tally.fromRound = head
  tally.rounds = rounds
  tally.perRound = new Uint8Array(shape.clients * rounds)
}

/** Checks that every client got each round's events exactly once (its streams' count per round). */
const checkRounds = (phase: string, connected: boolean) => {
  const perClientRound = 2 + SUBSCRIPTIONS_PER_CLIENT
  let wrong = 0
  for (let i = 0; i < tally.perRound.length; i++)
    if (tally.perRound[i] !== (connected ? perClientRound : 0)) wrong++
  if (wrong > 0) fail(`${phase}: ${wrong} (client, round) pairs did not get exactly ${perClientRound} events`)
}

/** Publishes `rounds` rounds; with clients connected, waits until every delivery arrived. */
const publishRounds = async (phase: string, rounds: number, connected: boolean) => {
  startTally(rounds)
  const expected = connected ? rounds * deliveriesPerRound(shape) : 0
  const s0 = await control<ServerStats>("/stats")
  const t0 = nowUs()
  const c0 = process.cpuUsage()
  await control(`/publish?count=${rounds * publishesPerRound(shape)}&rate=0`, 120_000)
  head += rounds
  await until(
    `${phase}: ${expected} deliveries`,
    () => tally.events >= expected,
    Math.max(20_000, expected / 5)
  )
  const seconds = (nowUs() - t0) / 1e6
  const clientCpu = process.cpuUsage(c0)
  const s1 = await control<ServerStats>("/stats")
  checkRounds(phase, connected)
  if (tally.events !== expected) fail(`${phase}: ${tally.events} deliveries, expected ${expected}`)
  const cpu = cpuUs(s1) - cpuUs(s0)
  const frames = tally.positionedFrames + tally.legacyFrames
  return {
    rounds,
    events: rounds * publishesPerRound(shape),
    deliveries: tally.events,
    seconds,
    serverCpuS: cpu / 1e6,
    /** Shares of one core: a client process near 100 % makes the server's writes back up. */
    serverCpuUtil: cpu / 1e6 / seconds,
    /** The kernel's share of the server's CPU: socket writes, growing with bytes on loopback. */
    serverSysShare: (s1.cpuSystemUs - s0.cpuSystemUs) / Math.max(1, cpu),
    clientCpuUtil: (clientCpu.user + clientCpu.system) / 1e6 / seconds,
    cpuUsPerDelivery: expected > 0 ? cpu / tally.events : null,
    bytesPerFrame: frames > 0 ? (tally.positionedBytes + tally.legacyBytes) / frames : null
  }
}

/** Everyone reconnects at once with its positions; ends when the last client has all its verdicts. */
const storm = async (phase: string, clients: ReadonlyArray<Client>) => {
  startTally(0)
  const m0 = await metrics()
  const s0 = await control<ServerStats>("/stats")
  const t0 = nowUs()
  const c0 = process.cpuUsage()
  connectRetries = 0
  await connectAll(clients, "resume", Infinity)
  const t1 = nowUs()
  const clientCpu = process.cpuUsage(c0)
  const s1 = await control<ServerStats>("/stats")
  const m1 = await metrics()
  const delta = (key: string) => (m1[key] ?? 0) - (m0[key] ?? 0)
  const replayed = tally.events
  const missedPerClient = clients.map((client) =>
    [...client.since.values()].reduce((sum, p) => sum + (head - p.offset), 0)
  )
  const expected = missedPerClient.reduce((a, b) => a + b, 0)
  if (replayed !== expected) fail(`${phase}: ${replayed} events replayed, expected ${expected}`)
  if (delta("filament_gateway_events_replayed_total") !== replayed)
    fail(
      `${phase}: the gateway counted ${delta("filament_gateway_events_replayed_total")} replayed, clients got ${replayed}`
    )
  const streamsGiven = clients.reduce((sum, client) => sum + client.since.size, 0)
  const recoveredCount = delta("filament_gateway_recoveries_total:recovered")
  const perClientMs = clients.map((client) => (client.readyAtUs - t0) / 1000).sort((a, b) => a - b)
  const at = (p: number) =>
    perClientMs[Math.min(perClientMs.length - 1, Math.ceil(p * perClientMs.length) - 1)]!
  const cpu = cpuUs(s1) - cpuUs(s0)
  return {
    clients: clients.length,
    allRecoveredMs: (t1 - t0) / 1000,
    clientMs: { p50: at(0.5), p99: at(0.99), max: perClientMs.at(-1)! },
    replayed,
    replayedPerClient: expected / clients.length,
    streamsGiven,
    gatewayRecovered: recoveredCount,
    gatewayNotRecovered: Object.entries(m1)
      .filter(([key]) => key.startsWith("filament_gateway_recoveries_total:") && !key.endsWith(":recovered"))
      .reduce((sum, [key, value]) => sum + value - (m0[key] ?? 0), 0),
    serverCpuS: cpu / 1e6,
    /** Shares of one core over the storm: which side the time until all recovered waited on. */
    serverCpuUtil: cpu / (t1 - t0),
    clientCpuUtil: (clientCpu.user + clientCpu.system) / (t1 - t0),
    connectRetries,
    bytesPerFrame: tally.positionedFrames > 0 ? tally.positionedBytes / tally.positionedFrames : null
  }
}

const heapUsed = async () => (await control<ServerStats>("/stats?gc=1")).heapUsed

// ------------------------------------------------------------------ main
const main = async () => {
  const t0 = nowUs()
  const base = await control<ServerStats>("/stats?gc=1", 5000)
  if (!base.gcAvailable) throw new Error("server runs without --expose-gc: memory figures would be noise")
  const key = new TextEncoder().encode(cfg.jwtSecret)
  const clients: Array<Client> = await Promise.all(
    Array.from({ length: shape.clients }, async (_, index): Promise<Client> => {
      const layout = clientLayout(shape, index)
      const token = await new SignJWT({ guilds: { [layout.guild]: "*" } })
        .setProtectedHeader({ alg: "HS256" })
        .setSubject(layout.user)
        .setIssuedAt()
        .setExpirationTime("1h")
        .sign(key)
      return {
        index,
        layout,
        token,
        socket: undefined,
        mode: "legacy",
        positions: new Map(),
        since: new Map(),
        received: new Map(),
        acks: 0,
        verdicts: 0,
        readyAtUs: 0,
        closing: false
      }
    })
  )
  const result: Record<string, unknown> = { shape }
  const finish = (extra: Record<string, unknown>) => {
    Object.assign(result, extra, {
      errors,
      errorCount,
      unexpectedCloses,
      otherFrames: Object.fromEntries(tally.other),
      totalS: (nowUs() - t0) / 1e6
    })
    writeFileSync(cfg.out, JSON.stringify(result, null, 2))
  }

  // Legacy, opted in, opted in, legacy (ABBA): a drift of the machine over the four hits both alike.
  await connectAll(clients, "legacy", 200)
  await publishRounds("warm-up", Math.ceil(shape.rounds / 4), true)
  const legacy = [await publishRounds("legacy 1", shape.rounds, true)]
  await dropAll(clients)
  await connectAll(clients, "fresh", 200)
  if (noPositions) return finish({ legacy, skipped: NO_POSITIONS })
  const optedIn = [
    await publishRounds("opted in 1", shape.rounds, true),
    await publishRounds("opted in 2", shape.rounds, true)
  ]
  await dropAll(clients)
  await connectAll(clients, "legacy", 200)
  legacy.push(await publishRounds("legacy 2", shape.rounds, true))
  await dropAll(clients)
  Object.assign(result, { legacy, optedIn })
  // Positions as of now (a fresh opted-in connect states them), for the storms.
  await connectAll(clients, "fresh", 200)
  await dropAll(clients)

  result.baselineStorm = await storm("baseline storm", clients)
  await dropAll(clients)

  const m0 = await metrics()
  const heap0 = await heapUsed()
  result.away = await publishRounds("away", shape.rounds, false)
  const heap1 = await heapUsed()
  const m1 = await metrics()
  const added = shape.rounds * (shape.guilds * shape.channelsPerGuild + shape.guilds + shape.clients)
  const entries =
    (m1["filament_gateway_history_entries"] ?? 0) - (m0["filament_gateway_history_entries"] ?? 0)
  if (entries !== added) fail(`away: the history gained ${entries} entries, ${added} were appended`)
  result.history = {
    entries: m1["filament_gateway_history_entries"] ?? 0,
    bytes: m1["filament_gateway_history_bytes"] ?? 0,
    addedEntries: added,
    addedBytes: (m1["filament_gateway_history_bytes"] ?? 0) - (m0["filament_gateway_history_bytes"] ?? 0),
    heapDeltaBytes: heap1 - heap0
  }

  result.recoveryStorm = await storm("recovery storm", clients)
  result.seam = await publishRounds("seam", 1, true)
  await dropAll(clients)
  finish({})
  process.stdout.write(`[recovery] done in ${((nowUs() - t0) / 1e6).toFixed(1)} s, ${errorCount} errors\n`)
}

main()
  .then(
    () => control("/shutdown", 5000).catch(() => undefined),
    async (error: unknown) => {
      process.stderr.write(`[recovery] error: ${error instanceof Error ? error.stack : String(error)}\n`)
      await control("/shutdown", 2000).catch(() => undefined)
      process.exit(1)
    }
  )
  .then(() => process.exit(0))
