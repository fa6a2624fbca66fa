/**
 * GatewayMetrics: the original's metric families with their label names (reference §7.2), plus
 * ours; their snapshot and Prometheus text exposition (format 0.0.4) are in `MetricsSnapshot.ts`.
 *
 * Each `make` (each `layer` instance) owns its series, so several gateways in one process (an app
 * embedding two, the cluster tests) count apart; the process-wide view of a multi-process node is
 * `Workers`' merge of snapshots. Recording is a synchronous in-place add because it happens inside the
 * per-frame and per-broadcast plain-code paths; a fanout records once per broadcast, never once per
 * recipient. Every label value comes from a closed set, except `event_type`, which is bounded by the
 * manifest (see `ingressEventLabel`).
 */
import { Context, Layer } from "effect"
import { COMMANDS } from "../protocol/Commands.js"
import type { EventScope } from "../protocol/EventDefinition.js"
import { Manifest } from "../protocol/Manifest.js"
import {
  byLabelValues,
  renderSnapshot,
  type Family,
  type FamilySnapshot,
  type HistogramSeries,
  type Labels,
  type MetricsSnapshot,
  type ValueSeries
} from "./MetricsSnapshot.js"

export {
  cumulativeOnly,
  mergeSnapshots,
  PROMETHEUS_CONTENT_TYPE,
  renderSnapshot,
  type FamilySnapshot,
  type HistogramSeries,
  type MetricsSnapshot,
  type ValueSeries
} from "./MetricsSnapshot.js"

export type DeliveryScope = EventScope
export type DropReason = "full_queue" | "closed" | "oversized_outbound" | "serialize_error"
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
/** The streams of the event history (recovery): one per channel, guild and user. */
export const HISTORY_SCOPES = ["channel", "guild", "user"] as const
export type HistoryScope = (typeof HISTORY_SCOPES)[number]
/** How the recovery of one stream ended: exactly, or not with its reason (PROTOCOL.md, `recovery`). */
export const RECOVERY_OUTCOMES = [
  "recovered",
  "epoch_changed",
  "position_trimmed",
  "position_ahead",
  "too_many_events",
  "history_unavailable"
] as const
export type RecoveryOutcome = (typeof RECOVERY_OUTCOMES)[number]
/** The Redis-backed chat state a node re-asserts after Redis lost it. */
export type ClusterStore = "presence" | "voice"
/** Where an HTTP-layer refusal happened; `other` when the request never named its path in time. */
export type HttpSurface = "upgrade" | "publish" | "other"
export type HttpRejectReason =
  "request_timeout" | "rate_limited" | "ip_connection_limit" | "body_too_large" | "length_required"

/**
 * Where a rate limit refused: the HTTP limiter (429 `rate_limited`) on upgrades, publish calls and
 * inspector calls, or the per-connection ingress window (close 4008 `ingress_rate_limited`).
 */
export type RateLimitSurface = "upgrade" | "publish" | "admin" | "ingress"

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

/** Families in exposition order: the original's order (reference §7.1), then ours. */
const FAMILIES = [
  { name: "filament_auth_failures_total", help: "Authentication failures.", type: "counter" },
  {
    name: "filament_rate_limit_hits_total",
    help: "Requests and frames refused by a rate limit.",
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
  },
  {
    name: "filament_gateway_history_entries",
    help: "Events held in the event history for recovery, by stream scope.",
    type: "gauge"
  },
  {
    name: "filament_gateway_history_bytes",
    help: "Encoded bytes of the events held in the event history, by stream scope.",
    type: "gauge"
  },
  {
    name: "filament_gateway_recoveries_total",
    help: "Streams a reconnecting client asked to recover, by scope and outcome.",
    type: "counter"
  },
  {
    name: "filament_gateway_events_replayed_total",
    help: "Events replayed to recovering clients, by stream scope.",
    type: "counter"
  }
] as const satisfies ReadonlyArray<Family>

