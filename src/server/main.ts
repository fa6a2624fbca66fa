/**
 * Node entry point (`npm start`): configuration from the environment, the gateway with its default
 * services, the HTTP + WebSocket server. SIGTERM/SIGINT interrupt the program; the layers then
 * drain (1001 `going_away`, bounded grace) and the process exits 0.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Clock, Console, Effect, Layer, Redacted } from "effect"
import * as Auth from "./Auth.js"
import * as Config from "./Config.js"
import { GatewayConfig } from "./Config.js"
import * as Gateway from "./Gateway.js"
import * as Http from "./Http.js"
import { GatewayServer } from "./Http.js"
import { ulid } from "./Messages.js"

const DEMO_TOKEN_SECONDS = 24 * 60 * 60

/** Dev mode: everything a newcomer needs to connect, subscribe and publish right away. */
const printDevBanner = Effect.gen(function* () {
  const config = yield* GatewayConfig
  const { host, port } = yield* GatewayServer
  const now = yield* Clock.currentTimeMillis
  const [user, guild, channel] = [ulid(now), ulid(now), ulid(now)]
  const token = yield* Auth.signToken({
    secret: config.jwtSecret,
    userId: user,
    expiresAt: Math.floor(now / 1000) + DEMO_TOKEN_SECONDS,
    guilds: { [guild]: [channel] }
  })
  const base = `${host}:${port}`
  yield* Console.log(
    [
      "filament-gateway: DEV MODE (GATEWAY_JWT_SECRET is unset; a random secret was generated)",
      `  GATEWAY_JWT_SECRET=${Redacted.value(config.jwtSecret)}`,
      `  GATEWAY_PUBLISH_KEY=${Redacted.value(config.publishKey)}`,
      `  demo user ${user}, guild ${guild}, channel ${channel}; token valid 24 h:`,
      `  ws://${base}/gateway/ws?access_token=${token}`,
      `  then send: {"v":1,"t":"subscribe","d":{"guild_id":"${guild}","channel_id":"${channel}"}}`,
      `  publish:   curl -X POST http://${base}/v1/publish -H 'Authorization: Bearer ${Redacted.value(config.publishKey)}' \\`,
      `               -H 'Content-Type: application/json' \\`,
      `               -d '{"t":"channel_create","d":{"guild_id":"${guild}","channel":{"channel_id":"${ulid(now)}","name":"general","kind":"text"}}}'`
    ].join("\n")
  )
})

const program = Effect.gen(function* () {
  const config = yield* GatewayConfig
  const { host, port } = yield* GatewayServer
  yield* Effect.logInfo(
    `filament-gateway listening on http://${host}:${port} (WebSocket: ws://${host}:${port}/gateway/ws)`
  )
  if (config.devMode) yield* printDevBanner
  return yield* Effect.never
})

const MainLive = Http.layer.pipe(Layer.provideMerge(Gateway.layerDefault), Layer.provideMerge(Config.layer))

NodeRuntime.runMain(program.pipe(Effect.provide(MainLive)))
