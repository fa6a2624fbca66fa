/**
 * Tracing: whether the gateway records spans, and where they go. Off unless
 * `GATEWAY_OTLP_TRACES_URL` is set; then the spans of a publish (build, bus hand-off, local fanout),
 * of a client command and of another node's delivery are exported over OTLP/HTTP (JSON) by Effect's
 * own `OtlpTracer`. The gateway reads `enabled` once, when it is built: while it is off, the publish,
 * command and remote-delivery paths are exactly the untraced ones, so tracing costs nothing.
 */
import * as OtlpSerialization from "@effect/opentelemetry/OtlpSerialization"
import * as OtlpTracer from "@effect/opentelemetry/OtlpTracer"
import { FetchHttpClient } from "@effect/platform"
import { Context, Effect, Layer, Option, Tracer } from "effect"
import { GatewayConfig } from "./Config.js"

export interface TracingShape {
  readonly enabled: boolean
  /** Whether a publish or command without a traced parent starts a trace (`GATEWAY_TRACE_SAMPLE_RATIO`). */
  readonly sampleRoot: () => boolean
}

export class Tracing extends Context.Tag("filament/Tracing")<Tracing, TracingShape>() {}

export const off: TracingShape = { enabled: false, sampleRoot: () => false }

/** Spans to whatever `Tracer` the runtime has (a host's own OpenTelemetry SDK, a test's exporter). */
export const on = (sampleRatio: number): TracingShape => ({
  enabled: true,
  sampleRoot: sampleRatio >= 1 ? () => true : () => Math.random() < sampleRatio
})

/**
 * From the configuration: with `GATEWAY_OTLP_TRACES_URL`, Effect's OTLP tracer (batched, flushed when
 * the gateway's scope closes) and sampling by `GATEWAY_TRACE_SAMPLE_RATIO`; without it, off.
 */
export const layer: Layer.Layer<Tracing, never, GatewayConfig> = Layer.unwrapEffect(
  Effect.map(GatewayConfig, (config) =>
    Option.match(config.otlpTracesUrl, {
      onNone: () => Layer.succeed(Tracing, off),
      onSome: (url) =>
        Layer.merge(
          Layer.succeed(Tracing, on(config.traceSampleRatio)),
          OtlpTracer.layer({ url, resource: { serviceName: "filament-gateway" } }).pipe(
            Layer.provide(OtlpSerialization.layerJson),
            Layer.provide(FetchHttpClient.layer)
          )
        )
    })
  )
)

/** The W3C `traceparent` of a span: how a trace crosses the bus to another node. */
export const traceparent = (span: Tracer.AnySpan): string =>
  `00-${span.traceId}-${span.spanId}-${span.sampled ? "01" : "00"}`

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$/

/** The remote parent a `traceparent` names (the bus header is signed, but its shape is checked here too). */
export const parentOf = (header: string): Option.Option<Tracer.ExternalSpan> => {
  const match = TRACEPARENT.exec(header)
  return match === null
    ? Option.none()
    : Option.some(
        Tracer.externalSpan({ traceId: match[1]!, spanId: match[2]!, sampled: header.endsWith("1") })
      )
}
