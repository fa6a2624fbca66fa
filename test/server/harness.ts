/**
 * Test harness: a real gateway (HTTP + ws on 127.0.0.1 port 0) inside the test's Effect scope, so
 * it runs on the test's Clock (TestClock under `it.scoped`), plus real `ws` clients that wait for
 * frames and closes with a real-time deadline (never a fixed sleep).
 */
import { Context, Effect, Either, Layer, Redacted, TestClock } from "effect"
import type { Scope } from "effect"
import WebSocket from "ws"
import type { GatewayConfigShape } from "../../src/server/Config.js"
import * as Config from "../../src/server/Config.js"
import * as Auth from "../../src/server/Auth.js"
import * as Composition from "../../src/server/Composition.js"
import * as Seams from "../../src/server/core/Seams.js"
import * as Gateway from "../../src/server/core/Gateway.js"
import * as Http from "../../src/server/edge/Http.js"
import * as Inspector from "../../src/server/inspector/Inspector.js"
import { GatewayMetrics, type GatewayMetricsShape } from "../../src/server/Metrics.js"
import { SubscriptionRegistry } from "../../src/server/registry/Subscriptions.js"
import type { Connection, ConnectionSocket, ConnectionTransport } from "../../src/server/core/Connection.js"
import { ulid } from "../../src/protocol/Ids.js"
import { decodePayload, type EventDefinition, type PayloadOf } from "../../src/protocol/EventDefinition.js"
import { MessageCreate } from "../../src/protocol/events/message.js"
import { withinEffect } from "../deadline.js"
import { plainTextMessage } from "../fixtures/messages.js"

export const SECRET = Redacted.make("test-secret-0123456789-0123456789-abcdef")
export const PUBLISH_KEY = Redacted.make("test-publish-key-0123456789-0123456789")
export { DEADLINE_MS } from "../deadline.js"

let idSeed = Date.now()
/** A fresh canonical ULID. */
export const newId = (): string => ulid(idSeed++)

export const BASE_UNIX = 1_700_000_000

/** Decodes `wire` strictly as `event`'s payload: a fixture that is not valid wire fails the test. */
export const typed = <E extends EventDefinition>(event: E, wire: unknown): PayloadOf<E> =>
  Either.getOrThrow(decodePayload(event, wire, { strict: true })) as PayloadOf<E>

/** A plain-text `message_create` with fresh message and author ids, created `seq` seconds after BASE_UNIX. */
export const message = (guild: string, channel: string, content: string, seq = 0) =>
  typed(
    MessageCreate,
    plainTextMessage(
      { message_id: newId(), guild_id: guild, channel_id: channel, author_id: newId() },
      content,
      BASE_UNIX + seq
    )
  )

export interface Frame {
  readonly v: number
  readonly t: string
  readonly d: Record<string, unknown>
}

export interface Closed {
  readonly code: number
  readonly reason: string
}

/** Lets pending socket I/O callbacks run (one turn of the event loop). */
export const yieldToIo = Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))

/**
 * Waits until `count` fibers sleep on the TestClock, so that an adjustment reaches a timer that is
 * about to start (yields, bounded; no real time passes).
 */
export const awaitSleeps = (count: number) =>
  Effect.gen(function* () {
    for (let i = 0; i < 10_000; i++) {
      if ((yield* TestClock.sleeps()).length >= count) return
      yield* Effect.yieldNow()
    }
    return yield* Effect.die(new Error(`expected ${count} pending TestClock sleeps`))
  })

/** A real `ws` client that records every text frame and its close. */
export class TestClient {
  readonly frames: Array<Frame> = []
  /** Every text frame as it arrived, byte for byte (UTF-8 text). */
  readonly texts: Array<string> = []
  closed: Closed | undefined
  private readonly listeners = new Set<() => void>()
  private cursor = 0

