/**
 * Metrics as data and as text: the snapshot of every family (what a worker sends its primary), the
 * merge of several processes' snapshots, and the Prometheus text exposition (format 0.0.4). Pure;
 * the series themselves are counted by `GatewayMetrics` (Metrics.ts).
 */

/** A metric family: its name, HELP text and type. */
export interface Family {
  readonly name: string
  readonly help: string
  readonly type: "counter" | "gauge" | "histogram"
}

export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

export type Labels = ReadonlyArray<readonly [name: string, value: string]>

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

export const byLabelValues = <S extends { readonly labels: Labels }>(series: ReadonlyArray<S>): Array<S> =>
  series
    .map((entry) => ({ key: seriesKey(entry.labels), entry }))
    .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
    .map(({ entry }) => entry)

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
