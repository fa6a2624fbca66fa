/** Prometheus exposition and label bounding. */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Metric } from "effect"
import { OTHER_EVENT_TYPE, ingressEventLabel, make, renderPrometheus } from "../../src/server/Metrics.js"
import { ORIGINAL_COUNTER_FAMILIES, seriesValue } from "./harness.js"

describe("GatewayMetrics", () => {
  it("prints HELP and TYPE for every family even without series, in the original's order", () => {
    const text = renderPrometheus([])
    const families = [...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((match) => match[1])
    expect(families.slice(0, 8)).toEqual(ORIGINAL_COUNTER_FAMILIES)
    expect(text).not.toMatch(/^filament_\S+ \d/m)
  })

  it.effect("series carry the original label names; histogram buckets are cumulative with +Inf", () =>
    Effect.sync(() => {
      const metrics = make()
      const labels = { scope: "channel", event_type: "message_create", reason: "oversized_outbound" }
      const before = seriesValue(metrics.render(), "filament_gateway_events_dropped_total", labels)
      metrics.dropped("channel", "message_create", "oversized_outbound")
      metrics.emitted("channel", "message_create", 3)
      metrics.fanoutDuration("channel", 0.00002)
      const text = renderPrometheus(Metric.unsafeSnapshot())
      expect(seriesValue(text, "filament_gateway_events_dropped_total", labels)).toBe(before + 1)
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
      expect(buckets).toEqual([...buckets].sort((a, b) => a - b))
    })
  )

  it("unknown ingress types are bounded: protocol names as themselves, anything else as `other`", () => {
    expect(ingressEventLabel("presence_sync")).toBe("presence_sync")
    expect(ingressEventLabel("subscribe")).toBe("subscribe")
    for (const name of ["unknown_ingress_event", "a", "x".repeat(64), "__proto__", "constructor"]) {
      expect(ingressEventLabel(name)).toBe(OTHER_EVENT_TYPE)
    }
  })

  it("label values are escaped", () => {
    make().disconnect('we"ird\\reason\n')
    expect(renderPrometheus(Metric.unsafeSnapshot())).toContain('reason="we\\"ird\\\\reason\\n"')
  })
})
