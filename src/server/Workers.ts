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
import { Gateway, type GatewayShape } from "./Gateway.js"
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
  readonly waiting: Set<Worker>
  readonly answered: Map<Worker, Readiness>
  readonly finish: () => void
}

/**
 * The primary's half: `add` each forked worker, `remove` it when it exits. Plain callbacks, like the
 * rest of the supervisor: node:cluster's IPC is event-driven and the primary runs nothing else. A
 * round asks every listening worker and answers when all have, or at `timeout` with what it has.
 */
export const makePrimary = (options: { readonly expected: number; readonly timeout: Duration.Duration }) => {
  const timeoutMs = Duration.toMillis(options.timeout)
  const workers = new Set<Worker>()
  const listening = new Set<Worker>()
  const latest = new Map<Worker, MetricsSnapshot>()
  let exited: MetricsSnapshot = []
  let nextRound = 0
  const rounds = new Map<number, Round>()

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

  const collect = (requester: Worker, requestId: number) => {
    const id = nextRound++
    const round: Round = {
      waiting: new Set(listening),
      answered: new Map(),
      finish: () => {
        if (!rounds.delete(id)) return
        clearTimeout(timer)
        send(requester, { _tag: "filament/group-report", id: requestId, report: reportOf(round.answered) })
      }
    }
    const timer = setTimeout(round.finish, timeoutMs)
    rounds.set(id, round)
    for (const worker of round.waiting) send(worker, { _tag: "filament/collect", id })
    if (round.waiting.size === 0) round.finish()
  }

  const answered = (worker: Worker, round: Round) => {
    round.waiting.delete(worker)
    if (round.waiting.size === 0) round.finish()
  }

  const onMessage = (worker: Worker) => (message: unknown) => {
    if (!isMessage(message)) return
    if (message._tag === "filament/report-request") return collect(worker, message.id)
    if (message._tag !== "filament/collected") return
    latest.set(worker, message.metrics)
    const round = rounds.get(message.id)
    if (round === undefined) return
    round.answered.set(worker, message.readiness)
    answered(worker, round)
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
      for (const round of [...rounds.values()]) answered(worker, round)
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
