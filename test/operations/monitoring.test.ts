/**
 * The shipped monitoring: the alert rules pass `promtool check rules` and their unit tests
 * (`promtool test rules` on synthetic series), each alert has its runbook section in OPERATIONS.md,
 * and every query of the Grafana dashboard and the rules is accepted by a real Prometheus and names
 * only metrics and labels that a real gateway, after real traffic, exposes.
 */
import { readFileSync } from "node:fs"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { hasRedisServer, startRedis } from "../cluster/redis.js"
import { hasPrometheus, promtool, startPrometheus } from "./prometheus.js"
import { generateTraffic } from "./traffic.js"

const RULES = "docs/prometheus/alerts.yml"
const RULE_TESTS = "docs/prometheus/alerts.test.yml"
const DASHBOARD = "docs/grafana/filament-gateway.json"

const rulesText = readFileSync(RULES, "utf8")
const alerts = [...rulesText.matchAll(/^ {6}- alert: (\S+)$/gm)].map((match) => match[1]!)
const ruleExprs = [...rulesText.matchAll(/^ {8}expr: (.+)$/gm)].map((match) => match[1]!)
const runbooks = [...rulesText.matchAll(/^ {10}runbook: "(.+)"$/gm)].map((match) => match[1]!)

interface Panel {
  readonly title: string
  readonly targets: ReadonlyArray<{ readonly expr: string }>
}
const dashboard = JSON.parse(readFileSync(DASHBOARD, "utf8")) as { readonly panels: ReadonlyArray<Panel> }
const panelExprs = dashboard.panels.flatMap((panel) => panel.targets.map((target) => target.expr))
/** Grafana's range variable, as Prometheus itself would be asked. */
const asPromql = (expr: string) => expr.replaceAll("$__rate_interval", "1m")

const HISTOGRAM_SUFFIX = /_(bucket|sum|count)$/

/** The label names of each family's series in an exposition (histogram samples under their family). */
const labelsByFamily = (text: string) => {
  const families = new Map<string, Set<string>>()
  for (const match of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) families.set(match[1]!, new Set())
  for (const line of text.split("\n")) {
    const sample = /^([a-z_]+)(?:\{(.*)\})? /.exec(line)
    if (sample === null) continue
    const family = families.has(sample[1]!) ? sample[1]! : sample[1]!.replace(HISTOGRAM_SUFFIX, "")
    for (const label of (sample[2] ?? "").matchAll(/([a-z_]+)="/g)) families.get(family)?.add(label[1]!)
  }
  return families
}

/** `filament_*` metrics an expression names, each with the label names it selects or groups by. */
const namedMetrics = (expr: string) => {
  const named: Array<{ readonly metric: string; readonly labels: ReadonlyArray<string> }> = []
  for (const match of expr.matchAll(/(filament_[a-z_]+)(\{[^}]*\})?/g)) {
    named.push({
      metric: match[1]!,
      labels: [...(match[2] ?? "").matchAll(/([a-z_]+)(=~|!=|!~|=)/g)].map((label) => label[1]!)
    })
  }
  for (const match of expr.matchAll(/by \(([^)]*)\) \((?:rate|increase)\((filament_[a-z_]+)/g)) {
    named.push({ metric: match[2]!, labels: match[1]!.split(",").map((label) => label.trim()) })
  }
  return named
}

describe("alert rules", () => {
  it.skipIf(!hasPrometheus)("promtool check rules accepts them", () => {
    const checked = promtool(["check", "rules", RULES])
    expect(checked.status, checked.output).toBe(0)
    expect(checked.output).toContain(`SUCCESS: ${alerts.length} rules found`)
  })

  it.skipIf(!hasPrometheus)("their unit tests pass: each alert fires on its failure mode", () => {
    const tested = promtool(["test", "rules", RULE_TESTS])
    expect(tested.status, tested.output).toBe(0)
    const testedAlerts = new Set(
      [...readFileSync(RULE_TESTS, "utf8").matchAll(/alertname: (\S+)/g)].map((match) => match[1]!)
    )
    expect([...testedAlerts].sort()).toEqual([...alerts].sort())
  })

  it("each has a runbook line pointing at its section in OPERATIONS.md", () => {
    const operations = readFileSync("docs/OPERATIONS.md", "utf8")
    expect(runbooks).toHaveLength(alerts.length)
    alerts.forEach((alert, i) => {
      expect(runbooks[i]).toContain(`OPERATIONS.md#${alert.toLowerCase()}`)
      expect(operations).toMatch(new RegExp(`^#### ${alert}$`, "m"))
    })
  })
})

describe("dashboard and rules against a real gateway and a real Prometheus", () => {
  it.scoped.skipIf(!hasPrometheus || !hasRedisServer)(
    "every query is valid PromQL and names only metrics and labels the gateway exposes",
    () =>
      Effect.gen(function* () {
        const redis = yield* startRedis
        const node = yield* generateTraffic(redis)
        const exposed = labelsByFamily(yield* node.metrics())
        const prometheus = yield* startPrometheus([`127.0.0.1:${node.port}`])
        const titles = dashboard.panels.map((panel) => panel.title)
        for (const needed of [
          "Connections",
          "Deliveries",
          "Drops",
          "Slow-consumer evictions",
          "Fanout latency quantiles",
          "Ingress rejections",
          "Auth failures",
          "Bus messages",
          "Bus outage time"
        ])
          expect(
            titles.some((title) => title.startsWith(needed)),
            needed
          ).toBe(true)
        for (const expr of [...panelExprs, ...ruleExprs]) {
          for (const { labels, metric } of namedMetrics(expr)) {
            const family = exposed.has(metric) ? metric : metric.replace(HISTOGRAM_SUFFIX, "")
            expect(exposed.has(family), `${metric} in ${expr}`).toBe(true)
            for (const label of labels) {
              if (label === "le" && family !== metric) continue
              expect(exposed.get(family), `label ${label} of ${metric} in ${expr}`).toContain(label)
            }
          }
          // Throws with Prometheus's parse error otherwise.
          yield* prometheus.query(asPromql(expr))
        }
      }),
    60_000
  )
})
