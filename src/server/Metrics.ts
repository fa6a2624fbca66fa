/**
 * GatewayMetrics: the original's metric families with their label names (reference §7.2), plus
 * ours, on Effect `Metric`, and their Prometheus text exposition (format 0.0.4).
 *
 * Recording is synchronous (`unsafeModify`) because it happens inside the per-frame and per-broadcast
 * plain-code paths; a fanout records once per broadcast, never once per recipient. Every label value
 * comes from a closed set, except `event_type`, which is bounded by the manifest (see `ingressEventLabel`).
 */
import { Context, Layer, Metric, MetricBoundaries, MetricLabel } from "effect"
import type { MetricPair } from "effect"
import { COMMANDS } from "../protocol/Commands.js"
import type { EventScope } from "../protocol/EventDefinition.js"
import { Manifest } from "../protocol/Manifest.js"

export type DeliveryScope = EventScope
export type DropReason =
  "full_queue" | "closed" | "oversized_outbound" | "serialize_error" | "dispatch_timeout"
export type ParseRejectReason =
  | "invalid_envelope"
  | "invalid_subscribe_payload"
  | "invalid_unsubscribe_payload"
  | "invalid_message_create_payload"
export type AuthFailureReason = "unauthorized" | "forbidden"
export type ConnectionRejectReason = "too_many_connections" | "shutting_down"
export type SubscribeRejectReason = "forbidden" | "subscription_limit" | "revoked"
/** Dual-emit migration paths and modes (reference §8.4). */
export type CompatibilityPath = "channel_role_override_migration" | "channel_permission_override_migration"
export type CompatibilityMode = "legacy_emit" | "explicit_emit"
export type RevocationEvent = "workspace_member_remove" | "workspace_member_ban"
export type VoiceRefusalReason = "voice_channel_limit" | "voice_participant_limit"
/** Why a bus message was not published or not delivered (see EventBus). */
export type BusDropReason =
  | "bad_signature"
  | "oversized"
  | "malformed"
  | "stale"
  | "replayed"
  | "misrouted"
  | "backlog_full"
  | "unavailable"
/** The Redis-backed chat state a node re-asserts after Redis lost it. */
export type ClusterStore = "presence" | "voice"
/** Where an HTTP-layer refusal happened; `other` when the request never named its path in time. */
export type HttpSurface = "upgrade" | "publish" | "other"
export type HttpRejectReason =
  "request_timeout" | "rate_limited" | "ip_connection_limit" | "body_too_large" | "length_required"

/** How an inspector (`/admin`) call ended: the `outcome` label, a closed set. */
export type AdminRequestOutcome =
  "ok" | "unauthorized" | "rate_limited" | "invalid" | "not_found" | "too_many_viewers" | "error"

/** The label every ingress `t` outside the protocol's own names is counted under. */
export const OTHER_EVENT_TYPE = "other"

const commandNames = new Set<string>(COMMANDS.map((command) => command.type))

/**
 * Bounds the `event_type` label of unknown ingress frames: names the protocol defines count as
 * themselves (a client sending `presence_sync` is worth seeing), anything else as `other`, so a
 * client cannot grow the series set.
 */
export const ingressEventLabel = (type: string): string =>
  Manifest.lookup(type) !== undefined || commandNames.has(type) ? type : OTHER_EVENT_TYPE

interface Family {
  readonly name: string
  readonly help: string
  readonly type: "counter" | "gauge" | "histogram"
}