  constructor(readonly socket: WebSocket) {
    socket.on("message", (data, isBinary) => {
      if (!isBinary) {
        this.texts.push(data.toString())
        this.frames.push(JSON.parse(data.toString()) as Frame)
      }
      this.notify()
    })
    socket.on("close", (code, reason) => {
      this.closed = { code, reason: reason.toString() }
      this.notify()
    })
  }

  private notify() {
    for (const listener of [...this.listeners]) listener()
  }

  private waitUntil<A>(label: string, check: () => A | undefined) {
    return withinEffect(
      label,
      Effect.async<A>((resume) => {
        const listener = () => {
          if (!this.listeners.has(listener)) return // resumed already; a queued call came late
          const value = check()
          if (value === undefined) return
          this.listeners.delete(listener)
          resume(Effect.succeed(value))
        }
        this.listeners.add(listener)
        queueMicrotask(listener)
        return Effect.sync(() => this.listeners.delete(listener))
      })
    )
  }

  send(frame: unknown) {
    this.socket.send(typeof frame === "string" ? frame : JSON.stringify(frame))
  }

  /** The next frame not yet consumed by `next` (in order). */
  next(label = "next frame"): Effect.Effect<Frame> {
    return this.waitUntil(label, () =>
      this.cursor < this.frames.length ? this.frames[this.cursor++] : undefined
    )
  }

  /** Consumes frames until one of type `t`; fails if a frame of another type comes first and `strict`. */
  nextOfType(t: string): Effect.Effect<Frame> {
    return Effect.flatMap(this.next(`frame "${t}"`), (frame) =>
      frame.t === t
        ? Effect.succeed(frame)
        : Effect.die(new Error(`expected "${t}", got ${JSON.stringify(frame)}`))
    )
  }

  waitClosed(): Effect.Effect<Closed> {
    return this.waitUntil("close", () => this.closed)
  }

  subscribe(guildId: string, channelId: string): Effect.Effect<Frame> {
    this.send({ v: 1, t: "subscribe", d: { guild_id: guildId, channel_id: channelId } })
    return this.nextOfType("subscribed")
  }
}

export interface Harness {
  readonly port: number
  readonly server: Http.GatewayServerShape
  readonly config: GatewayConfigShape
  readonly gateway: Gateway.GatewayShape
  readonly registry: Context.Tag.Service<typeof SubscriptionRegistry>
  /** This gateway's metrics, readable after its HTTP listener is gone (`metric` reads `/metrics`). */
  readonly gatewayMetrics: GatewayMetricsShape
  readonly token: (options: {
    readonly userId: string
    readonly guilds?: Readonly<Record<string, "*" | ReadonlyArray<string>>>
    readonly expiresInSeconds?: number
  }) => Effect.Effect<string>
  /** Opens a client; fails with the HTTP status when the upgrade is refused. */
  readonly connect: (
    token: string | undefined,
    options?: WebSocket.ClientOptions & {
      readonly query?: boolean
      /** More query parameters of the upgrade (e.g. `recovery`). */
      readonly params?: Readonly<Record<string, string>>
    }
  ) => Effect.Effect<TestClient, { readonly status: number; readonly body: string }, Scope.Scope>
  /** Connects and waits for `ready`. */
  readonly connectReady: (
    userId: string,
    guilds?: Readonly<Record<string, "*" | ReadonlyArray<string>>>
  ) => Effect.Effect<TestClient, never, Scope.Scope>
  readonly metrics: () => Effect.Effect<string>
  /** Value of one series in the current `/metrics` (0 when absent). */
  readonly metric: (name: string, labels?: Readonly<Record<string, string>>) => Effect.Effect<number>
  readonly http: (path: string, init?: RequestInit) => Effect.Effect<{ status: number; body: string }>
  /** The server-side connections of a user. */
  readonly serverConnections: (userId: string) => Effect.Effect<ReadonlyArray<Connection>>
}

