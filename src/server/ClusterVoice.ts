/**
 * The voice participant projection across a cluster: the `VoiceParticipants` contract kept in Redis,
 * one atomic script per operation, so a join published on one node is in the snapshot another node
 * sends on subscribe, the caps hold for the cluster, and an expiry or a user's removal is handed back
 * (and so announced) by exactly one node — whichever ran the script that removed it.
 *
 * Keys: `filament:voice:channels` (set of tracked "guild:channel"), `filament:voice:ch:<guild:channel>`
 * (hash user -> entry JSON: participant, streams, expiry millis), `filament:voice:user:<user>` (set
 * of the user's channels). Like the presence scripts, these need one Redis, not a Redis Cluster.
 */
import { Duration, Effect, Layer, Option, Redacted } from "effect"
import type { Scope } from "effect"
import { Redis } from "ioredis"
import type { ChannelId, GuildId } from "../protocol/Ids.js"
import type { VoiceParticipant, VoiceStreamKind } from "../protocol/Shapes.js"
import { GatewayConfig } from "./Config.js"
import { PublishRefused } from "./Errors.js"
import { channelKey } from "./Registry.js"
import * as Voice from "./Voice.js"
import {
  VoiceParticipants,
  type VoiceLimits,
  type VoiceParticipantsShape,
  type VoiceRemoval
} from "./Voice.js"

interface StoredEntry {
  readonly participant: VoiceParticipant
  /** A set as an object: Lua's cjson writes an empty array as `{}`. */
  readonly streams: Partial<Record<VoiceStreamKind, true>>
  readonly expiresAt: number
}

const PREFIX = `
local CHANNELS = 'filament:voice:channels'
local function chkey(key) return 'filament:voice:ch:' .. key end
local function userkey(user) return 'filament:voice:user:' .. user end
local function drop(key, user, removed)
  local entry = redis.call('HGET', chkey(key), user)
  if not entry then return end
  redis.call('HDEL', chkey(key), user)
  if redis.call('HLEN', chkey(key)) == 0 then
    redis.call('DEL', chkey(key))
    redis.call('SREM', CHANNELS, key)
  end
  redis.call('SREM', userkey(user), key)
  if removed then
    table.insert(removed, key)
    table.insert(removed, entry)
  end
end
`

/** ARGV: channel key, user, entry JSON, max channels, max participants. "ok" or the refusal reason. */
const JOIN = `${PREFIX}
local key, user = ARGV[1], ARGV[2]
if redis.call('SISMEMBER', CHANNELS, key) == 0 then
  if redis.call('SCARD', CHANNELS) >= tonumber(ARGV[4]) then return 'voice_channel_limit' end
elseif redis.call('HEXISTS', chkey(key), user) == 0 and redis.call('HLEN', chkey(key)) >= tonumber(ARGV[5]) then
  return 'voice_participant_limit'
end
redis.call('HSET', chkey(key), user, ARGV[3])
redis.call('SADD', CHANNELS, key)
redis.call('SADD', userkey(user), key)
return 'ok'`

/** ARGV: channel key, user. */
const LEAVE = `${PREFIX}
drop(ARGV[1], ARGV[2], nil)
return 'ok'`

/** ARGV: channel key, user, updated fields JSON, updated_at_unix, new expiry millis. */
const UPDATE = `${PREFIX}
local entry = redis.call('HGET', chkey(ARGV[1]), ARGV[2])
if not entry then return 'ok' end
entry = cjson.decode(entry)
for field, value in pairs(cjson.decode(ARGV[3])) do entry.participant[field] = value end
entry.participant.updated_at_unix = tonumber(ARGV[4])
entry.expiresAt = tonumber(ARGV[5])
redis.call('HSET', chkey(ARGV[1]), ARGV[2], cjson.encode(entry))
return 'ok'`

/** ARGV: channel key, user, stream, "1" (published) or "0". */
const STREAM = `${PREFIX}
local entry = redis.call('HGET', chkey(ARGV[1]), ARGV[2])
if not entry then return 'ok' end
entry = cjson.decode(entry)
if ARGV[4] == '1' then entry.streams[ARGV[3]] = true else entry.streams[ARGV[3]] = nil end
redis.call('HSET', chkey(ARGV[1]), ARGV[2], cjson.encode(entry))
return 'ok'`

/** ARGV: now millis, channel key or "" for every channel. Returns removed key, entry pairs. */
const EXPIRE = `${PREFIX}
local keys = ARGV[2] == '' and redis.call('SMEMBERS', CHANNELS) or { ARGV[2] }
local now = tonumber(ARGV[1])
local removed = {}
for _, key in ipairs(keys) do
  local fields = redis.call('HGETALL', chkey(key))
  for i = 1, #fields, 2 do
    if cjson.decode(fields[i + 1]).expiresAt <= now then drop(key, fields[i], removed) end
  end
end
return removed`

/** ARGV: user, "guild:" prefix or "" for every guild. Returns removed key, entry pairs. */
const REMOVE_USER = `${PREFIX}
local removed = {}
for _, key in ipairs(redis.call('SMEMBERS', userkey(ARGV[1]))) do
  if ARGV[2] == '' or string.sub(key, 1, #ARGV[2]) == ARGV[2] then drop(key, ARGV[1], removed) end
end
return removed`

const STREAM_ORDER: ReadonlyArray<VoiceStreamKind> = ["microphone", "camera", "screen_share"]

const byJoinThenIdentity = (a: VoiceParticipant, b: VoiceParticipant) =>
  a.joined_at_unix - b.joined_at_unix || (a.identity < b.identity ? -1 : a.identity > b.identity ? 1 : 0)

