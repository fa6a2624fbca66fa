/**
 * Gateway configuration from the environment (effect `Config`). Every limit has a key and the
 * original's default; an invalid value fails startup with a message naming the key. Without
 * `GATEWAY_JWT_SECRET` the gateway runs in dev mode with a generated secret and publish key.
 */
import { randomBytes } from "node:crypto"
import { isIP } from "node:net"
import { availableParallelism } from "node:os"
import {
  Config,
  ConfigError,
  Context,
  Duration,
  Effect,
  Either,
  Layer,
  LogLevel,
  Option,
  Redacted
} from "effect"
import { MAX_EVENT_BYTES } from "../protocol/Envelope.js"
import { MAX_PRESENCE_SYNC_USER_IDS, MAX_VOICE_PARTICIPANTS } from "../protocol/Shapes.js"
import { nonNegativeInt, numeric, parseInteger, positiveInt, seconds, secret } from "./ConfigReaders.js"

/** A parsed CIDR block (`10.0.0.0/8`, `fd00::/8`; a bare address is a /32 or /128). */
export interface Cidr {
  readonly address: string
  readonly prefix: number
  readonly family: "ipv4" | "ipv6"
}

/** Parses a comma-separated CIDR list; `Left` names the first entry that is not a block. */
export const parseCidrs = (
  text: string
): { ok: true; cidrs: ReadonlyArray<Cidr> } | { ok: false; entry: string } => {
  const cidrs: Array<Cidr> = []
  for (const raw of text.split(",")) {
    const entry = raw.trim()
    if (entry === "") continue
    const [address = "", prefixText, ...rest] = entry.split("/")
    const version = isIP(address)
    const max = version === 4 ? 32 : 128
    const prefix = prefixText === undefined ? max : /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : -1
    if (version === 0 || rest.length > 0 || prefix < 0 || prefix > max) return { ok: false, entry }
    cidrs.push({ address, prefix, family: version === 4 ? "ipv4" : "ipv6" })
  }
  return { ok: true, cidrs }
}

