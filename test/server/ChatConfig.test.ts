/** The presence / voice / migration configuration keys: defaults, parsing, and the contract's bounds. */
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Duration, Effect, Either } from "effect"
import * as Config from "../../src/server/Config.js"

const load = (env: Record<string, string>) =>
  Effect.either(Effect.withConfigProvider(Config.make, ConfigProvider.fromMap(new Map(Object.entries(env)))))

describe("chat follow-up configuration", () => {
  it.effect(
    "defaults: 1024 presence ids, 10 000 presence writes/s, 1024 voice channels x 512 participants, 300 s lifetime, 15 s sweep, no dual emit",
    () =>
      Effect.gen(function* () {
        const config = Either.getOrThrow(yield* load({}))
        expect(config).toMatchObject({
          presenceSyncMaxUsers: 1024,
          maxVoiceChannels: 1024,
          maxVoiceParticipantsPerChannel: 512,
          dualEmitLegacyOverride: false
        })
        expect(Duration.toSeconds(config.voiceParticipantLifetime)).toBe(300)
        expect(Duration.toSeconds(config.voiceSweep)).toBe(15)
        expect(Duration.toMillis(config.presenceTick)).toBe(50)
        expect(config.presenceWritesPerSec).toBe(10_000)
      })
  )

  it.effect("each is read from its key", () =>
    Effect.gen(function* () {
      const config = Either.getOrThrow(
        yield* load({
          GATEWAY_PRESENCE_SYNC_MAX_USERS: "10",
          GATEWAY_PRESENCE_TICK_SECS: "0.2",
          GATEWAY_PRESENCE_WRITES_PER_SEC: "3",
          GATEWAY_MAX_VOICE_CHANNELS: "3",
          GATEWAY_MAX_VOICE_PARTICIPANTS_PER_CHANNEL: "4",
          GATEWAY_VOICE_PARTICIPANT_TTL_SECS: "1.5",
          GATEWAY_VOICE_SWEEP_SECS: "2",
          GATEWAY_DUAL_EMIT_LEGACY_OVERRIDE: "true"
        })
      )
      expect(config).toMatchObject({
        presenceSyncMaxUsers: 10,
        presenceWritesPerSec: 3,
        maxVoiceChannels: 3,
        maxVoiceParticipantsPerChannel: 4,
        dualEmitLegacyOverride: true
      })
      expect(Duration.toMillis(config.voiceParticipantLifetime)).toBe(1500)
      expect(Duration.toSeconds(config.voiceSweep)).toBe(2)
      expect(Duration.toMillis(config.presenceTick)).toBe(200)
    })
  )

  it.effect("values beyond the contract's bounds, or not numbers / booleans, fail naming the key", () =>
    Effect.gen(function* () {
      for (const [key, value] of [
        ["GATEWAY_PRESENCE_SYNC_MAX_USERS", "1025"],
        ["GATEWAY_PRESENCE_SYNC_MAX_USERS", "0"],
        ["GATEWAY_PRESENCE_TICK_SECS", "0"],
        ["GATEWAY_PRESENCE_WRITES_PER_SEC", "0"],
        ["GATEWAY_PRESENCE_WRITES_PER_SEC", "1.5"],
        ["GATEWAY_MAX_VOICE_PARTICIPANTS_PER_CHANNEL", "513"],
        ["GATEWAY_MAX_VOICE_CHANNELS", "0"],
        ["GATEWAY_VOICE_PARTICIPANT_TTL_SECS", "0"],
        ["GATEWAY_VOICE_SWEEP_SECS", "-1"],
        ["GATEWAY_DUAL_EMIT_LEGACY_OVERRIDE", "maybe"]
      ] as const) {
        const result = yield* load({ [key]: value })
        expect(Either.isLeft(result), `${key}=${value}`).toBe(true)
        if (Either.isLeft(result)) expect(String(result.left)).toContain(key)
      }
    })
  )

  it.effect(
    "the retired GATEWAY_PRESENCE_BURST is ignored, whatever its value: an old config still starts",
    () =>
      Effect.gen(function* () {
        for (const value of ["8", "0", "many"]) {
          const config = Either.getOrThrow(yield* load({ GATEWAY_PRESENCE_BURST: value }))
          expect(config.presenceWritesPerSec).toBe(10_000)
          expect(Object.keys(config).some((key) => key.toLowerCase().includes("burst"))).toBe(false)
        }
      })
  )
})