/** The original gateway's counter families, in its exposition order. */
export const ORIGINAL_COUNTER_FAMILIES = [
  "filament_auth_failures_total",
  "filament_rate_limit_hits_total",
  "filament_ws_disconnects_total",
  "filament_gateway_events_emitted_total",
  "filament_gateway_events_dropped_total",
  "filament_gateway_events_unknown_received_total",
  "filament_gateway_events_parse_rejected_total",
  "filament_voice_sync_repairs_total"
]

export const seriesValue = (
  text: string,
  name: string,
  labels: Readonly<Record<string, string>> = {}
): number => {
  const wanted = Object.entries(labels)
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue
    const match = /^([a-z_]+)(\{(.*)\})? (\S+)$/.exec(line)
    if (match === null || match[1] !== name) continue
    const present = new Map<string, string>()
    for (const pair of (match[3] ?? "").matchAll(/([a-z_]+)="((?:[^"\\]|\\.)*)"/g))
      present.set(pair[1]!, pair[2]!)
    if (present.size === wanted.length && wanted.every(([key, value]) => present.get(key) === value)) {
      return Number(match[4])
    }
  }
  return 0
}

/**
 * Starts a gateway in the current scope. The Clock is set to the wall clock first so that tokens and
 * message timestamps are realistic; under `it.scoped` it then stays still until the test adjusts it.
 */
export const startGateway = <HostServices = never>(
  overrides: Partial<GatewayConfigShape> = {},
  /** Services a host app provides instead of the defaults (e.g. its own AccessPolicy). */
  host: Layer.Layer<HostServices> = Layer.empty as Layer.Layer<HostServices>,
  /**
   * `"none"` (default): the bare pub/sub core, so core tests see only the frames they cause.
   * `"chat"`: the production follow-ups (presence, voice snapshots, revocation, dual emit).
   */
  followUps: "none" | "chat" = "none"
) =>
  Effect.gen(function* () {
    yield* TestClock.setTime(Date.now())
    const configLayer = Config.layerWith({
      host: "127.0.0.1",
      port: 0,
      jwtSecret: SECRET,
      publishKey: PUBLISH_KEY,
      devMode: false,
      ...overrides
    })
    const context = yield* Layer.build(
      Http.layer.pipe(
        // Empty unless the overrides set `adminKey`.
        Layer.provideMerge(Inspector.layer),
        Layer.provideMerge(
          Gateway.layer.pipe(
            Layer.provideMerge(host),
            Layer.provideMerge(followUps === "none" ? Seams.layerNone : Layer.empty),
            Layer.provideMerge(Composition.layerServices)
          )
        ),
        Layer.provideMerge(configLayer)
      )
    )
    const server = Context.get(context, Http.GatewayServer)
    const config = Context.get(context, Config.GatewayConfig)
    const gateway = Context.get(context, Gateway.Gateway)
    const registry = Context.get(context, SubscriptionRegistry)
    const gatewayMetrics = Context.get(context, GatewayMetrics)
    const base = `127.0.0.1:${server.port}`

    const token: Harness["token"] = ({ expiresInSeconds = 3600, guilds, userId }) =>
      Effect.flatMap(
        Effect.clockWith((clock) => clock.currentTimeMillis),
        (now) =>
          Auth.signToken({
            secret: SECRET,
            userId,
            expiresAt: Math.floor(now / 1000) + expiresInSeconds,
            ...(guilds === undefined ? {} : { guilds })
          })
      )

    const connect: Harness["connect"] = (accessToken, options = {}) =>
      Effect.acquireRelease(
        Effect.async<TestClient, { status: number; body: string }>((resume) => {
          const { params = {}, query = true, ...clientOptions } = options
          const search = [
            ...(accessToken !== undefined && query
              ? [`access_token=${encodeURIComponent(accessToken)}`]
              : []),
            ...Object.entries(params).map(([key, value]) => `${key}=${encodeURIComponent(value)}`)
          ]
          const url = `ws://${base}/gateway/ws${search.length === 0 ? "" : `?${search.join("&")}`}`
          const socket = new WebSocket(url, clientOptions)
          // Frames may arrive right after the upgrade: record from the start.
          const client = new TestClient(socket)
          socket.once("open", () => resume(Effect.succeed(client)))
          socket.once("unexpected-response", (_request, response) => {
            let body = ""
            response.on("data", (chunk: Buffer) => (body += chunk.toString()))
            response.on("end", () => resume(Effect.fail({ status: response.statusCode ?? 0, body })))
          })
          socket.on("error", () => undefined)
          // Refused before any HTTP response (e.g. nothing listens any more).
          socket.once("close", () => resume(Effect.fail({ status: 0, body: "" })))
        }),
        (client) => Effect.sync(() => client.socket.terminate())
      )

    const connectReady: Harness["connectReady"] = (userId, guilds) =>
      Effect.gen(function* () {
        const client = yield* connect(
          yield* token({ userId, ...(guilds === undefined ? {} : { guilds }) })
        ).pipe(Effect.orDie)
        yield* client.nextOfType("ready")
        return client
      })

    const http: Harness["http"] = (path, init) =>
      Effect.promise(async () => {
        const response = await fetch(`http://${base}${path}`, init)
        return { status: response.status, body: await response.text() }
      })

    const metrics = () => Effect.map(http("/metrics"), (response) => response.body)

    const harness: Harness = {
      port: server.port,
      server,
      config,
      gateway,
      registry,
      gatewayMetrics,
      token,
      connect,
      connectReady,
      metrics,
      metric: (name, labels) => Effect.map(metrics(), (text) => seriesValue(text, name, labels)),
      http,
      serverConnections: (userId) => registry.userMembers(userId as never)
    }
    return harness
  })

