/**
 * `GATEWAY_WORKERS` as an operator meets it: separate processes (a node:cluster primary and its
 * workers sharing one port), joined only by a real `redis-server`; refused without Redis.
 */
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process"
import { get as httpGet } from "node:http"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import WebSocket from "ws"
import * as Auth from "../../src/server/Auth.js"
import { familySum } from "../adversarial/support.js"
import { eventuallyEffect, within } from "../deadline.js"
import { DEADLINE_MS, newId, seriesValue, TestClient, type Frame } from "../server/harness.js"
import { connectToProcess } from "./chat.js"
import { freePort, hasRedisServer, startRedis } from "./redis.js"

const JWT_SECRET = "workers-jwt-secret-0123456789-0123456789"
const PUBLISH_KEY = "workers-publish-key-0123456789-0123456789"
const BUS_SECRET = "workers-bus-secret-0123456789-0123456789"
/** Two workers compile the sources with tsx before they listen. */
const START_DEADLINE_MS = 20_000

const withoutGatewayKeys = (env: NodeJS.ProcessEnv) =>
  Object.fromEntries(Object.entries(env).filter(([key]) => !key.startsWith("GATEWAY_")))

interface Started {
  readonly child: ChildProcessWithoutNullStreams
  readonly output: () => string
  readonly exit: Promise<number | null>
}

const startMain = (env: Record<string, string>) =>
  Effect.acquireRelease(
    Effect.sync((): Started => {
      const child = spawn(process.execPath, ["--import", "tsx", "src/server/main.ts"], {
        env: { ...withoutGatewayKeys(process.env), ...env }
      })
      let output = ""
      child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()))
      child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()))
      const exit = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
      return { child, output: () => output, exit }
    }),
    ({ child, exit }) =>
      Effect.promise(async () => {
        if (child.exitCode !== null || child.signalCode !== null) return
        child.kill("SIGKILL") // the workers exit when their primary's IPC channel closes
        await exit
      })
  )

const outputMatches = (started: Started, check: (output: string) => boolean) =>
  new Promise<void>((resolve) => {
    const probe = () => {
      if (!check(started.output())) return
      started.child.stdout.off("data", probe)
      started.child.stderr.off("data", probe)
      resolve()
    }
    started.child.stdout.on("data", probe)
    started.child.stderr.on("data", probe)
    probe()
  })

const nextOfType = (client: TestClient, t: string) =>
  Effect.gen(function* () {
    for (;;) {
      const frame: Frame = yield* client.next(`frame "${t}"`)
      if (frame.t === t) return frame
    }
  })