export interface GatewayConfigShape {
  readonly host: string
  readonly port: number
  /** Accept-queue length asked of `listen(2)`; the kernel caps it at `net.core.somaxconn`. */
  readonly listenBacklog: number
  readonly jwtSecret: Redacted.Redacted<string>
  /** During a secret rotation: tokens signed with this one are accepted too (and counted). */
  readonly jwtPreviousSecret: Option.Option<Redacted.Redacted<string>>
  readonly publishKey: Redacted.Redacted<string>
  /** During a key rotation: the publish API accepts this key too. */
  readonly publishPreviousKey: Option.Option<Redacted.Redacted<string>>
  /** True when the secret was generated because `GATEWAY_JWT_SECRET` is unset. */
  readonly devMode: boolean
  /** Inbound frame cap and outbound envelope cap (bytes), never above the protocol's 65536. */
  readonly maxEventBytes: number
  /** Per-connection outbox capacity (frames). */
  readonly outboundQueue: number
  /** Bytes buffered in a socket above which deliveries go to the outbox instead. */
  readonly socketHighWaterBytes: number
  readonly ingressEventsPerWindow: number
  readonly ingressWindow: Duration.Duration
  /** Commands a connection may have waiting behind the running one; one more closes it (4013). */
  readonly maxPendingCommands: number
  /** How long one command (its AccessPolicy / MessageHandler calls included) may run; then 4012. */
  readonly commandTimeout: Duration.Duration
  readonly pingInterval: Duration.Duration
  readonly pongTimeout: Duration.Duration
  /** How often the single heartbeat sweep runs (pong deadlines and token expiry resolution). */
  readonly heartbeatSweep: Duration.Duration
  readonly maxSubscriptionsPerConnection: number
  readonly maxConnectionsPerUser: number
  /**
   * Publish API request body cap (bytes). The default fits the largest body the other defaults allow:
   * `GATEWAY_MAX_PUBLISH_USERS` ids (29 bytes each in the array) plus an envelope at the event cap.
   */
  readonly maxPublishBodyBytes: number
  /** Recipients per user-scoped publish. */
  readonly maxPublishUsers: number
  /** Bound on a close handshake and on the shutdown flush. */
  readonly closeGrace: Duration.Duration
  /** The cluster bus (`GATEWAY_REDIS_URL` + `GATEWAY_BUS_SECRET`); none: one node, in-memory bus. */
  readonly redis: Option.Option<
    RedisEndpoint & {
      readonly busSecret: Redacted.Redacted<string>
      /** `GATEWAY_BUS_ACCEPT_SECRET`: also accepted on received messages, while a rotation rolls out. */
      readonly busAcceptSecret: Option.Option<Redacted.Redacted<string>>
    }
  >
  /** A bus message (signature, routing header, envelope) larger than this is dropped. */
  readonly busMaxMessageBytes: number
  /** A bus message published longer ago than this is dropped as stale (bounds replays too). */
  readonly busMaxLag: Duration.Duration
  /** Cap of the bus reconnect backoff. */
  readonly busReconnectMax: Duration.Duration
  /** Bound on connecting to Redis at startup and on a `subscribed` ack waiting for the bus. */
  readonly busTimeout: Duration.Duration
  /** Frames received from other nodes awaiting local delivery; beyond it they are dropped. */
  readonly busBacklog: number
  /** Worker processes sharing the port (`GATEWAY_WORKERS`: a number or `auto` = one per core). */
  readonly workers: number
  /** With workers: how long the primary waits for each worker's report on a `/metrics` or `/readyz`. */
  readonly workerReportTimeout: Duration.Duration
  /** Cluster presence: a node silent for this long is dead and its users go offline. */
  readonly nodeTtl: Duration.Duration
  /** Time a request (upgrade or HTTP, headers and body) may take to arrive before 408. */
  readonly requestTimeout: Duration.Duration
  /** Upgrades plus publish calls per client IP per minute (token bucket); 0 = no limit. */
  readonly rateLimitPerMinute: number
  /** Open gateway connections per client IP; 0 = no cap. */
  readonly maxConnectionsPerIp: number
  /** Peers whose `cf-connecting-ip` / `x-forwarded-for` is believed for the client IP. */
  readonly trustedProxies: ReadonlyArray<Cidr>
  /** Access tokens longer than this are refused before verification. */
  readonly maxTokenBytes: number
  /** Ids per `presence_sync` (the contract's 1024 at most); above it the snapshot is truncated. */
  readonly presenceSyncMaxUsers: number
  /** How often held presence changes are flushed and the presence write budget refilled. */
  readonly presenceTick: Duration.Duration
  /**
   * The node's presence write budget (one write = one socket write to one subscriber), refilled per
   * tick, at most one second's worth banked. A change the budget cannot pay at once is held and
   * flushed with the guild's other held changes as one write per subscriber.
   */
  readonly presenceWritesPerSec: number
  /** Voice channels the participant projection tracks; a join into one more is refused. */
  readonly maxVoiceChannels: number
  /** Participants per tracked voice channel (the contract's 512 at most); one more is refused. */
  readonly maxVoiceParticipantsPerChannel: number
  /** A voice participant expires this long after its last join or update. */
  readonly voiceParticipantLifetime: Duration.Duration
  /** How often the single voice expiry sweep runs. */
  readonly voiceSweep: Duration.Duration
  /** Migration window: also emit the deprecated `workspace_channel_override_update` (legacy first). */
  readonly dualEmitLegacyOverride: boolean
  /** Events kept per stream (channel, guild, user) for recovery; older ones are trimmed. */
  readonly historyMaxEvents: number
  /** How long an event stays in its stream's history (the recovery window). */
  readonly historyTtl: Duration.Duration
  /**
   * How long a stream's epoch and offset outlive its last append or read: a quiet stream keeps its
   * position (and its clients recover with nothing missed) for this long; then it is forgotten.
   */
  readonly historyMetaTtl: Duration.Duration
  /**
   * With Redis: streams whose append failed that a node remembers until it has invalidated their
   * history (a new epoch); over it, the node answers every read `history_unavailable` until then.
   */
  readonly historyGapStreams: number
  /** Events one recovery may replay per stream; more missed answers `too_many_events`. */
  readonly recoveryMaxReplay: number
  /** Log records below this level are not written. */
  readonly logLevel: LogLevel.LogLevel
  /** How log records are written to stdout: `pretty` (for people), `logfmt` or one JSON object per line. */
  readonly logFormat: LogFormat
  /** OTLP/HTTP traces endpoint (`…/v1/traces`); none: tracing off. */
  readonly otlpTracesUrl: Option.Option<string>
  /** Fraction of publishes and commands without a traced parent that start a trace. */
  readonly traceSampleRatio: number
  /** `GATEWAY_ADMIN_KEY`: the inspector (`/admin`) is served only when set. */
  readonly adminKey: Option.Option<Redacted.Redacted<string>>
  /** Admin calls (page, API, session) per client address per minute; one more answers 429. */
  readonly adminRequestsPerMinute: number
  /** How long an admin session cookie stays valid. */
  readonly adminSessionTtl: Duration.Duration
  /** Admin sessions held at once; a new login beyond it ends the oldest. */
  readonly adminMaxSessions: number
  /** Live-tail streams open at once per node; one more answers 429. */
  readonly adminMaxTailViewers: number
  /** Events a live-tail viewer is sent per second at most (the rest are counted as skipped). */
  readonly adminTailEventsPerSecond: number
  /** Events waiting for one live-tail viewer; beyond it they are dropped for that viewer. */
  readonly adminTailQueue: number
}