type FamilyName = (typeof FAMILIES)[number]["name"]

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
  /** `reason` is what the client was told: `ingress_rate_limited` on `ingress`, else `rate_limited`. */
  readonly rateLimitHit: (surface: RateLimitSurface) => void
  readonly connectionsChanged: (delta: number) => void
  readonly subscriptionsChanged: (delta: number) => void
  readonly fanoutDuration: (scope: DeliveryScope, seconds: number) => void
  readonly busPublished: () => void
  readonly busReceived: () => void
  readonly busDropped: (reason: BusDropReason) => void
  /** The bus is connected again after `outageSeconds` down. */
  readonly busReconnected: (outageSeconds: number) => void
  readonly busLag: (seconds: number) => void
  /** Every family of this instance as data (see `MetricsSnapshot`). */
  readonly snapshot: () => MetricsSnapshot
  /** A remote frame of an event with a follow-up whose payload did not decode. */
  readonly busUndecodable: (eventType: string) => void
  readonly busSubscribeFailed: () => void
  /** This node re-asserted its state in `store` after Redis lost it. */
  readonly clusterStateReasserted: (store: ClusterStore) => void
  readonly adminRequest: (outcome: AdminRequestOutcome) => void
  /** The event history of `scope` gained (positive) or lost (negative) entries and their bytes. */
  readonly historyChanged: (scope: HistoryScope, entries: number, bytes: number) => void
  /** One stream of a recovery ended with `outcome`. */
  readonly recovery: (scope: HistoryScope, outcome: RecoveryOutcome) => void
  readonly eventsReplayed: (scope: HistoryScope, count: number) => void
  /** Prometheus text exposition 0.0.4 of every family (HELP and TYPE even without series). */
  readonly render: () => string
}

export class GatewayMetrics extends Context.Tag("filament/GatewayMetrics")<
  GatewayMetrics,
  GatewayMetricsShape
>() {}

const FANOUT_BOUNDARIES = [0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1]

interface ValueCell {
  readonly labels: Labels
  value: number
}

interface HistogramCell {
  readonly labels: Labels
  /** Observations per bucket (not cumulative); the last is above every bound. */
  readonly counts: Array<number>
  sum: number
  count: number
}

/**
 * One family's series, a mutable cell per label set: recording is one map lookup (by the joined
 * values) and an add. The value sets are closed (see the module comment), so the map is bounded.
 */
const seriesOf = <Cell extends { readonly labels: Labels }>(
  names: ReadonlyArray<string>,
  makeCell: (labels: Labels) => Cell
) => {
  const cells = new Map<string, Cell>()
  const cell = (...values: ReadonlyArray<string>): Cell => {
    const key = values.join("\u0000")
    let found = cells.get(key)
    if (found === undefined) {
      found = makeCell(names.map((name, i) => [name, values[i]!] as const))
      cells.set(key, found)
    }
    return found
  }
  return { cell, cells: () => cells.values() }
}

const values = (...names: ReadonlyArray<string>) =>
  seriesOf<ValueCell>(names, (labels) => ({ labels, value: 0 }))

const histogram = (bounds: ReadonlyArray<number>, ...names: ReadonlyArray<string>) => {
  const series = seriesOf<HistogramCell>(names, (labels) => ({
    labels,
    counts: new Array<number>(bounds.length + 1).fill(0),
    sum: 0,
    count: 0
  }))
  const observe = (cell: HistogramCell, value: number) => {
    let bucket = 0
    while (bucket < bounds.length && value > bounds[bucket]!) bucket++
    cell.counts[bucket]!++
    cell.sum += value
    cell.count++
  }
  const snapshot = (): ReadonlyArray<HistogramSeries> =>
    Array.from(series.cells(), ({ count, counts, labels, sum }) => {
      let cumulative = 0
      return {
        labels,
        buckets: bounds.map((bound, i) => [bound, (cumulative += counts[i]!)] as const),
        sum,
        count
      }
    })
  return { cell: series.cell, observe, snapshot }
}

const valueSnapshot = (series: ReturnType<typeof values>): ReadonlyArray<ValueSeries> =>
  Array.from(series.cells(), ({ labels, value }) => ({ labels, value }))