/** Families in exposition order: the original's order (reference §7.1), then ours. */
const FAMILIES = [
  { name: "filament_auth_failures_total", help: "Authentication failures.", type: "counter" },
  {
    name: "filament_rate_limit_hits_total",
    help: "HTTP rate limit hits (not used by the gateway).",
    type: "counter"
  },
  { name: "filament_ws_disconnects_total", help: "WebSocket disconnects by reason.", type: "counter" },
  {
    name: "filament_gateway_events_emitted_total",
    help: "Gateway events enqueued, per recipient.",
    type: "counter"
  },
  { name: "filament_gateway_events_dropped_total", help: "Gateway events dropped.", type: "counter" },
  {
    name: "filament_gateway_events_unknown_received_total",
    help: "Ingress frames with an unknown event type.",
    type: "counter"
  },
  {
    name: "filament_gateway_events_parse_rejected_total",
    help: "Ingress frames rejected by the decoder.",
    type: "counter"
  },
  {
    name: "filament_voice_sync_repairs_total",
    help: "voice_participant_sync snapshots sent.",
    type: "counter"
  },
  {
    name: "filament_gateway_connections_rejected_total",
    help: "WebSocket upgrades refused after authentication.",
    type: "counter"
  },
  {
    name: "filament_gateway_subscribe_rejected_total",
    help: "Subscribe commands refused with the connection kept.",
    type: "counter"
  },
  {
    name: "filament_gateway_http_rejected_total",
    help: "HTTP requests refused by the HTTP-layer limits.",
    type: "counter"
  },
  {
    name: "filament_gateway_compatibility_events_total",
    help: "Count of temporary dual-path compatibility events",
    type: "counter"
  },
  {
    name: "filament_gateway_revocations_total",
    help: "Connections that lost their subscriptions in a guild on a member removal or ban.",
    type: "counter"
  },
  {
    name: "filament_voice_publish_refused_total",
    help: "Voice joins refused over the voice projection caps.",
    type: "counter"
  },
  {
    name: "filament_presence_sync_truncated_total",
    help: "presence_sync snapshots cut at the id bound.",
    type: "counter"
  },
  {
    name: "filament_auth_previous_secret_total",
    help: "Tokens accepted with GATEWAY_JWT_PREVIOUS_SECRET (a secret rotation in progress).",
    type: "counter"
  },
  { name: "filament_gateway_connections", help: "Open gateway connections.", type: "gauge" },
  { name: "filament_gateway_subscriptions", help: "Channel subscriptions held.", type: "gauge" },
  {
    name: "filament_gateway_fanout_duration_seconds",
    help: "Time of one broadcast's delivery loop.",
    type: "histogram"
  },
  { name: "filament_gateway_bus_published_total", help: "Bus messages published to Redis.", type: "counter" },
  {
    name: "filament_gateway_bus_received_total",
    help: "Bus messages from other nodes accepted for local delivery.",
    type: "counter"
  },
  {
    name: "filament_gateway_bus_dropped_total",
    help: "Bus messages not published (unavailable) or refused on receipt, by reason.",
    type: "counter"
  },
  {
    name: "filament_gateway_bus_reconnects_total",
    help: "Bus reconnections after an outage.",
    type: "counter"
  },
  {
    name: "filament_gateway_bus_outage_seconds_total",
    help: "Time the bus was down (cross-node delivery gap), counted when it reconnects.",
    type: "counter"
  },
  {
    name: "filament_gateway_bus_lag_seconds",
    help: "From publish on another node to the start of local delivery.",
    type: "histogram"
  },
  {
    name: "filament_gateway_bus_undecodable_total",
    help: "Frames from other nodes whose payload this node could not decode for its follow-up (skipped).",
    type: "counter"
  },
  {
    name: "filament_gateway_bus_subscribe_failures_total",
    help: "Bus topic subscriptions that failed (each is retried with backoff).",
    type: "counter"
  },
  {
    name: "filament_cluster_state_reasserted_total",
    help: "Times this node wrote its presence or voice state to Redis again after Redis lost it.",
    type: "counter"
  },
  {
    name: "filament_gateway_admin_requests_total",
    help: "Inspector (/admin) calls by outcome.",
    type: "counter"
  }
] as const satisfies ReadonlyArray<Family>

type FamilyName = (typeof FAMILIES)[number]["name"]

const counter = (name: FamilyName) => Metric.counter(name, { incremental: true })

/**
 * Label sets by value, built once: Effect resolves a metric's series by the identity of the label
 * array, so a reused array makes recording a map lookup instead of hashing a new key. The value sets
 * are closed (see the module comment), so the cache is bounded.
 */
