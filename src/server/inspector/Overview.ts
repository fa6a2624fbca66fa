/**
 * The overview's numbers: one sampler fiber per node, running only while somebody looks at the
 * overview (it stops after `IDLE_MS` without a request), reads the gateway's metrics once a
 * second and keeps the last `HISTORY` samples. Deliveries per event type are the deltas of
 * `filament_gateway_events_emitted_total`; publishes per event type are counted by the inspector's
 * publish tap while the sampler runs (per event, never per delivery). The sampler runs while this
 * node's overview is looked at, or (with Redis) another node's (see `Cluster`).
 */
import { randomBytes } from "node:crypto"
import { hostname } from "node:os"
import { Clock, Duration, Effect, FiberSet, HashMap } from "effect"
import { Gateway } from "../core/Gateway.js"
import { GatewayMetrics, type MetricsSnapshot, type ValueSeries } from "../Metrics.js"
import { SubscriptionRegistry } from "../registry/Subscriptions.js"

/** Sampling period and history: five minutes of one-second samples. */
const PERIOD = Duration.seconds(1)
const HISTORY = 300
/** The sampler stops this long after the last overview request. */
const IDLE_MS = 30_000

/** This gateway's name in the inspector: host, process and a suffix (a process may run several). */
const nodeId = () => `${hostname()}:${process.pid}:${randomBytes(2).toString("hex")}`

export interface Sample {
  /** Gateway `Clock` time (ms). */
  readonly at: number
  readonly connections: number
  readonly subscriptions: number
  /** Deliveries (recipients offered a frame) per event type since the previous sample, per second. */
  readonly deliveries: Readonly<Record<string, number>>
  /** Broadcasts published on this node per event type since the previous sample, per second. */
  readonly publishes: Readonly<Record<string, number>>
}

export interface Totals {
  readonly connections: number
  readonly usersOnline: number
  readonly subscriptions: number
  /** `filament_gateway_events_dropped_total` by reason. */
  readonly drops: Readonly<Record<string, number>>
  /** Connections closed 1008 `slow_consumer`. */
  readonly slowConsumerEvictions: number
  /** Ingress frames refused, by reason (decoder rejections, unknown types, rate window). */
  readonly ingressRejections: Readonly<Record<string, number>>
  readonly busHealthy: boolean
  /** Completed outages (counted on reconnect) plus the current one, seconds. */
  readonly busOutageSeconds: number
}

export interface OverviewSnapshot {
  readonly node: string
  readonly now: number
  readonly periodSeconds: number
  readonly totals: Totals
  /** Samples taken after `since`, oldest first. */
  readonly samples: ReadonlyArray<Sample>
}

export interface Overview {
  /** This gateway's name in the inspector (and in its peers' cluster view). */
  readonly node: string
  /** The current totals (read on demand, not sampled). */
  readonly totals: Effect.Effect<Totals>
  /** Records a look (an overview request here, or one on another node): starts the sampler when idle. */
  readonly viewed: (where: "here" | "cluster") => void
  /** Whether this node's overview was requested within the last `idleMillis`. */
  readonly watchedHere: () => boolean
  /** How long the sampler runs after the last look (ms). */
  readonly idleMillis: number
  /** Deliveries per event type since the process started (`filament_gateway_events_emitted_total`). */
  readonly delivered: () => Readonly<Record<string, number>>
  /** Publishes per event type counted since the sampler started at `since`; undefined when idle. */
  readonly published: () =>
    { readonly since: number; readonly counts: Readonly<Record<string, number>> } | undefined
  readonly snapshot: (since: number) => Effect.Effect<OverviewSnapshot>
  /** Whether the sampler runs (the publish tap counts publishes only then). */
  readonly active: () => boolean
  /** Counts one local publish of `eventType` (called by the publish tap). */
  readonly countPublish: (eventType: string) => void
}

const add = (into: Record<string, number>, key: string, value: number) => {
  into[key] = (into[key] ?? 0) + value
}

const tag = (series: ValueSeries, key: string): string =>
  series.labels.find(([name]) => name === key)?.[1] ?? ""

/** The families the overview reads, summed by the label it shows. */
const readMetrics = (snapshot: MetricsSnapshot) => {
  const emittedByType: Record<string, number> = {}
  const drops: Record<string, number> = {}
  const ingressRejections: Record<string, number> = {}
  let subscriptions = 0
  let slowConsumerEvictions = 0
  let busOutageSeconds = 0
  for (const family of snapshot) {
    if (family.type === "histogram") continue
    for (const series of family.series) {
      switch (family.name) {
        case "filament_gateway_events_emitted_total":
          add(emittedByType, tag(series, "event_type"), series.value)
          break
        case "filament_gateway_events_dropped_total":
          add(drops, tag(series, "reason"), series.value)
          break
        case "filament_gateway_events_parse_rejected_total":
          add(ingressRejections, tag(series, "reason"), series.value)
          break
        case "filament_gateway_events_unknown_received_total":
          add(ingressRejections, "unknown_event", series.value)
          break
        case "filament_ws_disconnects_total": {
          const reason = tag(series, "reason")
          if (reason === "slow_consumer") slowConsumerEvictions += series.value
          if (
            reason === "ingress_rate_limited" ||
            reason === "event_too_large" ||
            reason === "command_queue_full"
          )
            add(ingressRejections, reason, series.value)
          break
        }
        case "filament_gateway_subscriptions":
          subscriptions = series.value
          break
        case "filament_gateway_bus_outage_seconds_total":
          busOutageSeconds = series.value
      }
    }
  }
  return { emittedByType, drops, ingressRejections, subscriptions, slowConsumerEvictions, busOutageSeconds }
}