/** Builds the service with series of its own (see the module comment). */
export const make = (): GatewayMetricsShape => {
  const authFailures = values("reason")
  const rateLimitHits = values("surface", "reason")
  const disconnects = values("reason")
  const emitted = values("scope", "event_type")
  const dropped = values("scope", "event_type", "reason")
  const unknownReceived = values("scope", "event_type")
  const parseRejected = values("scope", "reason")
  const voiceSyncRepairs = values("reason")
  const connectionsRejected = values("reason")
  const subscribeRejected = values("reason")
  const httpRejected = values("surface", "reason")
  const compatibilityEvents = values("surface", "path", "mode")
  const revocations = values("event_type")
  const voicePublishRefused = values("reason")
  const presenceSyncTruncated = values()
  const authPreviousSecret = values()
  const connections = values()
  const subscriptions = values()
  const fanoutDuration = histogram(FANOUT_BOUNDARIES, "scope")
  const busPublished = values()
  const busReceived = values()
  const busDropped = values("reason")
  const busReconnects = values()
  const busOutage = values()
  const busLag = histogram(FANOUT_BOUNDARIES)
  const busUndecodable = values("event_type")
  const busSubscribeFailures = values()
  const clusterStateReasserted = values("store")
  const adminRequests = values("outcome")
  const historyEntries = values("scope")
  const historyBytes = values("scope")
  const recoveries = values("scope", "outcome")
  const eventsReplayed = values("scope")
  // The unlabelled series exist from the start: a process that has not counted yet still shows 0
  // (every worker has a connections gauge), and `rate()` sees the first increase.
  const presenceSyncTruncatedTotal = presenceSyncTruncated.cell()
  const authPreviousSecretTotal = authPreviousSecret.cell()
  const connectionsNow = connections.cell()
  const subscriptionsNow = subscriptions.cell()
  const busPublishedTotal = busPublished.cell()
  const busReceivedTotal = busReceived.cell()
  const busReconnectsTotal = busReconnects.cell()
  const busOutageTotal = busOutage.cell()
  const busLagSeries = busLag.cell()
  const busSubscribeFailuresTotal = busSubscribeFailures.cell()
  // The recovery families have closed label sets: every series exists from the start (an empty
  // history shows 0, and `rate()` sees the first recovery).
  const historyCells = Object.fromEntries(
    HISTORY_SCOPES.map((scope) => {
      for (const outcome of RECOVERY_OUTCOMES) recoveries.cell(scope, outcome)
      eventsReplayed.cell(scope)
      return [scope, { entries: historyEntries.cell(scope), bytes: historyBytes.cell(scope) }]
    })
  ) as Record<HistoryScope, { readonly entries: ValueCell; readonly bytes: ValueCell }>

  const seriesByFamily: {
    readonly [Name in FamilyName]: () => ReadonlyArray<ValueSeries | HistogramSeries>
  } = {
    filament_auth_failures_total: () => valueSnapshot(authFailures),
    filament_rate_limit_hits_total: () => valueSnapshot(rateLimitHits),
    filament_ws_disconnects_total: () => valueSnapshot(disconnects),
    filament_gateway_events_emitted_total: () => valueSnapshot(emitted),
    filament_gateway_events_dropped_total: () => valueSnapshot(dropped),
    filament_gateway_events_unknown_received_total: () => valueSnapshot(unknownReceived),
    filament_gateway_events_parse_rejected_total: () => valueSnapshot(parseRejected),
    filament_voice_sync_repairs_total: () => valueSnapshot(voiceSyncRepairs),
    filament_gateway_connections_rejected_total: () => valueSnapshot(connectionsRejected),
    filament_gateway_subscribe_rejected_total: () => valueSnapshot(subscribeRejected),
    filament_gateway_http_rejected_total: () => valueSnapshot(httpRejected),
    filament_gateway_compatibility_events_total: () => valueSnapshot(compatibilityEvents),
    filament_gateway_revocations_total: () => valueSnapshot(revocations),
    filament_voice_publish_refused_total: () => valueSnapshot(voicePublishRefused),
    filament_presence_sync_truncated_total: () => valueSnapshot(presenceSyncTruncated),
    filament_auth_previous_secret_total: () => valueSnapshot(authPreviousSecret),
    filament_gateway_connections: () => valueSnapshot(connections),
    filament_gateway_subscriptions: () => valueSnapshot(subscriptions),
    filament_gateway_fanout_duration_seconds: fanoutDuration.snapshot,
    filament_gateway_bus_published_total: () => valueSnapshot(busPublished),
    filament_gateway_bus_received_total: () => valueSnapshot(busReceived),
    filament_gateway_bus_dropped_total: () => valueSnapshot(busDropped),
    filament_gateway_bus_reconnects_total: () => valueSnapshot(busReconnects),
    filament_gateway_bus_outage_seconds_total: () => valueSnapshot(busOutage),
    filament_gateway_bus_lag_seconds: busLag.snapshot,
    filament_gateway_bus_undecodable_total: () => valueSnapshot(busUndecodable),
    filament_gateway_bus_subscribe_failures_total: () => valueSnapshot(busSubscribeFailures),
    filament_cluster_state_reasserted_total: () => valueSnapshot(clusterStateReasserted),
    filament_gateway_admin_requests_total: () => valueSnapshot(adminRequests),
    filament_gateway_history_entries: () => valueSnapshot(historyEntries),
    filament_gateway_history_bytes: () => valueSnapshot(historyBytes),
    filament_gateway_recoveries_total: () => valueSnapshot(recoveries),
    filament_gateway_events_replayed_total: () => valueSnapshot(eventsReplayed)
  }
  const snapshot = (): MetricsSnapshot =>
    FAMILIES.map(
      (family) => ({ ...family, series: byLabelValues(seriesByFamily[family.name]()) }) as FamilySnapshot
    )

  return {
    emitted: (eventScope, eventType, count) => {
      if (count > 0) emitted.cell(eventScope, eventType).value += count
    },
    dropped: (eventScope, eventType, why, count = 1) => {
      if (count > 0) dropped.cell(eventScope, eventType, why).value += count
    },
    unknownReceived: (eventType) => {
      unknownReceived.cell("ingress", ingressEventLabel(eventType)).value++
    },
    parseRejected: (why) => {
      parseRejected.cell("ingress", why).value++
    },
    disconnect: (why) => {
      disconnects.cell(why).value++
    },
    authFailure: (why) => {
      authFailures.cell(why).value++
    },
    voiceSyncRepair: (why) => {
      voiceSyncRepairs.cell(why).value++
    },
    compatibilityEvent: (path, mode) => {
      compatibilityEvents.cell("server", path, mode).value++
    },
    revocation: (eventType, count) => {
      if (count > 0) revocations.cell(eventType).value += count
    },
    voicePublishRefused: (why) => {
      voicePublishRefused.cell(why).value++
    },
    presenceSyncTruncated: () => {
      presenceSyncTruncatedTotal.value++
    },
    authPreviousSecret: () => {
      authPreviousSecretTotal.value++
    },
    connectionRejected: (why) => {
      connectionsRejected.cell(why).value++
    },
    subscribeRejected: (why) => {
      subscribeRejected.cell(why).value++
    },
    httpRejected: (surface, why) => {
      httpRejected.cell(surface, why).value++
    },
    rateLimitHit: (surface) => {
      rateLimitHits.cell(surface, surface === "ingress" ? "ingress_rate_limited" : "rate_limited").value++
    },
    connectionsChanged: (delta) => {
      connectionsNow.value += delta
    },
    subscriptionsChanged: (delta) => {
      subscriptionsNow.value += delta
    },
    fanoutDuration: (eventScope, seconds) => fanoutDuration.observe(fanoutDuration.cell(eventScope), seconds),
    busPublished: () => {
      busPublishedTotal.value++
    },
    busReceived: () => {
      busReceivedTotal.value++
    },
    busDropped: (why) => {
      busDropped.cell(why).value++
    },
    busReconnected: (outageSeconds) => {
      busReconnectsTotal.value++
      // A counter never decreases.
      if (outageSeconds > 0) busOutageTotal.value += outageSeconds
    },
    busLag: (seconds) => busLag.observe(busLagSeries, seconds),
    snapshot,
    busUndecodable: (eventType) => {
      busUndecodable.cell(eventType).value++
    },
    busSubscribeFailed: () => {
      busSubscribeFailuresTotal.value++
    },
    clusterStateReasserted: (which) => {
      clusterStateReasserted.cell(which).value++
    },
    adminRequest: (why) => {
      adminRequests.cell(why).value++
    },
    historyChanged: (scope, entries, bytes) => {
      historyCells[scope].entries.value += entries
      historyCells[scope].bytes.value += bytes
    },
    recovery: (scope, outcome) => {
      recoveries.cell(scope, outcome).value++
    },
    eventsReplayed: (scope, count) => {
      if (count > 0) eventsReplayed.cell(scope).value += count
    },
    render: () => renderSnapshot(snapshot())
  }
}

export const layer: Layer.Layer<GatewayMetrics> = Layer.sync(GatewayMetrics, make)