export type LogFormat = "pretty" | "logfmt" | "json"

/** Where the nodes' Redis is: one server, or the seed nodes of a Redis Cluster. */
export interface RedisEndpoint {
  /** `GATEWAY_REDIS_CLUSTER`: the URLs are seeds of a Redis Cluster (any one reveals the rest). */
  readonly cluster: boolean
  /** One URL, or with `cluster` one or more seed URLs; each may carry a password. */
  readonly urls: Redacted.Redacted<ReadonlyArray<string>>
}

export class GatewayConfig extends Context.Tag("filament/GatewayConfig")<
  GatewayConfig,
  GatewayConfigShape
>() {}

const generated = () => Redacted.make(randomBytes(32).toString("base64url"))

/** The configuration as an effect `Config`, read from the current `ConfigProvider`. */
export const config: Config.Config<GatewayConfigShape> = Config.all({
  host: Config.string("GATEWAY_HOST").pipe(Config.withDefault("127.0.0.1")),
  port: numeric(
    "GATEWAY_PORT",
    8080,
    "0 (any free port) or a port number (1-65535)",
    (value) => Number.isInteger(value) && value >= 0 && value <= 65535,
    parseInteger
  ),
  // Node's default (511) overflows in a reconnect storm: a dropped SYN is retried only after 1 s, 3 s, ….
  // 4096 is Linux's default somaxconn since 5.4 (what the kernel grants unless raised); at most 65535.
  listenBacklog: positiveInt("GATEWAY_LISTEN_BACKLOG", 4096, 65535),
  jwtSecret: secret("GATEWAY_JWT_SECRET"),
  jwtPreviousSecret: secret("GATEWAY_JWT_PREVIOUS_SECRET"),
  publishKey: secret("GATEWAY_PUBLISH_KEY"),
  publishPreviousKey: secret("GATEWAY_PUBLISH_PREVIOUS_KEY"),
  maxEventBytes: positiveInt("GATEWAY_MAX_EVENT_BYTES", MAX_EVENT_BYTES, MAX_EVENT_BYTES),
  outboundQueue: positiveInt("GATEWAY_OUTBOUND_QUEUE", 256),
  socketHighWaterBytes: positiveInt("GATEWAY_SOCKET_HIGH_WATER_BYTES", 1_048_576),
  ingressEventsPerWindow: positiveInt("GATEWAY_INGRESS_EVENTS_PER_WINDOW", 60),
  ingressWindow: seconds("GATEWAY_INGRESS_WINDOW_SECS", 10),
  // Above the 60 frames one default rate window admits: a client within the rate limit is never closed
  // for its backlog unless a command hangs.
  maxPendingCommands: positiveInt("GATEWAY_MAX_PENDING_COMMANDS", 64),
  // Above the sum of a subscribe's own bounded waits on a slow Redis (bus topic, presence, voice).
  commandTimeout: seconds("GATEWAY_COMMAND_TIMEOUT_SECS", 30),
  pingInterval: seconds("GATEWAY_PING_INTERVAL_SECS", 30),
  pongTimeout: seconds("GATEWAY_PONG_TIMEOUT_SECS", 30),
  heartbeatSweep: seconds("GATEWAY_HEARTBEAT_SWEEP_SECS", 1),
  maxSubscriptionsPerConnection: positiveInt("GATEWAY_MAX_SUBSCRIPTIONS_PER_CONNECTION", 1024),
  maxConnectionsPerUser: positiveInt("GATEWAY_MAX_CONNECTIONS_PER_USER", 32),
  maxPublishBodyBytes: positiveInt("GATEWAY_MAX_PUBLISH_BODY_BYTES", 524_288),
  maxPublishUsers: positiveInt("GATEWAY_MAX_PUBLISH_USERS", 10_000),
  closeGrace: seconds("GATEWAY_CLOSE_GRACE_SECS", 5),
  redisUrl: Config.redacted("GATEWAY_REDIS_URL").pipe(Config.option),
  redisCluster: Config.boolean("GATEWAY_REDIS_CLUSTER").pipe(Config.withDefault(false)),
  busSecret: secret("GATEWAY_BUS_SECRET"),
  busAcceptSecret: secret("GATEWAY_BUS_ACCEPT_SECRET"),
  busMaxMessageBytes: positiveInt("GATEWAY_BUS_MAX_MESSAGE_BYTES", 98_304),
  busMaxLag: seconds("GATEWAY_BUS_MAX_LAG_SECS", 30),
  busReconnectMax: seconds("GATEWAY_BUS_RECONNECT_MAX_SECS", 5),
  busTimeout: seconds("GATEWAY_BUS_TIMEOUT_SECS", 5),
  busBacklog: positiveInt("GATEWAY_BUS_BACKLOG", 10_000),
  nodeTtl: seconds("GATEWAY_NODE_TTL_SECS", 15),
  workers: Config.string("GATEWAY_WORKERS").pipe(
    Config.withDefault("1"),
    Config.mapOrFail((text) =>
      text === "auto"
        ? Either.right(availableParallelism())
        : /^[1-9][0-9]{0,3}$/.test(text)
          ? Either.right(Number(text))
          : Either.left(
              ConfigError.InvalidData(
                ["GATEWAY_WORKERS"],
                'GATEWAY_WORKERS must be a positive integer or "auto"'
              )
            )
    )
  ),
  workerReportTimeout: seconds("GATEWAY_WORKER_REPORT_TIMEOUT_SECS", 2),
  requestTimeout: seconds("GATEWAY_REQUEST_TIMEOUT_SECS", 10),
  rateLimitPerMinute: nonNegativeInt("GATEWAY_RATE_LIMIT_REQUESTS_PER_MINUTE", 0),
  maxConnectionsPerIp: nonNegativeInt("GATEWAY_MAX_CONNECTIONS_PER_IP", 0),
  trustedProxies: Config.string("GATEWAY_TRUSTED_PROXY_CIDRS").pipe(
    Config.withDefault(""),
    Config.mapOrFail((text) => {
      const parsed = parseCidrs(text)
      return parsed.ok
        ? Either.right(parsed.cidrs)
        : Either.left(
            ConfigError.InvalidData(
              ["GATEWAY_TRUSTED_PROXY_CIDRS"],
              `GATEWAY_TRUSTED_PROXY_CIDRS: "${parsed.entry}" is not an IP address or CIDR block`
            )
          )
    })
  ),
  maxTokenBytes: positiveInt("GATEWAY_MAX_TOKEN_BYTES", 4096),
  presenceSyncMaxUsers: positiveInt(
    "GATEWAY_PRESENCE_SYNC_MAX_USERS",
    MAX_PRESENCE_SYNC_USER_IDS,
    MAX_PRESENCE_SYNC_USER_IDS
  ),
  presenceTick: seconds("GATEWAY_PRESENCE_TICK_SECS", 0.05),
  // About 10 % of one core at the ~10 µs a socket write costs (issue 18's storm profile); a guild of
  // 10 000 subscribers on the node still hears of its changes once a second in a storm.
  presenceWritesPerSec: positiveInt("GATEWAY_PRESENCE_WRITES_PER_SEC", 10_000),
  maxVoiceChannels: positiveInt("GATEWAY_MAX_VOICE_CHANNELS", 1024),
  maxVoiceParticipantsPerChannel: positiveInt(
    "GATEWAY_MAX_VOICE_PARTICIPANTS_PER_CHANNEL",
    MAX_VOICE_PARTICIPANTS,
    MAX_VOICE_PARTICIPANTS
  ),
  voiceParticipantLifetime: seconds("GATEWAY_VOICE_PARTICIPANT_TTL_SECS", 300),
  voiceSweep: seconds("GATEWAY_VOICE_SWEEP_SECS", 15),
  historyMaxEvents: positiveInt("GATEWAY_HISTORY_MAX_EVENTS", 1000),
  historyTtl: seconds("GATEWAY_HISTORY_TTL_SECS", 120),
  historyMetaTtl: seconds("GATEWAY_HISTORY_META_TTL_SECS", 86_400),
  historyGapStreams: positiveInt("GATEWAY_HISTORY_GAP_STREAMS", 10_000),
  recoveryMaxReplay: positiveInt("GATEWAY_RECOVERY_MAX_REPLAY", 1000),
  dualEmitLegacyOverride: Config.boolean("GATEWAY_DUAL_EMIT_LEGACY_OVERRIDE").pipe(Config.withDefault(false)),
  logLevel: Config.string("GATEWAY_LOG_LEVEL").pipe(
    Config.withDefault("info"),
    Config.mapOrFail((text) => {
      const level = LogLevel.allLevels.find((level) => level.label === text.toUpperCase())
      return level === undefined
        ? Either.left(
            ConfigError.InvalidData(
              ["GATEWAY_LOG_LEVEL"],
              `GATEWAY_LOG_LEVEL must be one of trace, debug, info, warn, error, fatal, off (got "${text}")`
            )
          )
        : Either.right(level)
    })
  ),
  otlpTracesUrl: Config.string("GATEWAY_OTLP_TRACES_URL").pipe(
    Config.validate({
      message: "GATEWAY_OTLP_TRACES_URL must be an http:// or https:// URL (the collector's /v1/traces)",
      validation: (text) => URL.canParse(text) && /^https?:$/.test(new URL(text).protocol)
    }),
    Config.option
  ),
  traceSampleRatio: Config.number("GATEWAY_TRACE_SAMPLE_RATIO").pipe(
    Config.withDefault(1),
    Config.validate({
      message: "GATEWAY_TRACE_SAMPLE_RATIO must be a number above 0 and at most 1",
      validation: (ratio) => ratio > 0 && ratio <= 1
    })
  ),
  logFormat: Config.string("GATEWAY_LOG_FORMAT").pipe(
    Config.withDefault("pretty"),
    Config.mapOrFail((text): Either.Either<LogFormat, ConfigError.ConfigError> =>
      text === "pretty" || text === "logfmt" || text === "json"
        ? Either.right(text)
        : Either.left(
            ConfigError.InvalidData(
              ["GATEWAY_LOG_FORMAT"],
              `GATEWAY_LOG_FORMAT must be pretty, logfmt or json (got "${text}")`
            )
          )
    )
  ),
  adminKey: secret("GATEWAY_ADMIN_KEY"),
  adminRequestsPerMinute: positiveInt("GATEWAY_ADMIN_REQUESTS_PER_MINUTE", 600),
  adminSessionTtl: seconds("GATEWAY_ADMIN_SESSION_TTL_SECS", 3600),
  adminMaxSessions: positiveInt("GATEWAY_ADMIN_MAX_SESSIONS", 16),
  adminMaxTailViewers: positiveInt("GATEWAY_ADMIN_MAX_TAIL_VIEWERS", 4),
  adminTailEventsPerSecond: positiveInt("GATEWAY_ADMIN_TAIL_EVENTS_PER_SEC", 20),
  adminTailQueue: positiveInt("GATEWAY_ADMIN_TAIL_QUEUE", 256)
}).pipe(
  Config.mapOrFail(
    ({ busAcceptSecret, busSecret, jwtSecret, publishKey, redisCluster, redisUrl, ...rest }) => {
      // Keys that only make sense together; the first rule broken is the error.
      const rules: ReadonlyArray<readonly [broken: boolean, error: () => ConfigError.ConfigError]> = [
        [
          Option.isSome(busAcceptSecret) && Option.isNone(redisUrl),
          () =>
            ConfigError.InvalidData(
              ["GATEWAY_BUS_ACCEPT_SECRET"],
              "GATEWAY_BUS_ACCEPT_SECRET is set without GATEWAY_REDIS_URL (there is no bus to accept it on)"
            )
        ],
        [
          Option.isSome(redisUrl) && Option.isNone(busSecret),
          () =>
            ConfigError.MissingData(
              ["GATEWAY_BUS_SECRET"],
              "GATEWAY_BUS_SECRET is required when GATEWAY_REDIS_URL is set (bus messages are HMAC-signed)"
            )
        ],
        [
          rest.workers > 1 && Option.isNone(redisUrl),
          () =>
            ConfigError.InvalidData(
              ["GATEWAY_WORKERS"],
              `GATEWAY_WORKERS=${rest.workers} needs GATEWAY_REDIS_URL: worker processes reach each other's connections only over the Redis bus`
            )
        ],
        [
          rest.workers > 1 && Option.isNone(jwtSecret),
          () =>
            ConfigError.MissingData(
              ["GATEWAY_JWT_SECRET"],
              `GATEWAY_WORKERS=${rest.workers} needs GATEWAY_JWT_SECRET: every worker must accept the same tokens`
            )
        ],
        [
          Option.isSome(rest.jwtPreviousSecret) && Option.isNone(jwtSecret),
          () =>
            ConfigError.MissingData(
              ["GATEWAY_JWT_SECRET"],
              "GATEWAY_JWT_PREVIOUS_SECRET is set without GATEWAY_JWT_SECRET (a rotation needs the new secret)"
            )
        ],
        [
          Option.isSome(rest.publishPreviousKey) && Option.isNone(publishKey),
          () =>
            ConfigError.MissingData(
              ["GATEWAY_PUBLISH_KEY"],
              "GATEWAY_PUBLISH_PREVIOUS_KEY is set without GATEWAY_PUBLISH_KEY (a rotation needs the new key)"
            )
        ],
        [
          Duration.lessThan(rest.historyMetaTtl, rest.historyTtl),
          () =>
            ConfigError.InvalidData(
              ["GATEWAY_HISTORY_META_TTL_SECS"],
              `GATEWAY_HISTORY_META_TTL_SECS must be at least GATEWAY_HISTORY_TTL_SECS (${Duration.toSeconds(rest.historyTtl)}): a stream's position must outlive its events`
            )
        ],
        // Outside dev mode the publish key must be configured: a generated key nobody knows locks the API.
        [
          Option.isSome(jwtSecret) && Option.isNone(publishKey),
          () =>
            ConfigError.MissingData(
              ["GATEWAY_PUBLISH_KEY"],
              "GATEWAY_PUBLISH_KEY is required when GATEWAY_JWT_SECRET is set"
            )
        ]
      ]
      const broken = rules.find(([isBroken]) => isBroken)
      if (broken !== undefined) return Either.left(broken[1]())
      // One Redis: the URL as given. A Redis Cluster: comma-separated seed URLs.
      const urls = Option.map(redisUrl, (url): ReadonlyArray<string> =>
        redisCluster
          ? Redacted.value(url)
              .split(",")
              .map((seed) => seed.trim())
              .filter((seed) => seed !== "")
          : [Redacted.value(url)]
      )
      if (Option.isSome(urls) && urls.value.length === 0) {
        return Either.left(
          ConfigError.InvalidData(
            ["GATEWAY_REDIS_URL"],
            "GATEWAY_REDIS_URL must hold at least one seed URL when GATEWAY_REDIS_CLUSTER=true"
          )
        )
      }
      return Either.right({
        ...rest,
        redis: Option.zipWith(urls, busSecret, (seeds, busSecret) => ({
          cluster: redisCluster,
          urls: Redacted.make(seeds),
          busSecret,
          busAcceptSecret
        })),
        devMode: Option.isNone(jwtSecret),
        jwtSecret: Option.getOrElse(jwtSecret, generated),
        publishKey: Option.getOrElse(publishKey, generated)
      })
    }
  )
)

