/**
 * `/metrics` judged by the real thing: `promtool check metrics` over the whole exposition of a
 * gateway that has seen every kind of traffic, and a real Prometheus server scraping a gateway
 * process on loopback, queried over its HTTP API for what the test generated.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { eventuallyEffect } from "../deadline.js"
import { startNodeProcess, subscribe, connectToProcess } from "../cluster/chat.js"
import { freePort, hasRedisServer, startRedis } from "../cluster/redis.js"
import { newId } from "../server/harness.js"
import { hasPrometheus, promtool, startPrometheus } from "./prometheus.js"
import { generateTraffic } from "./traffic.js"

/** Family names of an exposition (from its TYPE lines) and the names of its samples. */
const familiesOf = (text: string) => [...text.matchAll(/^# TYPE (\S+) \S+$/gm)].map((match) => match[1]!)
const samplesOf = (text: string, family: string) =>
  text
    .split("\n")
    .filter((line) => !line.startsWith("#") && new RegExp(`^${family}(_bucket|_sum|_count)?[{ ]`).test(line))

describe("the /metrics exposition", () => {
  it.scoped.skipIf(!hasPrometheus || !hasRedisServer)(
    "after traffic that reaches every family, promtool check metrics accepts the whole output",
    () =>
      Effect.gen(function* () {
        const redis = yield* startRedis
        const node = yield* generateTraffic(redis)
        const text = yield* node.metrics()
        for (const family of familiesOf(text))
          expect(samplesOf(text, family), `${family} has a series`).not.toEqual([])
        // One +Inf bucket per histogram series, none spelled otherwise.
        expect(text).not.toMatch(/le="Infinity"/)
        const infBuckets = text.match(/_bucket\{[^}]*le="\+Inf"\}/g) ?? []
        expect(new Set(infBuckets).size).toBe(infBuckets.length)
        const checked = promtool(["check", "metrics"], text)
        expect(checked, checked.output).toEqual({ status: 0, output: "" })
      }),
    60_000
  )

  it.live.skipIf(!hasPrometheus)(
    "a real Prometheus scrapes a gateway process: the delivery rate and a fanout latency quantile",
    () =>
      Effect.scoped(
        Effect.gen(function* () {
          const port = yield* freePort
          const secret = "exposition-jwt-secret-0123456789-0123456789"
          const publishKey = "exposition-publish-key-0123456789-0123456789"
          yield* startNodeProcess({
            GATEWAY_PORT: String(port),
            GATEWAY_JWT_SECRET: secret,
            GATEWAY_PUBLISH_KEY: publishKey
          })
          const prometheus = yield* startPrometheus([`127.0.0.1:${port}`])
          const [guild, channel] = [newId(), newId()]
          const clients = 3
          const messages = 20
          for (let i = 0; i < clients; i++) {
            const client = yield* connectToProcess(port, Redacted.make(secret), guild)
            yield* subscribe(client, guild, channel)
          }
          const publish = (count: number) =>
            Effect.gen(function* () {
              for (let i = 0; i < count; i++) {
                const response = yield* Effect.promise(() =>
                  fetch(`http://127.0.0.1:${port}/v1/publish`, {
                    method: "POST",
                    headers: { authorization: `Bearer ${publishKey}`, "content-type": "application/json" },
                    body: JSON.stringify({
                      t: "channel_create",
                      d: { guild_id: guild, channel: { channel_id: newId(), name: `c${i}`, kind: "text" } }
                    })
                  })
                )
                expect(response.status).toBe(202)
              }
            })
          const delivered = `filament_gateway_events_emitted_total{scope="guild",event_type="channel_create"}`
          // Prometheus stored exactly what the gateway counted.
          const scraped = (total: number) =>
            eventuallyEffect(
              `Prometheus has scraped ${total} deliveries`,
              Effect.map(prometheus.query(delivered), (result) => result[0]?.value === total),
              10_000,
              50
            )
          // Twice: a labelled series is born at its first value, so a rate needs a second one.
          yield* publish(messages)
          yield* scraped(clients * messages)
          yield* publish(messages)
          yield* scraped(2 * clients * messages)
          const [rate] = yield* prometheus.query(`rate(${delivered}[1m])`)
          expect(rate?.value).toBeGreaterThan(0)
          // Prometheus ingested one infinite bucket per series. The old second one (le="Infinity", a
          // different label value) was stored as its own bucket series: a phantom bucket in every
          // `by (le)` aggregation and heatmap (Prometheus 2.42's histogram_quantile happened to
          // tolerate it; promtool check metrics does not flag it).
          expect(
            yield* prometheus.query(`filament_gateway_fanout_duration_seconds_bucket{le="Infinity"}`)
          ).toEqual([])
          const [p99] = yield* prometheus.query(
            `histogram_quantile(0.99, sum by (le) (rate(filament_gateway_fanout_duration_seconds_bucket{scope="guild"}[1m])))`
          )
          // A loop over three local clients: far below the half-second bucket.
          expect(p99?.value).toBeGreaterThan(0)
          expect(p99?.value).toBeLessThan(0.5)
          const [target] = yield* prometheus.targets
          expect(target).toMatchObject({ health: "up", lastError: "" })
          // A series exposed twice in one scrape (e.g. two infinite buckets) is dropped and counted here.
          expect(
            yield* prometheus.selfMetric("prometheus_target_scrapes_sample_duplicate_timestamp_total")
          ).toBe(0)
          expect(yield* prometheus.selfMetric("prometheus_target_scrapes_sample_out_of_order_total")).toBe(0)
        })
      ),
    60_000
  )
})
