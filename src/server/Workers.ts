/**
 * The worker group of `GATEWAY_WORKERS` as one gateway to an operator: whichever worker node:cluster
 * hands a `/metrics` or `/readyz` request to asks the primary over IPC, the primary collects a
 * report (metrics snapshot and readiness) from every worker, and the worker answers for the group.
 *
 * Counters never go backwards between scrapes: the group's value is the sum over live workers'
 * latest reports plus, for each worker that has exited, the last report the primary had from it
 * (counters and histograms only; its gauges went with it). What a worker counted after its last
 * report is lost when it dies: the sum stays where it was and grows again from there.
 */
import type { Worker } from "node:cluster"
import { Context, Data, Duration, Effect, Layer } from "effect"
import { GatewayConfig } from "./Config.js"
import { Gateway, type GatewayShape } from "./core/Gateway.js"
import { cumulativeOnly, GatewayMetrics, mergeSnapshots, type MetricsSnapshot } from "./Metrics.js"

/** One process's readiness, as `/readyz` reports it. */
export type Readiness = "ready" | "draining" | "bus_unavailable"

/** A worker's state in a group report: its readiness, or why the primary has none. */
export type WorkerStatus = Readiness | "starting" | "unresponsive"

export const readinessOf = (gateway: GatewayShape): Readiness =>
  !gateway.isAccepting()
    ? "draining"
    : // Partitioned from the cluster: its clients would miss other nodes' events.
      gateway.busHealthy()
      ? "ready"
      : "bus_unavailable"

export interface GroupReport {
  /** Every worker's metrics added up, plus what exited workers had counted. */
  readonly metrics: MetricsSnapshot
  readonly workers: ReadonlyArray<{ readonly pid: number; readonly status: WorkerStatus }>
  /** `GATEWAY_WORKERS`: fewer workers than this (one being replaced) is not ready. */
  readonly expected: number
}

/** The group's `/readyz` status: `ready`, or the first reason a worker is not. */
export const groupStatus = (report: GroupReport): WorkerStatus =>
  report.workers.find((worker) => worker.status !== "ready")?.status ??
  (report.workers.length < report.expected ? "starting" : "ready")

export class WorkersUnavailable extends Data.TaggedError("WorkersUnavailable")<{
  readonly reason: "primary_timeout"
}> {}

export class WorkerGroup extends Context.Tag("filament/WorkerGroup")<
  WorkerGroup,
  { readonly report: Effect.Effect<GroupReport, WorkersUnavailable> }
>() {}

type Message =
  | { readonly _tag: "filament/report-request"; readonly id: number }
  | { readonly _tag: "filament/collect"; readonly id: number }
  | {
      readonly _tag: "filament/collected"
      readonly id: number
      readonly metrics: MetricsSnapshot
      readonly readiness: Readiness
    }
  | { readonly _tag: "filament/group-report"; readonly id: number; readonly report: GroupReport }

const isMessage = (value: unknown): value is Message =>
  typeof value === "object" &&
  value !== null &&
  typeof (value as { _tag?: unknown })._tag === "string" &&
  (value as { _tag: string })._tag.startsWith("filament/")

interface Round {
  readonly id: number
  readonly waiting: Set<Worker>
  readonly answered: Map<Worker, Readiness>
  /** The workers' requests this round answers (several when scrapes overlap). */
  readonly requests: Array<{ readonly worker: Worker; readonly id: number }>
}

/**
 * The primary's half: `add` each forked worker, `remove` it when it exits. Plain callbacks, like the
 * rest of the supervisor: node:cluster's IPC is event-driven and the primary runs nothing else. A
 * round asks every listening worker and answers when all have, or at `timeout` with what it has;
 * requests that arrive while a round is out join it, so there is one round at a time however many
 * scrapes come in.
 */