/** Keys an earlier release read and this one ignores, each with what replaced it. */
const RETIRED_KEYS: ReadonlyArray<readonly [key: string, replacedBy: string]> = [
  ["GATEWAY_PRESENCE_BURST", "GATEWAY_PRESENCE_WRITES_PER_SEC"]
]

/**
 * The retired keys that are still set, with what replaced each: an old configuration still starts,
 * and the entry point names what it ignores.
 */
export const retiredKeysSet: Effect.Effect<ReadonlyArray<readonly [key: string, replacedBy: string]>> =
  Effect.filter(RETIRED_KEYS, ([key]) =>
    Effect.orElseSucceed(Effect.map(Config.option(Config.string(key)), Option.isSome), () => false)
  )

/** Reads the configuration; fails with a `ConfigError` naming the offending key. */
export const make: Effect.Effect<GatewayConfigShape, ConfigError.ConfigError> = config

export const layer: Layer.Layer<GatewayConfig, ConfigError.ConfigError> = Layer.effect(GatewayConfig, make)

/** A layer with explicit values (hosts and tests); unspecified keys take their defaults. */
export const layerWith = (
  overrides: Partial<GatewayConfigShape>
): Layer.Layer<GatewayConfig, ConfigError.ConfigError> =>
  Layer.effect(
    GatewayConfig,
    Effect.map(make, (base) => ({ ...base, ...overrides }))
  )