/** Publishes through the HTTP API with the test publish key. */
export const publishHttp = (harness: Harness, body: unknown, key: string = Redacted.value(PUBLISH_KEY)) =>
  harness.http("/v1/publish", {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body)
  })

/**
 * An in-process stand-in for a connection's OS socket (`Connection`'s socket and transport seams):
 * records what the connection writes; `buffered` stands for the bytes the kernel has not taken yet. */
export const recordingPeer = () => {
  let drain: (() => void) | undefined
  const peer = {
    buffered: 0,
    written: [] as Array<Buffer>,
    closes: [] as Array<readonly [number, string]>,
    /** The kernel took everything. */
    drained: () => {
      peer.buffered = 0
      drain?.()
    }
  }
  const socket: ConnectionSocket = {
    readyState: 1,
    get bufferedAmount() {
      return peer.buffered
    },
    close: (code, reason) => void peer.closes.push([code, reason]),
    ping: () => undefined,
    terminate: () => undefined
  }
  const transport: ConnectionTransport = {
    writableHighWaterMark: 100,
    writableCorked: 0,
    cork: () => undefined,
    uncork: () => undefined,
    write: (chunk) => {
      peer.written.push(chunk)
      peer.buffered += chunk.length
      return peer.buffered < 100
    },
    on: (_event, listener) => {
      drain = listener
    }
  }
  return { peer, socket, transport }
}

/** `POST /v1/publish` bodies of recorded events, one per stream kind (missed-event recovery tests). */
export const channelEvent = (guild: string, channel: string, n: number) => ({
  t: "message_delete",
  d: { guild_id: guild, channel_id: channel, message_id: newId(), deleted_at_unix: 1_700_000_000 + n }
})

export const guildEvent = (guild: string, name: string) => ({
  t: "channel_create",
  d: { guild_id: guild, channel: { channel_id: newId(), name, kind: "text" } }
})

export const userEvent = (user: string, n: number) => ({
  t: "profile_update",
  d: { user_id: user, updated_fields: { username: `u${n}` }, updated_at_unix: 1_700_000_000 + n },
  users: [user]
})