const labelSets = <const Names extends ReadonlyArray<string>>(...names: Names) => {
  const cache = new Map<string, ReadonlyArray<MetricLabel.MetricLabel>>()
  return (...values: { readonly [K in keyof Names]: string }): ReadonlyArray<MetricLabel.MetricLabel> => {
    const key = values.join("\u0000")
    let labels = cache.get(key)
    if (labels === undefined) {
      labels = names.map((name, i) => MetricLabel.make(name, values[i]!))
      cache.set(key, labels)
    }
    return labels
  }
}

export interface GatewayMetricsShape {
  readonly emitted: (scope: DeliveryScope, eventType: string, count: number) => void
  readonly dropped: (scope: DeliveryScope, eventType: string, reason: DropReason, count?: number) => void
  /** `eventType` is bounded here with `ingressEventLabel`. */
  readonly unknownReceived: (eventType: string) => void
  readonly parseRejected: (reason: ParseRejectReason) => void
  readonly disconnect: (reason: string) => void
  readonly authFailure: (reason: AuthFailureReason) => void
  readonly voiceSyncRepair: (reason: "subscribe") => void
  readonly compatibilityEvent: (path: CompatibilityPath, mode: CompatibilityMode) => void
  /** `connections` = how many of the user's connections lost subscriptions. */
  readonly revocation: (eventType: RevocationEvent, connections: number) => void
  readonly voicePublishRefused: (reason: VoiceRefusalReason) => void
  readonly presenceSyncTruncated: () => void
  readonly authPreviousSecret: () => void
  readonly connectionRejected: (reason: ConnectionRejectReason) => void
  readonly subscribeRejected: (reason: SubscribeRejectReason) => void
  readonly httpRejected: (surface: HttpSurface, reason: HttpRejectReason) => void
  readonly connectionsChanged: (delta: number) => void
  readonly subscriptionsChanged: (delta: number) => void
  readonly fanoutDuration: (scope: DeliveryScope, seconds: number) => void
  readonly busPublished: () => void
  readonly busReceived: () => void
  readonly busDropped: (reason: BusDropReason) => void
  /** The bus is connected again after `outageSeconds` down. */
  readonly busReconnected: (outageSeconds: number) => void
  readonly busLag: (seconds: number) => void
  /** Every family of this process as data (see `MetricsSnapshot`). */
  readonly snapshot: () => MetricsSnapshot
  /** A remote frame of an event with a follow-up whose payload did not decode. */
  readonly busUndecodable: (eventType: string) => void
  readonly busSubscribeFailed: () => void
  /** This node re-asserted its state in `store` after Redis lost it. */
  readonly clusterStateReasserted: (store: ClusterStore) => void
  readonly adminRequest: (outcome: AdminRequestOutcome) => void
  /** Prometheus text exposition 0.0.4 of every family (HELP and TYPE even without series). */
  readonly render: () => string
}

export class GatewayMetrics extends Context.Tag("filament/GatewayMetrics")<
  GatewayMetrics,
  GatewayMetricsShape
>() {}

export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

type Labels = ReadonlyArray<readonly [name: string, value: string]>

/** A counter's or gauge's series. */
export interface ValueSeries {
  readonly labels: Labels
  readonly value: number
}

/** A histogram's series: cumulative counts per finite upper bound (`+Inf` is `count`). */
export interface HistogramSeries {
  readonly labels: Labels
  readonly buckets: ReadonlyArray<readonly [upperBound: number, cumulative: number]>
  readonly sum: number
  readonly count: number
}

export type FamilySnapshot =
  | (Family & { readonly type: "counter" | "gauge"; readonly series: ReadonlyArray<ValueSeries> })
  | (Family & { readonly type: "histogram"; readonly series: ReadonlyArray<HistogramSeries> })

/**
 * Every family with its series, as plain data (structured-clone safe: what a worker sends its
 * primary), in exposition order, series sorted by label values.
 */
export type MetricsSnapshot = ReadonlyArray<FamilySnapshot>

const seriesKey = (labels: Labels) => labels.map(([, value]) => value).join("\u0000")

