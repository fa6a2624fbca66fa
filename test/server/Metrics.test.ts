/** Prometheus exposition and label bounding. */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import {
  cumulativeOnly,
  mergeSnapshots,
  OTHER_EVENT_TYPE,
  ingressEventLabel,
  make,
  renderSnapshot,
  type FamilySnapshot,
  type MetricsSnapshot
} from "../../src/server/Metrics.js"
import { ORIGINAL_COUNTER_FAMILIES, seriesValue } from "./harness.js"

/** Every family, without series. */
const allFamilies = (): MetricsSnapshot =>
  make()
    .snapshot()
    .map((family) => ({ ...family, series: [] }) as FamilySnapshot)

describe("GatewayMetrics", () => {
  it("prints HELP and TYPE for every family even without series, in the original's order", () => {
    const text = renderSnapshot(allFamilies())
    const families = [...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((match) => match[1])
    expect(families.slice(0, 8)).toEqual(ORIGINAL_COUNTER_FAMILIES)
    expect(text).not.toMatch(/^filament_\S+ \d/m)
  })

  it.effect("series carry the original label names; histogram buckets are cumulative with +Inf", () =>
    Effect.sync(() => {
      const metrics = make()
      const labels = { scope: "channel", event_type: "message_create", reason: "oversized_outbound" }
      metrics.dropped("channel", "message_create", "oversized_outbound")
      metrics.emitted("channel", "message_create", 3)
      metrics.fanoutDuration("channel", 0.00002)
      metrics.fanoutDuration("channel", 0.003)
      metrics.fanoutDuration("channel", 2)
      const text = metrics.render()
      expect(seriesValue(text, "filament_gateway_events_dropped_total", labels)).toBe(1)
      expect(text).toMatch(
        /^filament_gateway_events_dropped_total\{scope="channel",event_type="message_create",reason="oversized_outbound"\} \d+$/m
      )
      expect(text).toMatch(
        /^filament_gateway_fanout_duration_seconds_bucket\{scope="channel",le="\+Inf"\} \d+$/m
      )
      const buckets = [
        ...text.matchAll(
          /^filament_gateway_fanout_duration_seconds_bucket\{scope="channel",le="[^"]+"\} (\d+)$/gm
        )
      ].map((match) => Number(match[1]))
      expect(buckets).toEqual([0, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 3])
      expect(text).toContain('filament_gateway_fanout_duration_seconds_sum{scope="channel"} 2.00302\n')
      // The +Inf bucket is printed once.
      expect(text).not.toContain('le="Infinity"')
      expect(
        text.match(/^filament_gateway_fanout_duration_seconds_bucket\{scope="channel",le="\+Inf"\}/gm)
      ).toHaveLength(1)
    })
  )

  it("snapshots of several processes add up series by series; gauges do not outlive their process", () => {
    const one = allFamilies()
    const of = (name: string, series: ReadonlyArray<unknown>) =>
      one.map((family) => (family.name === name ? { ...family, series } : family)) as MetricsSnapshot
    const a = mergeSnapshots([
      of("filament_ws_disconnects_total", [{ labels: [["reason", "client_close"]], value: 2 }]),
      of("filament_gateway_connections", [{ labels: [], value: 3 }]),
      of("filament_gateway_bus_lag_seconds", [
        {
          labels: [],
          buckets: [
            [0.1, 1],
            [1, 2]
          ],
          sum: 0.6,
          count: 3
        }
      ])
    ])
    const b = mergeSnapshots([
      of("filament_ws_disconnects_total", [
        { labels: [["reason", "slow_consumer"]], value: 1 },
        { labels: [["reason", "client_close"]], value: 5 }
      ]),
      of("filament_gateway_connections", [{ labels: [], value: 4 }]),
      of("filament_gateway_bus_lag_seconds", [
        {
          labels: [],
          buckets: [
            [0.1, 0],
            [1, 1]
          ],
          sum: 0.5,
          count: 1
        }
      ])
    ])
    const text = renderSnapshot(mergeSnapshots([a, b]))
    expect(text).toContain('filament_ws_disconnects_total{reason="client_close"} 7\n')
    expect(text).toContain('filament_ws_disconnects_total{reason="slow_consumer"} 1\n')
    expect(text).toContain("filament_gateway_connections 7\n")
    expect(text).toContain(
      [
        'filament_gateway_bus_lag_seconds_bucket{le="0.1"} 1',
        'filament_gateway_bus_lag_seconds_bucket{le="1"} 3',
        'filament_gateway_bus_lag_seconds_bucket{le="+Inf"} 4',
        "filament_gateway_bus_lag_seconds_sum 1.1",
        "filament_gateway_bus_lag_seconds_count 4"
      ].join("\n")
    )
    // Families keep the exposition order.
    expect([...text.matchAll(/^# TYPE (\S+)/gm)].map((m) => m[1])).toEqual(one.map((family) => family.name))
    // What a primary keeps of a worker that exited, added to the live ones: order unchanged.
    const kept = mergeSnapshots([cumulativeOnly(a), b])
    expect(kept.map((family) => family.name)).toEqual(one.map((family) => family.name))
    const keptText = renderSnapshot(kept)
    expect(keptText).toContain('filament_ws_disconnects_total{reason="client_close"} 7\n')
    expect(keptText).toContain("filament_gateway_connections 4\n")
  })

  it("unlabelled families show their series from the start", () => {
    const text = make().render()
    for (const name of ["filament_gateway_connections", "filament_gateway_bus_published_total"])
      expect(text).toMatch(new RegExp(`^${name} \\d+$`, "m"))
  })

  it("the recovery families show every series from the start and count what they are given", () => {
    const metrics = make()
    const text = metrics.render()
    for (const scope of ["channel", "guild", "user"]) {
      expect(seriesValue(text, "filament_gateway_history_entries", { scope })).toBe(0)
      expect(text).toContain(`filament_gateway_history_bytes{scope="${scope}"} 0\n`)
      expect(text).toContain(`filament_gateway_events_replayed_total{scope="${scope}"} 0\n`)
      expect(text).toContain(
        `filament_gateway_recoveries_total{scope="${scope}",outcome="too_many_events"} 0\n`
      )
    }
    metrics.historyChanged("user", 3, 120)
    metrics.historyChanged("user", -1, -40)
    metrics.recovery("channel", "recovered")
    metrics.recovery("channel", "recovered")
    metrics.recovery("guild", "epoch_changed")
    metrics.eventsReplayed("channel", 15)
    metrics.eventsReplayed("channel", 0)
    const after = metrics.render()
    expect(seriesValue(after, "filament_gateway_history_entries", { scope: "user" })).toBe(2)
    expect(seriesValue(after, "filament_gateway_history_bytes", { scope: "user" })).toBe(80)
    expect(
      seriesValue(after, "filament_gateway_recoveries_total", { scope: "channel", outcome: "recovered" })
    ).toBe(2)
    expect(
      seriesValue(after, "filament_gateway_recoveries_total", { scope: "guild", outcome: "epoch_changed" })
    ).toBe(1)
    expect(seriesValue(after, "filament_gateway_events_replayed_total", { scope: "channel" })).toBe(15)
  })

  it("unknown ingress types are bounded: protocol names as themselves, anything else as `other`", () => {
    expect(ingressEventLabel("presence_sync")).toBe("presence_sync")
    expect(ingressEventLabel("subscribe")).toBe("subscribe")
    for (const name of ["unknown_ingress_event", "a", "x".repeat(64), "__proto__", "constructor"]) {
      expect(ingressEventLabel(name)).toBe(OTHER_EVENT_TYPE)
    }
  })

  it("label values are escaped", () => {
    const metrics = make()
    metrics.disconnect('we"ird\\reason\n')
    expect(metrics.render()).toContain('reason="we\\"ird\\\\reason\\n"')
  })

  it("each instance counts apart (two gateways in one process do not add up)", () => {
    const [a, b] = [make(), make()]
    a.disconnect("client_close")
    a.disconnect("client_close")
    b.disconnect("client_close")
    a.connectionsChanged(2)
    a.busLag(0.01)
    expect(seriesValue(a.render(), "filament_ws_disconnects_total", { reason: "client_close" })).toBe(2)
    expect(seriesValue(b.render(), "filament_ws_disconnects_total", { reason: "client_close" })).toBe(1)
    expect(seriesValue(b.render(), "filament_gateway_connections")).toBe(0)
    expect(seriesValue(b.render(), "filament_gateway_bus_lag_seconds_count")).toBe(0)
  })
})