describe("GATEWAY_WORKERS", () => {
  it.live("more than one worker without GATEWAY_REDIS_URL is refused with a clear message, exit 1", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const started = yield* startMain({ GATEWAY_WORKERS: "2", GATEWAY_PORT: "0" })
        expect(yield* Effect.promise(() => within("exit", started.exit, START_DEADLINE_MS))).toBe(1)
        expect(started.output()).toContain(
          "GATEWAY_WORKERS=2 needs GATEWAY_REDIS_URL: worker processes reach each other's connections only over the Redis bus"
        )
      })
    )
  )

  it.live.skipIf(!hasRedisServer)(
    "two workers share the port; a publish reaches every client, on either worker, exactly once; SIGTERM drains and exits 0",
    () =>
      Effect.scoped(
        Effect.gen(function* () {
          const redis = yield* startRedis
          const port = yield* freePort
          const started = yield* startMain({
            GATEWAY_WORKERS: "2",
            GATEWAY_PORT: String(port),
            GATEWAY_JWT_SECRET: JWT_SECRET,
            GATEWAY_PUBLISH_KEY: PUBLISH_KEY,
            GATEWAY_REDIS_URL: redis.url,
            GATEWAY_BUS_SECRET: BUS_SECRET
          })
          yield* Effect.promise(() =>
            within(
              "both workers listening",
              outputMatches(started, (output) => output.split("filament-gateway listening on").length === 3),
              START_DEADLINE_MS
            )
          )
          const [guild, channel] = [newId(), newId()]
          const clients: Array<TestClient> = []
          for (let i = 0; i < 4; i++) {
            const token = yield* Auth.signToken({
              secret: Redacted.make(JWT_SECRET),
              userId: newId(),
              expiresAt: Math.floor(Date.now() / 1000) + 3600,
              guilds: { [guild]: "*" }
            })
            const socket = new WebSocket(`ws://127.0.0.1:${port}/gateway/ws?access_token=${token}`)
            const client = new TestClient(socket)
            yield* Effect.promise(() =>
              within("open", new Promise((resolve) => socket.once("open", resolve)))
            )
            yield* nextOfType(client, "ready")
            client.send({ v: 1, t: "subscribe", d: { guild_id: guild, channel_id: channel } })
            yield* nextOfType(client, "subscribed")
            clients.push(client)
          }
          const publish = (name: string) =>
            Effect.promise(async () => {
              const response = await fetch(`http://127.0.0.1:${port}/v1/publish`, {
                method: "POST",
                headers: { authorization: `Bearer ${PUBLISH_KEY}`, "content-type": "application/json" },
                body: JSON.stringify({
                  t: "channel_create",
                  d: { guild_id: guild, channel: { channel_id: newId(), name, kind: "text" } }
                })
              })
              return { status: response.status, body: (await response.json()) as { recipients: number } }
            })
          const first = yield* publish("first")
          expect(first.status).toBe(202)
          // node:cluster hands connections to the workers in turn: the worker that took the publish
          // holds two of the four clients; the other two were reached over the bus.
          expect(first.body.recipients).toBe(2)
          yield* publish("second")
          for (const client of clients) {
            expect((yield* nextOfType(client, "channel_create")).d["channel"]).toMatchObject({
              name: "first"
            })
            // No duplicate of "first": per publisher, order is kept, so a copy would come before this.
            expect((yield* nextOfType(client, "channel_create")).d["channel"]).toMatchObject({
              name: "second"
            })
          }

          started.child.kill("SIGTERM")
          for (const client of clients)
            expect(yield* client.waitClosed()).toEqual({ code: 1001, reason: "going_away" })
          expect(yield* Effect.promise(() => within("primary exit", started.exit, START_DEADLINE_MS))).toBe(0)
          for (const client of clients) client.socket.terminate()
        })
      )
  )

  it.live.skipIf(!hasRedisServer)(
    "/metrics and /readyz answer for every worker, whichever takes the request; a replaced worker does not turn a counter back",
    () =>
      Effect.scoped(
        Effect.gen(function* () {
          const redis = yield* startRedis
          const port = yield* freePort
          const started = yield* startMain({
            GATEWAY_WORKERS: "2",
            GATEWAY_PORT: String(port),
            GATEWAY_JWT_SECRET: JWT_SECRET,
            GATEWAY_PUBLISH_KEY: PUBLISH_KEY,
            GATEWAY_REDIS_URL: redis.url,
            GATEWAY_BUS_SECRET: BUS_SECRET,
            GATEWAY_WORKER_REPORT_TIMEOUT_SECS: "0.5"
          })
          yield* Effect.promise(() =>
            within(
              "both workers listening",
              outputMatches(started, (output) => output.split("filament-gateway listening on").length === 3),
              START_DEADLINE_MS
            )
          )
          // A new TCP connection per request, so that node:cluster hands each to the next worker in
          // turn. Status 0: no answer within `ms` or the connection was reset (a worker that died or
          // is stopped).
          const get = (path: string, ms = DEADLINE_MS) =>
            Effect.async<{ status: number; body: string }>((resume) => {
              const request = httpGet(
                `http://127.0.0.1:${port}${path}`,
                { agent: false, signal: AbortSignal.timeout(ms) },
                (response) => {
                  let body = ""
                  response.on("data", (chunk: Buffer) => (body += chunk.toString()))
                  response.on("end", () => resume(Effect.succeed({ status: response.statusCode ?? 0, body })))
                  response.on("error", () => resume(Effect.succeed({ status: 0, body: "" })))
                }
              )
              request.on("error", () => resume(Effect.succeed({ status: 0, body: "" })))
            })
          const [guild, channel] = [newId(), newId()]
          const clients: Array<TestClient> = []
          for (let i = 0; i < 4; i++) {
            const client = yield* connectToProcess(port, Redacted.make(JWT_SECRET), guild)
            client.send({ v: 1, t: "subscribe", d: { guild_id: guild, channel_id: channel } })
            yield* nextOfType(client, "subscribed")
            clients.push(client)
          }
          const response = yield* Effect.promise(() =>
            fetch(`http://127.0.0.1:${port}/v1/publish`, {
              method: "POST",
              headers: { authorization: `Bearer ${PUBLISH_KEY}`, "content-type": "application/json" },
              body: JSON.stringify({
                t: "channel_create",
                d: { guild_id: guild, channel: { channel_id: newId(), name: "general", kind: "text" } }
              })
            })
          )
          expect(response.status).toBe(202)
          for (const client of clients) yield* nextOfType(client, "channel_create")
          const delivered = (text: string) =>
            seriesValue(text, "filament_gateway_events_emitted_total", {
              scope: "guild",
              event_type: "channel_create"
            })

          // node:cluster hands each request to the next worker: consecutive scrapes reach both, and
          // with nothing happening in between they are the same body, covering all four clients.
          const scrapes: Array<string> = []
          for (let i = 0; i < 4; i++) scrapes.push((yield* get("/metrics")).body)
          // Overlapping scrapes share the primary's collection round and get the same answer.
          for (const answer of yield* Effect.all(
            Array.from({ length: 8 }, () => get("/metrics")),
            { concurrency: "unbounded" }
          ))
            scrapes.push(answer.body)
          expect(new Set(scrapes).size).toBe(1)
          expect(seriesValue(scrapes[0]!, "filament_gateway_connections")).toBe(4)
          expect(delivered(scrapes[0]!)).toBe(4)
          const ready = yield* get("/readyz")
          expect(ready.status).toBe(200)
          const body = JSON.parse(ready.body) as {
            status: string
            workers: Array<{ pid: number; status: string }>
          }
          expect(body.status).toBe("ready")
          expect(body.workers.map((worker) => worker.status)).toEqual(["ready", "ready"])

          // A worker dies: the primary replaces it and /readyz is 200 again once the new one is up;
          // the counters keep what the dead worker had reported.
          const before = scrapes[0]!
          process.kill(body.workers[0]!.pid, "SIGKILL")
          const seen = new Set<string>()
          yield* eventuallyEffect(
            "a replacement worker is ready",
            // Short: a request handed to the worker as it died may hang instead of being reset.
            Effect.map(get("/readyz", 1_000), (answer) => {
              if (answer.status === 0) return false
              const group = JSON.parse(answer.body) as typeof body
              seen.add(`${answer.status} ${group.status}`)
              const pids = group.workers.map((worker) => worker.pid)
              return answer.status === 200 && pids.length === 2 && !pids.includes(body.workers[0]!.pid)
            }),
            START_DEADLINE_MS,
            50
          )
          // While the replacement starts, the group is not ready.
          expect(seen).toContain("503 starting")
          const after = (yield* get("/metrics")).body
          expect(delivered(after)).toBe(delivered(before))
          const families = (text: string) => [...text.matchAll(/^# TYPE (\S+)/gm)].map((match) => match[1])
          expect(families(after)).toEqual(families(before))
          for (const family of ["filament_gateway_events_emitted_total", "filament_ws_disconnects_total"])
            expect(familySum(after, family)).toBeGreaterThanOrEqual(familySum(before, family))
          // The dead worker's clients went with it; the gauge is the live workers' only.
          expect(seriesValue(after, "filament_gateway_connections")).toBe(2)

          // A worker that cannot answer (stopped): after GATEWAY_WORKER_REPORT_TIMEOUT_SECS the other
          // one answers for the group — unready, with the stopped worker's last report in the sums.
          const group = JSON.parse((yield* get("/readyz")).body) as typeof body
          const stopped = group.workers[0]!.pid
          process.kill(stopped, "SIGSTOP")
          yield* Effect.addFinalizer(() => Effect.sync(() => process.kill(stopped, "SIGCONT")))
          let unready = { status: 0, body: "" }
          yield* eventuallyEffect(
            "the running worker reports the stopped one unresponsive",
            Effect.map(get("/readyz", 2_000), (answer) => {
              unready = answer
              return answer.status !== 0
            }),
            START_DEADLINE_MS,
            50
          )
          expect(unready.status).toBe(503)
          expect(JSON.parse(unready.body)).toMatchObject({
            status: "unresponsive",
            workers: expect.arrayContaining([{ pid: stopped, status: "unresponsive" }])
          })
          let stale = ""
          yield* eventuallyEffect(
            "the running worker serves /metrics",
            Effect.map(get("/metrics", 2_000), (answer) => {
              stale = answer.body
              return answer.status === 200
            }),
            START_DEADLINE_MS,
            50
          )
          expect(delivered(stale)).toBe(delivered(before))
          expect(seriesValue(stale, "filament_gateway_connections")).toBe(2)
          process.kill(stopped, "SIGCONT")
          yield* eventuallyEffect(
            "ready again once it answers",
            Effect.map(get("/readyz"), (answer) => answer.status === 200),
            START_DEADLINE_MS,
            50
          )
        })
      ),
    60_000
  )
})