const byLabelValues = <S extends { readonly labels: Labels }>(series: ReadonlyArray<S>): Array<S> =>
  series
    .map((entry) => ({ key: seriesKey(entry.labels), entry }))
    .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
    .map(({ entry }) => entry)

const toSeries = (family: Family, pair: MetricPair.MetricPair.Untyped): ValueSeries | HistogramSeries => {
  const labels = pair.metricKey.tags.map((tag) => [tag.key, tag.value] as const)
  const state = pair.metricState as unknown as Record<string, unknown>
  if (family.type === "histogram") {
    // Effect's boundaries end with Infinity; that bucket is the `+Inf` one, printed from `count`.
    const buckets = (state["buckets"] as ReadonlyArray<readonly [number, number]>).filter(([bound]) =>
      Number.isFinite(bound)
    )
    return { labels, buckets, sum: state["sum"] as number, count: state["count"] as number }
  }
  return {
    labels,
    value: Number((family.type === "counter" ? state["count"] : state["value"]) as number | bigint)
  }
}

/** The families of `FAMILIES` found in `pairs` (normally `Metric.unsafeSnapshot()`). */
export const snapshotOf = (pairs: ReadonlyArray<MetricPair.MetricPair.Untyped>): MetricsSnapshot => {
  const byName = new Map<string, Array<MetricPair.MetricPair.Untyped>>()
  for (const pair of pairs) {
    const list = byName.get(pair.metricKey.name)
    if (list === undefined) byName.set(pair.metricKey.name, [pair])
    else list.push(pair)
  }
  return FAMILIES.map(
    (family) =>
      ({
        ...family,
        series: byLabelValues((byName.get(family.name) ?? []).map((pair) => toSeries(family, pair)))
      }) as FamilySnapshot
  )
}

const addBuckets = (
  a: HistogramSeries["buckets"],
  b: HistogramSeries["buckets"]
): HistogramSeries["buckets"] => {
  const counts = new Map<number, number>(a)
  for (const [bound, cumulative] of b) counts.set(bound, (counts.get(bound) ?? 0) + cumulative)
  return [...counts].sort(([x], [y]) => x - y)
}

/**
 * Adds snapshots up series by series (same family, same labels): the whole of several processes.
 * Families keep the order they first appear in.
 */
export const mergeSnapshots = (snapshots: ReadonlyArray<MetricsSnapshot>): MetricsSnapshot => {
  const families = new Map<string, { family: Family; series: Map<string, ValueSeries | HistogramSeries> }>()
  for (const snapshot of snapshots) {
    for (const { series, ...family } of snapshot) {
      let merged = families.get(family.name)
      if (merged === undefined) families.set(family.name, (merged = { family, series: new Map() }))
      for (const entry of series as ReadonlyArray<ValueSeries | HistogramSeries>) {
        const key = seriesKey(entry.labels)
        const previous = merged.series.get(key)
        merged.series.set(
          key,
          previous === undefined
            ? entry
            : "buckets" in entry && "buckets" in previous
              ? {
                  labels: entry.labels,
                  buckets: addBuckets(previous.buckets, entry.buckets),
                  sum: previous.sum + entry.sum,
                  count: previous.count + entry.count
                }
              : {
                  labels: entry.labels,
                  value: (previous as ValueSeries).value + (entry as ValueSeries).value
                }
        )
      }
    }
  }
  return [...families.values()].map(
    ({ family, series }) => ({ ...family, series: byLabelValues([...series.values()]) }) as FamilySnapshot
  )
}

/**
 * What outlives the process that counted it: counters and histograms; gauge families stay (in their
 * place in the order) without series.
 */
export const cumulativeOnly = (snapshot: MetricsSnapshot): MetricsSnapshot =>
  snapshot.map((family) => (family.type === "gauge" ? { ...family, series: [] } : family))

const escapeHelp = (text: string) => text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")

