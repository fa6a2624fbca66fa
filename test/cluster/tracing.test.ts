/**
 * Tracing over real sockets: two gateway nodes joined by a real `redis-server`, each exporting its
 * spans over OTLP/HTTP to an in-memory collector (a real HTTP server in this process that keeps what
 * it receives). A client's `message_create` on node A is one trace: the command, its publish (build,
 * bus hand-off, local fanout) on A, and the delivery on node B, whose span is a child of A's hand-off.
 */
import { createServer, type IncomingMessage } from "node:http"
import type { AddressInfo } from "node:net"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Option } from "effect"
import * as Config from "../../src/server/Config.js"
import * as Tracing from "../../src/server/Tracing.js"
import { newId } from "../server/harness.js"
import { joinedBy, startClusterNode, subscribe } from "./chat.js"
import { hasRedisServer, startRedis } from "./redis.js"

interface ExportedSpan {
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId?: string
  readonly name: string
  readonly attributes: ReadonlyArray<{ readonly key: string; readonly value: Record<string, unknown> }>
}

const bodyOf = (request: IncomingMessage) =>
  new Promise<string>((resolve) => {
    let body = ""
    request.on("data", (chunk: Buffer) => (body += chunk.toString()))
    request.on("end", () => resolve(body))
  })

/** An OTLP/HTTP (JSON) traces receiver on a loopback port, keeping every span it is sent. */
const startCollector = Effect.acquireRelease(
  Effect.async<{ readonly url: string; readonly spans: Array<ExportedSpan>; readonly close: () => void }>(
    (resume) => {
      const spans: Array<ExportedSpan> = []
      const server = createServer((request, response) => {
        void bodyOf(request).then((body) => {
          const data = JSON.parse(body) as {
            resourceSpans: Array<{ scopeSpans: Array<{ spans: Array<ExportedSpan> }> }>
          }
          for (const resource of data.resourceSpans)
            for (const scope of resource.scopeSpans) spans.push(...scope.spans)
          response.writeHead(200, { "content-type": "application/json" }).end("{}")
        })
      })
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as AddressInfo
        resume(
          Effect.succeed({ url: `http://127.0.0.1:${port}/v1/traces`, spans, close: () => server.close() })
        )
      })
    }
  ),
  (collector) => Effect.sync(() => collector.close())
)

const attribute = (span: ExportedSpan, key: string) =>
  span.attributes.find((entry) => entry.key === key)?.value

describe("tracing", () => {
  it.effect("off unless GATEWAY_OTLP_TRACES_URL is set", () =>
    Effect.gen(function* () {
      const tracingWith = (overrides: Partial<Config.GatewayConfigShape>) =>
        Effect.provide(Tracing.Tracing, Tracing.layer.pipe(Layer.provide(Config.layerWith(overrides))))
      expect((yield* tracingWith({})).enabled).toBe(false)
      const on = yield* tracingWith({ otlpTracesUrl: Option.some("http://127.0.0.1:1/v1/traces") })
      expect(on.enabled).toBe(true)
    })
  )

  it.scoped.skipIf(!hasRedisServer)(
    "one trace from a client's command on node A to the delivery on node B",
    () =>
      Effect.gen(function* () {
        const redis = yield* startRedis
        const collector = yield* startCollector
        const guild = newId()
        const channel = newId()
        const traced = { ...joinedBy(redis), otlpTracesUrl: Option.some(collector.url) }

        // The nodes live in an inner scope: closing it flushes their exporters.
        yield* Effect.scoped(
          Effect.gen(function* () {
            const nodeA = yield* startClusterNode(redis, traced)
            const nodeB = yield* startClusterNode(redis, traced)
            const sender = yield* nodeA.connectReady("01HZX0SENDER0000000000000A", { [guild]: "*" })
            const reader = yield* nodeB.connectReady("01HZX0READER0000000000000B", { [guild]: "*" })
            yield* subscribe(sender, guild, channel)
            yield* subscribe(reader, guild, channel)
            sender.send({
              v: 1,
              t: "message_create",
              d: { guild_id: guild, channel_id: channel, content: "traced" }
            })
            expect((yield* reader.nextOfType("message_create")).d["content"]).toBe("traced")
          })
        )

        const named = (name: string) => collector.spans.filter((span) => span.name === name)
        const [command] = named("gateway.command").filter(
          (span) => attribute(span, "filament.command")?.["stringValue"] === "message_create"
        )
        expect(command, JSON.stringify(collector.spans.map((span) => span.name))).toBeDefined()
        const publish = named("gateway.publish").find((span) => span.parentSpanId === command!.spanId)
        expect(publish).toBeDefined()
        expect(attribute(publish!, "filament.event_type")?.["stringValue"]).toBe("message_create")
        const children = collector.spans.filter((span) => span.parentSpanId === publish!.spanId)
        expect(children.map((span) => span.name).sort()).toEqual([
          "gateway.publish.build",
          "gateway.publish.bus_handoff",
          "gateway.publish.fanout"
        ])
        const handoff = children.find((span) => span.name === "gateway.publish.bus_handoff")!
        // Other publishes (presence) are traces of their own; this one reached node B once.
        const remote = named("gateway.remote_delivery").filter((span) => span.traceId === command!.traceId)
        expect(remote).toHaveLength(1)
        expect(remote[0]!.parentSpanId).toBe(handoff.spanId)
        expect(attribute(remote[0]!, "filament.event_type")?.["stringValue"]).toBe("message_create")
      }),
    30_000
  )
})