/** Removed (channel key, entry JSON) pairs as the removals the caller announces. */
const removals = (flat: ReadonlyArray<string>): ReadonlyArray<VoiceRemoval> => {
  const result: Array<VoiceRemoval> = []
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const [guildId, channelId] = flat[i]!.split(":") as [GuildId, ChannelId]
    const entry = JSON.parse(flat[i + 1]!) as StoredEntry
    result.push({
      guildId,
      channelId,
      userId: entry.participant.user_id,
      identity: entry.participant.identity,
      streams: STREAM_ORDER.filter((stream) => entry.streams[stream] === true)
    })
  }
  return result
}

export interface ClusterVoiceOptions extends VoiceLimits {
  readonly url: Redacted.Redacted<string>
  /** Bound on one Redis call (a refused join is then refused with the channel-limit reason). */
  readonly timeout: Duration.Duration
}

export const makeRedis = (
  options: ClusterVoiceOptions
): Effect.Effect<VoiceParticipantsShape, never, Scope.Scope> =>
  Effect.gen(function* () {
    const clock = yield* Effect.clock
    const redis = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const client = new Redis(Redacted.value(options.url), { maxRetriesPerRequest: null })
        client.on("error", () => undefined) // retried by the client; calls time out and are logged
        return client
      }),
      (client) => Effect.sync(() => client.disconnect(false))
    )
    const lifetime = Duration.toMillis(options.participantLifetime)

    const call = <A>(label: string, run: () => Promise<A>) =>
      Effect.tryPromise(run).pipe(
        Effect.timeout(options.timeout),
        Effect.tapError((error) => Effect.logWarning(`gateway.cluster_voice.${label}_failed`, error))
      )
    const list = (label: string, run: () => Promise<unknown>) =>
      call(label, run).pipe(
        Effect.map((flat) => removals(flat as ReadonlyArray<string>)),
        Effect.orElseSucceed((): ReadonlyArray<VoiceRemoval> => [])
      )
    const quiet = (label: string, run: () => Promise<unknown>) => Effect.ignore(call(label, run))

    return {
      apply: (change) => {
        const key = channelKey(change.payload.guild_id, change.payload.channel_id)
        switch (change._tag) {
          case "join": {
            const entry: StoredEntry = {
              participant: change.payload.participant,
              streams: {},
              expiresAt: clock.unsafeCurrentTimeMillis() + lifetime
            }
            return call("join", () =>
              redis.eval(
                JOIN,
                0,
                key,
                change.payload.participant.user_id,
                JSON.stringify(entry),
                options.maxChannels,
                options.maxParticipantsPerChannel
              )
            ).pipe(
              // Fail closed: a join the cluster cannot record is not delivered.
              Effect.orElseSucceed(() => "voice_channel_limit"),
              Effect.flatMap((outcome) =>
                outcome === "ok"
                  ? Effect.void
                  : outcome === "voice_participant_limit"
                    ? new PublishRefused({
                        reason: "voice_participant_limit",
                        limit: options.maxParticipantsPerChannel,
                        detail: `the voice channel has ${options.maxParticipantsPerChannel} participants already`
                      })
                    : new PublishRefused({
                        reason: "voice_channel_limit",
                        limit: options.maxChannels,
                        detail: `${options.maxChannels} voice channels are tracked already (or the store is unavailable)`
                      })
              )
            )
          }
          case "leave":
            return quiet("leave", () => redis.eval(LEAVE, 0, key, change.payload.user_id))
          case "update":
            return quiet("update", () =>
              redis.eval(
                UPDATE,
                0,
                key,
                change.payload.user_id,
                JSON.stringify(change.payload.updated_fields),
                change.payload.updated_at_unix,
                clock.unsafeCurrentTimeMillis() + lifetime
              )
            )
          case "publish":
          case "unpublish":
            return quiet("stream", () =>
              redis.eval(
                STREAM,
                0,
                key,
                change.payload.user_id,
                change.payload.stream,
                change._tag === "publish" ? "1" : "0"
              )
            )
        }
      },
      expire: (channel) =>
        list("expire", () =>
          redis.eval(
            EXPIRE,
            0,
            clock.unsafeCurrentTimeMillis(),
            channel === undefined ? "" : channelKey(channel.guildId, channel.channelId)
          )
        ),
      removeUser: (userId, guildId) =>
        list("remove_user", () =>
          redis.eval(REMOVE_USER, 0, userId, guildId === undefined ? "" : `${guildId}:`)
        ),
      snapshot: (guildId, channelId) =>
        call("snapshot", () => redis.hvals(`filament:voice:ch:${channelKey(guildId, channelId)}`)).pipe(
          Effect.map((values) =>
            values.map((value) => (JSON.parse(value) as StoredEntry).participant).sort(byJoinThenIdentity)
          ),
          Effect.orElseSucceed((): ReadonlyArray<VoiceParticipant> => [])
        )
    }
  })

/** Redis voice projection when `GATEWAY_REDIS_URL` is set, else the in-memory one. */
export const layer: Layer.Layer<VoiceParticipants, never, GatewayConfig> = Layer.scoped(
  VoiceParticipants,
  Effect.flatMap(GatewayConfig, (config) => {
    const limits: VoiceLimits = {
      maxChannels: config.maxVoiceChannels,
      maxParticipantsPerChannel: config.maxVoiceParticipantsPerChannel,
      participantLifetime: config.voiceParticipantLifetime
    }
    return Option.match(config.redis, {
      onNone: () => Effect.sync(() => Voice.makeMemory(limits)),
      onSome: ({ url }) => makeRedis({ ...limits, url, timeout: config.busTimeout })
    })
  })
)