const escapeLabel = (value: string) => escapeHelp(value).replace(/"/g, '\\"')

const formatLabels = (labels: Labels) =>
  labels.length === 0 ? "" : `{${labels.map(([key, value]) => `${key}="${escapeLabel(value)}"`).join(",")}}`

const formatNumber = (value: number) =>
  Number.isFinite(value) ? String(value) : value > 0 ? "+Inf" : value < 0 ? "-Inf" : "NaN"

const seriesLines = (family: FamilySnapshot): ReadonlyArray<string> =>
  family.type === "histogram"
    ? family.series.flatMap(({ buckets, count, labels, sum }) => [
        ...buckets.map(
          ([bound, cumulative]) =>
            `${family.name}_bucket${formatLabels([...labels, ["le", formatNumber(bound)]])} ${cumulative}`
        ),
        `${family.name}_bucket${formatLabels([...labels, ["le", "+Inf"]])} ${count}`,
        `${family.name}_sum${formatLabels(labels)} ${formatNumber(sum)}`,
        `${family.name}_count${formatLabels(labels)} ${count}`
      ])
    : family.series.map(({ labels, value }) => `${family.name}${formatLabels(labels)} ${formatNumber(value)}`)

/** Prometheus text exposition 0.0.4 of a snapshot (HELP and TYPE even for a family without series). */
export const renderSnapshot = (snapshot: MetricsSnapshot): string =>
  snapshot
    .flatMap((family) => [
      `# HELP ${family.name} ${escapeHelp(family.help)}`,
      `# TYPE ${family.name} ${family.type}`,
      ...seriesLines(family)
    ])
    .join("\n") + "\n"

/** Renders the given metric pairs (normally `Metric.unsafeSnapshot()`) as Prometheus text. */
export const renderPrometheus = (pairs: ReadonlyArray<MetricPair.MetricPair.Untyped>): string =>
  renderSnapshot(snapshotOf(pairs))

const FANOUT_BOUNDARIES = MetricBoundaries.fromIterable([
  0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1
])

/**
 * Builds the service on Effect's global metric registry: counters are process-wide (as the
 * original's), so several gateways in one process add up.
 */
export const make = (): GatewayMetricsShape => {
  const authFailures = counter("filament_auth_failures_total")
  const disconnects = counter("filament_ws_disconnects_total")
  const emitted = counter("filament_gateway_events_emitted_total")
  const dropped = counter("filament_gateway_events_dropped_total")
  const unknownReceived = counter("filament_gateway_events_unknown_received_total")
  const parseRejected = counter("filament_gateway_events_parse_rejected_total")
  const voiceSyncRepairs = counter("filament_voice_sync_repairs_total")
  const connectionsRejected = counter("filament_gateway_connections_rejected_total")
  const subscribeRejected = counter("filament_gateway_subscribe_rejected_total")
  const httpRejected = counter("filament_gateway_http_rejected_total")
  const compatibilityEvents = counter("filament_gateway_compatibility_events_total")
  const revocations = counter("filament_gateway_revocations_total")
  const voicePublishRefused = counter("filament_voice_publish_refused_total")
  const presenceSyncTruncated = counter("filament_presence_sync_truncated_total")
  const authPreviousSecret = counter("filament_auth_previous_secret_total")
  const connections = Metric.gauge("filament_gateway_connections")
  const subscriptions = Metric.gauge("filament_gateway_subscriptions")
  const fanoutDuration = Metric.histogram("filament_gateway_fanout_duration_seconds", FANOUT_BOUNDARIES)
  const busPublished = counter("filament_gateway_bus_published_total")
  const busReceived = counter("filament_gateway_bus_received_total")
  const busDropped = counter("filament_gateway_bus_dropped_total")
  const busReconnects = counter("filament_gateway_bus_reconnects_total")
  const busOutage = counter("filament_gateway_bus_outage_seconds_total")
  const busLag = Metric.histogram("filament_gateway_bus_lag_seconds", FANOUT_BOUNDARIES)
  const busUndecodable = counter("filament_gateway_bus_undecodable_total")
  const busSubscribeFailures = counter("filament_gateway_bus_subscribe_failures_total")
  const clusterStateReasserted = counter("filament_cluster_state_reasserted_total")
  // The unlabelled series exist from the start: a process that has not counted yet still shows 0
  // (every worker has a connections gauge), and `rate()` sees the first increase.
  for (const metric of [
    presenceSyncTruncated,
    authPreviousSecret,
    connections,
    subscriptions,
    busPublished,
    busReceived,
    busReconnects,
    busOutage,
    busLag,
    busSubscribeFailures
  ])
    metric.unsafeValue([])
  const store = labelSets("store")
  const adminRequests = counter("filament_gateway_admin_requests_total")
  const outcome = labelSets("outcome")
  const scopeType = labelSets("scope", "event_type")
  const scopeTypeReason = labelSets("scope", "event_type", "reason")
  const scopeReason = labelSets("scope", "reason")
  const surfaceReason = labelSets("surface", "reason")
  const reason = labelSets("reason")
  const surfacePathMode = labelSets("surface", "path", "mode")
  const eventTypeOnly = labelSets("event_type")
  const scope = labelSets("scope")
  return {
    emitted: (eventScope, eventType, count) => {
      if (count > 0) emitted.unsafeModify(count, scopeType(eventScope, eventType))
    },
    dropped: (eventScope, eventType, why, count = 1) => {
      if (count > 0) dropped.unsafeModify(count, scopeTypeReason(eventScope, eventType, why))
    },
    unknownReceived: (eventType) =>
      unknownReceived.unsafeModify(1, scopeType("ingress", ingressEventLabel(eventType))),
    parseRejected: (why) => parseRejected.unsafeModify(1, scopeReason("ingress", why)),
    disconnect: (why) => disconnects.unsafeModify(1, reason(why)),
    authFailure: (why) => authFailures.unsafeModify(1, reason(why)),
    voiceSyncRepair: (why) => voiceSyncRepairs.unsafeModify(1, reason(why)),
    compatibilityEvent: (path, mode) =>
      compatibilityEvents.unsafeModify(1, surfacePathMode("server", path, mode)),
    revocation: (eventType, count) => {
      if (count > 0) revocations.unsafeModify(count, eventTypeOnly(eventType))
    },
    voicePublishRefused: (why) => voicePublishRefused.unsafeModify(1, reason(why)),
    presenceSyncTruncated: () => presenceSyncTruncated.unsafeModify(1, []),
    authPreviousSecret: () => authPreviousSecret.unsafeModify(1, []),
    connectionRejected: (why) => connectionsRejected.unsafeModify(1, reason(why)),
    subscribeRejected: (why) => subscribeRejected.unsafeModify(1, reason(why)),
    httpRejected: (surface, why) => httpRejected.unsafeModify(1, surfaceReason(surface, why)),
    connectionsChanged: (delta) => connections.unsafeModify(delta, []),
    subscriptionsChanged: (delta) => subscriptions.unsafeModify(delta, []),
    fanoutDuration: (eventScope, seconds) => fanoutDuration.unsafeUpdate(seconds, scope(eventScope)),
    busPublished: () => busPublished.unsafeModify(1, []),
    busReceived: () => busReceived.unsafeModify(1, []),
    busDropped: (why) => busDropped.unsafeModify(1, reason(why)),
    busReconnected: (outageSeconds) => {
      busReconnects.unsafeModify(1, [])
      busOutage.unsafeModify(outageSeconds, [])
    },
    busLag: (seconds) => busLag.unsafeUpdate(seconds, []),
    snapshot: () => snapshotOf(Metric.unsafeSnapshot()),
    busUndecodable: (eventType) => busUndecodable.unsafeModify(1, eventTypeOnly(eventType)),
    busSubscribeFailed: () => busSubscribeFailures.unsafeModify(1, []),
    clusterStateReasserted: (which) => clusterStateReasserted.unsafeModify(1, store(which)),
    adminRequest: (why) => adminRequests.unsafeModify(1, outcome(why)),
    render: () => renderPrometheus(Metric.unsafeSnapshot())
  }
}

export const layer: Layer.Layer<GatewayMetrics> = Layer.sync(GatewayMetrics, make)