export const makePrimary = (options: { readonly expected: number; readonly timeout: Duration.Duration }) => {
  const timeoutMs = Duration.toMillis(options.timeout)
  const workers = new Set<Worker>()
  const listening = new Set<Worker>()
  const latest = new Map<Worker, MetricsSnapshot>()
  let exited: MetricsSnapshot = []
  let nextRound = 0
  let round: Round | undefined
  let timer: ReturnType<typeof setTimeout> | undefined

  const send = (worker: Worker, message: Message) => {
    if (worker.isConnected()) worker.send(message)
  }

  const reportOf = (answered: Map<Worker, Readiness>): GroupReport => ({
    metrics: mergeSnapshots([
      exited,
      ...[...workers].flatMap((worker) => {
        const snapshot = latest.get(worker)
        return snapshot === undefined ? [] : [snapshot]
      })
    ]),
    workers: [...workers].map((worker) => ({
      pid: worker.process.pid ?? 0,
      status: listening.has(worker) ? (answered.get(worker) ?? "unresponsive") : "starting"
    })),
    expected: options.expected
  })

  const finish = () => {
    if (round === undefined) return
    const done = round
    round = undefined
    clearTimeout(timer)
    const report = reportOf(done.answered)
    for (const request of done.requests)
      send(request.worker, { _tag: "filament/group-report", id: request.id, report })
  }

  const collect = (worker: Worker, requestId: number) => {
    if (round !== undefined) {
      round.requests.push({ worker, id: requestId })
      return
    }
    const started: Round = {
      id: nextRound++,
      waiting: new Set(listening),
      answered: new Map(),
      requests: [{ worker, id: requestId }]
    }
    round = started
    timer = setTimeout(finish, timeoutMs)
    for (const asked of started.waiting) send(asked, { _tag: "filament/collect", id: started.id })
    if (started.waiting.size === 0) finish()
  }

  const answered = (worker: Worker) => {
    if (round === undefined) return
    round.waiting.delete(worker)
    if (round.waiting.size === 0) finish()
  }

  const onMessage = (worker: Worker) => (message: unknown) => {
    if (!isMessage(message)) return
    if (message._tag === "filament/report-request") return collect(worker, message.id)
    if (message._tag !== "filament/collected") return
    latest.set(worker, message.metrics)
    if (round?.id !== message.id) return
    round.answered.set(worker, message.readiness)
    answered(worker)
  }

  return {
    add: (worker: Worker) => {
      workers.add(worker)
      worker.on("message", onMessage(worker))
      worker.once("listening", () => listening.add(worker))
    },
    remove: (worker: Worker) => {
      const last = latest.get(worker)
      if (last !== undefined) exited = mergeSnapshots([exited, cumulativeOnly(last)])
      latest.delete(worker)
      workers.delete(worker)
      listening.delete(worker)
      answered(worker)
    }
  }
}

/**
 * A worker's half: answers the primary's collections with this process's report, and asks the
 * primary for the group's (bounded: twice the primary's own timeout).
 */
export const makeWorker = Effect.gen(function* () {
  const metrics = yield* GatewayMetrics
  const gateway = yield* Gateway
  const config = yield* GatewayConfig
  const bound = Duration.times(config.workerReportTimeout, 2)
  let nextRequest = 0
  const pending = new Map<number, (report: GroupReport) => void>()
  const send = (message: Message) => {
    if (process.connected) process.send!(message)
  }
  const onMessage = (message: unknown) => {
    if (!isMessage(message)) return
    if (message._tag === "filament/collect")
      return send({
        _tag: "filament/collected",
        id: message.id,
        metrics: metrics.snapshot(),
        readiness: readinessOf(gateway)
      })
    if (message._tag === "filament/group-report") pending.get(message.id)?.(message.report)
  }
  yield* Effect.acquireRelease(
    Effect.sync(() => process.on("message", onMessage)),
    () => Effect.sync(() => process.off("message", onMessage))
  )
  const report: Effect.Effect<GroupReport, WorkersUnavailable> = Effect.async<GroupReport>((resume) => {
    const id = nextRequest++
    pending.set(id, (answer) => {
      pending.delete(id)
      resume(Effect.succeed(answer))
    })
    send({ _tag: "filament/report-request", id })
    return Effect.sync(() => pending.delete(id))
  }).pipe(
    Effect.timeoutFail({
      duration: bound,
      onTimeout: () => new WorkersUnavailable({ reason: "primary_timeout" })
    })
  )
  return { report }
})

/** In a `GATEWAY_WORKERS` worker: `/metrics` and `/readyz` answer for the whole group. */
export const layerWorker: Layer.Layer<WorkerGroup, never, GatewayMetrics | Gateway | GatewayConfig> =
  Layer.scoped(WorkerGroup, makeWorker)