export const make = (onActivity: () => void) =>
  Effect.gen(function* () {
    const gateway = yield* Gateway
    const registry = yield* SubscriptionRegistry
    const metrics = yield* GatewayMetrics
    const clock = yield* Effect.clock
    const run = yield* FiberSet.makeRuntime<never, void, never>()
    const periodSeconds = Duration.toSeconds(PERIOD)
    const node = nodeId()

    const history: Array<Sample> = []
    let running = false
    let lastViewedAt = 0
    let lastViewedHereAt = Number.NEGATIVE_INFINITY
    let startedAt = 0
    /** Publishes since the sampler started, and as of the previous sample. */
    let publishes: Record<string, number> = {}
    let previousPublishes: Record<string, number> = {}
    let previousEmitted: Record<string, number> = {}
    /** When the sampler first saw the bus down (the outage not yet counted by the metric). */
    let busDownSince: number | undefined

    const sample = () => {
      const at = clock.unsafeCurrentTimeMillis()
      const read = readMetrics(metrics.snapshot())
      const deliveries: Record<string, number> = {}
      for (const [type, total] of Object.entries(read.emittedByType)) {
        const delta = total - (previousEmitted[type] ?? 0)
        if (delta > 0) deliveries[type] = delta / periodSeconds
      }
      previousEmitted = read.emittedByType
      const published: Record<string, number> = {}
      for (const [type, count] of Object.entries(publishes)) {
        const delta = count - (previousPublishes[type] ?? 0)
        if (delta > 0) published[type] = delta / periodSeconds
      }
      previousPublishes = { ...publishes }
      if (gateway.busHealthy()) busDownSince = undefined
      else busDownSince ??= at
      history.push({
        at,
        connections: gateway.connectionCount(),
        subscriptions: read.subscriptions,
        deliveries,
        publishes: published
      })
      if (history.length > HISTORY) history.shift()
    }

    const loop = Effect.gen(function* () {
      while (clock.unsafeCurrentTimeMillis() - lastViewedAt < IDLE_MS) {
        yield* Effect.sleep(PERIOD)
        sample()
      }
    }).pipe(
      Effect.ensuring(
        Effect.sync(() => {
          running = false
          onActivity()
        })
      )
    )

    const totals = Effect.gen(function* () {
      const state = yield* registry.state
      const read = readMetrics(metrics.snapshot())
      const now = yield* Clock.currentTimeMillis
      return {
        connections: gateway.connectionCount(),
        usersOnline: HashMap.size(state.users),
        subscriptions: read.subscriptions,
        drops: read.drops,
        slowConsumerEvictions: read.slowConsumerEvictions,
        ingressRejections: read.ingressRejections,
        busHealthy: gateway.busHealthy(),
        busOutageSeconds:
          read.busOutageSeconds + (busDownSince === undefined ? 0 : (now - busDownSince) / 1000)
      }
    })

    const overview: Overview = {
      node,
      totals,
      viewed: (where) => {
        lastViewedAt = clock.unsafeCurrentTimeMillis()
        if (where === "here") lastViewedHereAt = lastViewedAt
        if (running) return
        running = true
        startedAt = lastViewedAt
        previousEmitted = readMetrics(metrics.snapshot()).emittedByType
        publishes = {}
        previousPublishes = {}
        onActivity()
        run(loop)
      },
      snapshot: (since) =>
        Effect.all({ totals, now: Clock.currentTimeMillis }).pipe(
          Effect.map(({ now, totals }) => ({
            node,
            now,
            periodSeconds,
            totals,
            samples: history.filter((entry) => entry.at > since)
          }))
        ),
      watchedHere: () => clock.unsafeCurrentTimeMillis() - lastViewedHereAt < IDLE_MS,
      idleMillis: IDLE_MS,
      delivered: () => readMetrics(metrics.snapshot()).emittedByType,
      published: () => (running ? { since: startedAt, counts: { ...publishes } } : undefined),
      active: () => running,
      countPublish: (eventType) => {
        publishes[eventType] = (publishes[eventType] ?? 0) + 1
      }
    }
    return overview
  })
