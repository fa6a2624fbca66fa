/**
 * The voice participant projection across a cluster: the `VoiceParticipants` contract kept in Redis,
 * one atomic script per operation on a guild, so a join published on one node is in the snapshot
 * another node sends on subscribe, the caps hold for the cluster (the channel cap by an atomic
 * reservation in the tracked-channel set before the join), and an expiry or a user's removal is
 * handed back (and so announced) by exactly one node — whichever ran the script that removed it.
 *
 * Redis restarted empty (or a master failed over) loses the projection while the participants are
 * still in their calls. Each node therefore keeps a copy of the entries it wrote last (kept in step
 * with Redis once per check period: an entry another node changed or removed is refreshed or
 * forgotten) and, when a Redis server was replaced, writes back those Redis no longer has.
 *
 * Keys: one hash slot per guild (hash tag `{g:<guild>}`), so every script touches keys of one slot
 * and runs on a Redis Cluster as on one Redis: `filament:{g:<guild>}:voice:ch:<channel>` (hash
 * user -> entry JSON: participant, streams, expiry millis) and `filament:{g:<guild>}:voice:user:<user>`
 * (set of the user's channels in the guild). Outside the guilds' slots, updated by separate commands
 * around the scripts: `filament:voice:channels` (set of tracked "guild:channel": the channel cap and
 * the sweep) and `filament:voice:user:<user>` (set of the guilds the user may be in a channel of).
 */
import { Duration, Effect, Layer, Queue, Schedule } from "effect"
import type { Scope } from "effect"
import type { ChannelId, GuildId, UserId } from "../../protocol/Ids.js"
import type { VoiceParticipant, VoiceStreamKind } from "../../protocol/Shapes.js"
import { GatewayConfig, type RedisEndpoint } from "../Config.js"
import { GatewayMetrics } from "../Metrics.js"
import { PublishRefused } from "../Errors.js"
import * as RedisClient from "./RedisClient.js"
import { channelKey } from "../registry/Indexes.js"
import * as Voice from "../chat/Voice.js"
import {
  VoiceParticipants,
  type VoiceLimits,
  type VoiceParticipantsShape,
  type VoiceRemoval
} from "../chat/Voice.js"

interface StoredEntry {
  readonly participant: VoiceParticipant
  /** A set as an object: Lua's cjson writes an empty array as `{}`. */
  readonly streams: Partial<Record<VoiceStreamKind, true>>
  readonly expiresAt: number
  /** When a node last wrote it (its clock): of two copies written back, the later wins. */
  readonly writtenAt: number
}

const CHANNELS = "filament:voice:channels"
const guildPrefix = (guildId: string) => `filament:{g:${guildId}}:voice:`
const channelHashKey = (guildId: string, channelId: string) => `${guildPrefix(guildId)}ch:${channelId}`
const userChannelsKey = (guildId: string, userId: string) => `${guildPrefix(guildId)}user:${userId}`
const userGuildsKey = (userId: string) => `filament:voice:user:${userId}`

/**
 * For the guild's scripts that remove: ARGV[1] is the guild's key prefix, KEYS[1] a key of the guild
 * (every script's first key routes it to the guild's shard). `drop` collects the removed (channel,
 * entry) pairs and the channels it left empty, for the caller to untrack.
 */
const PREFIX = `
local P = ARGV[1]
local function chkey(channel) return P .. 'ch:' .. channel end
local function userkey(user) return P .. 'user:' .. user end
local function drop(channel, user, removed, emptied)
  local entry = redis.call('HGET', chkey(channel), user)
  if not entry then return end
  redis.call('HDEL', chkey(channel), user)
  if redis.call('EXISTS', chkey(channel)) == 0 then table.insert(emptied, channel) end
  redis.call('SREM', userkey(user), channel)
  table.insert(removed, channel)
  table.insert(removed, entry)
end
`

/** KEYS: tracked channels. ARGV: "guild:channel", max channels. 1 when the channel is (now) tracked. */
const RESERVE = `
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 1 end
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('SADD', KEYS[1], ARGV[1])
return 1`

/** KEYS: channel hash. ARGV: prefix, channel, user, entry JSON, max participants. "ok" or the refusal. */
const JOIN = `${PREFIX}
local channel, user = ARGV[2], ARGV[3]
if redis.call('HEXISTS', KEYS[1], user) == 0 and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[5]) then
  return 'voice_participant_limit'
end
redis.call('HSET', KEYS[1], user, ARGV[4])
redis.call('SADD', userkey(user), channel)
return 'ok'`

/** KEYS: channel hash. ARGV: prefix, channel, user. Returns { removed pairs, emptied channels }. */
const LEAVE = `${PREFIX}
local removed, emptied = {}, {}
drop(ARGV[2], ARGV[3], removed, emptied)
return { removed, emptied }`

/**
 * KEYS: channel hash. ARGV: user, updated fields JSON, updated_at_unix, now millis, new expiry
 * millis. The new entry or nil.
 */
const UPDATE = `
local entry = redis.call('HGET', KEYS[1], ARGV[1])
if not entry then return false end
entry = cjson.decode(entry)
for field, value in pairs(cjson.decode(ARGV[2])) do entry.participant[field] = value end
entry.participant.updated_at_unix = tonumber(ARGV[3])
entry.writtenAt = tonumber(ARGV[4])
entry.expiresAt = tonumber(ARGV[5])
entry = cjson.encode(entry)
redis.call('HSET', KEYS[1], ARGV[1], entry)
return entry`

/** KEYS: channel hash. ARGV: user, stream, "1" (published) or "0", now millis. The new entry or nil. */
const STREAM = `
local entry = redis.call('HGET', KEYS[1], ARGV[1])
if not entry then return false end
entry = cjson.decode(entry)
if ARGV[3] == '1' then entry.streams[ARGV[2]] = true else entry.streams[ARGV[2]] = nil end
entry.writtenAt = tonumber(ARGV[4])
entry = cjson.encode(entry)
redis.call('HSET', KEYS[1], ARGV[1], entry)
return entry`

/**
 * KEYS: channel hash. ARGV: prefix, channel, user, entry JSON. Writes the entry back unless the
 * channel has one for the user written as late or later (another node's newer copy, or a change
 * made after Redis came back). 1 when written.
 */
const REASSERT = `${PREFIX}
local current = redis.call('HGET', KEYS[1], ARGV[3])
if current and (cjson.decode(current).writtenAt or 0) >= cjson.decode(ARGV[4]).writtenAt then return 0 end
redis.call('HSET', KEYS[1], ARGV[3], ARGV[4])
redis.call('SADD', userkey(ARGV[3]), ARGV[2])
return 1`

/**
 * KEYS: channel hash. ARGV: prefix, channel, now millis. Returns { removed pairs, emptied channels }
 * (a tracked channel with nobody left in it counts as emptied, so the sweep untracks it).
 */
const EXPIRE = `${PREFIX}
local removed, emptied = {}, {}
local fields = redis.call('HGETALL', KEYS[1])
local now = tonumber(ARGV[3])
for i = 1, #fields, 2 do
  if cjson.decode(fields[i + 1]).expiresAt <= now then drop(ARGV[2], fields[i], removed, emptied) end
end
if #emptied == 0 and redis.call('EXISTS', KEYS[1]) == 0 then table.insert(emptied, ARGV[2]) end
return { removed, emptied }`

/** KEYS: the user's channels in the guild. ARGV: prefix, user. Returns { removed pairs, emptied channels }. */
const REMOVE_USER = `${PREFIX}
local removed, emptied = {}, {}
for _, channel in ipairs(redis.call('SMEMBERS', KEYS[1])) do drop(channel, ARGV[2], removed, emptied) end
return { removed, emptied }`

type ScriptRemovals = [removed: Array<string>, emptied: Array<string>]

const STREAM_ORDER: ReadonlyArray<VoiceStreamKind> = ["microphone", "camera", "screen_share"]

const byJoinThenIdentity = (a: VoiceParticipant, b: VoiceParticipant) =>
  a.joined_at_unix - b.joined_at_unix || (a.identity < b.identity ? -1 : a.identity > b.identity ? 1 : 0)

/** Removed (channel, entry JSON) pairs of one guild as the removals the caller announces. */
const removals = (guildId: GuildId, flat: ReadonlyArray<string>): Array<VoiceRemoval> => {
  const result: Array<VoiceRemoval> = []
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const entry = JSON.parse(flat[i + 1]!) as StoredEntry
    result.push({
      guildId,
      channelId: flat[i] as ChannelId,
      userId: entry.participant.user_id,
      identity: entry.participant.identity,
      streams: STREAM_ORDER.filter((stream) => entry.streams[stream] === true)
    })
  }
  return result
}

export interface ClusterVoiceOptions extends VoiceLimits {
  readonly endpoint: RedisEndpoint
  /** Bound on one Redis call (a refused join is then refused with the channel-limit reason). */
  readonly timeout: Duration.Duration
  /** How often the node checks whether Redis lost the projection (and refreshes its copy). */
  readonly checkEvery: Duration.Duration
}

/** One entry this node wrote last, as Redis holds it. */
interface Written {
  readonly guildId: GuildId
  readonly channelId: ChannelId
  readonly userId: UserId
  readonly entry: string
}

export const makeRedis = (
  options: ClusterVoiceOptions
): Effect.Effect<VoiceParticipantsShape, never, Scope.Scope | GatewayMetrics> =>
  Effect.gen(function* () {
    const clock = yield* Effect.clock
    const metrics = yield* GatewayMetrics
    const redis = yield* RedisClient.make(options.endpoint, {
      connectionName: "filament-voice",
      lazyConnect: false,
      offlineQueue: true,
      maxRetriesPerRequest: null
    })
    const lifetime = Duration.toMillis(options.participantLifetime)

    const call = <A>(label: string, run: () => Promise<A>) =>
      Effect.tryPromise(run).pipe(
        Effect.timeout(options.timeout),
        Effect.tapError((error) => Effect.logWarning(`gateway.cluster_voice.${label}_failed`, error))
      )
    const list = (label: string, run: () => Promise<ReadonlyArray<VoiceRemoval>>) =>
      call(label, run).pipe(Effect.orElseSucceed((): ReadonlyArray<VoiceRemoval> => []))
    const quiet = (label: string, run: () => Promise<unknown>) => Effect.ignore(call(label, run))

    /** The entries this node wrote last, by channel and user: what it writes back when Redis lost them. */
    const written = new Map<string, Written>()
    const writtenKey = (guildId: GuildId, channelId: ChannelId, userId: UserId) =>
      `${channelKey(guildId, channelId)}:${userId}`
    /** Records what a script left in Redis for the user: the entry, or nothing (null). */
    const remember = (guildId: GuildId, channelId: ChannelId, userId: UserId, entry: unknown) => {
      const key = writtenKey(guildId, channelId, userId)
      if (typeof entry === "string") written.set(key, { guildId, channelId, userId, entry })
      else written.delete(key)
    }
    const forget = (removed: ReadonlyArray<VoiceRemoval>) => {
      for (const removal of removed)
        written.delete(writtenKey(removal.guildId, removal.channelId, removal.userId))
      return removed
    }

    const reassert = (entries: ReadonlyArray<Written>) =>
      Promise.all(
        entries.map(async ({ channelId, entry, guildId, userId }) => {
          await redis.eval(
            REASSERT,
            1,
            channelHashKey(guildId, channelId),
            guildPrefix(guildId),
            channelId,
            userId,
            entry
          )
          await Promise.all([
            redis.sadd(CHANNELS, channelKey(guildId, channelId)),
            redis.sadd(userGuildsKey(userId), guildId)
          ])
        })
      )

    const replaced = RedisClient.replacementDetector(redis)
    const serialized = (yield* Effect.makeSemaphore(1)).withPermits(1)
    /**
     * Refreshes the copy from Redis (entries other nodes changed or removed) unless a server was
     * replaced meanwhile; then the copy as it was is written back instead.
     */
    const check = (refresh: boolean) =>
      call("check", async () => {
        const entries = [...written.values()]
        const current = refresh
          ? await Promise.all(
              entries.map(({ channelId, guildId, userId }) =>
                redis.hget(channelHashKey(guildId, channelId), userId)
              )
            )
          : []
        if (await replaced(() => reassert(entries))) return true
        for (const [i, copy] of current.entries()) {
          const { channelId, guildId, userId } = entries[i]!
          // Unless this node wrote the entry again meanwhile: its own write is the newer.
          if (written.get(writtenKey(guildId, channelId, userId)) === entries[i]) {
            remember(guildId, channelId, userId, copy)
          }
        }
        return false
      }).pipe(
        Effect.flatMap((reasserted) =>
          reasserted
            ? Effect.zipRight(
                Effect.sync(() => metrics.clusterStateReasserted("voice")),
                Effect.logWarning(`gateway.cluster_voice.reasserted entries=${written.size}`)
              )
            : Effect.void
        ),
        Effect.ignore,
        serialized
      )
    yield* check(false)
    yield* Effect.forkScoped(Effect.repeat(check(true), Schedule.spaced(options.checkEvery)))
    // A server connected again (restarted, failed over): checked at once rather than at the next period.
    const reconnected = yield* Queue.sliding<void>(1)
    RedisClient.onServerConnected(redis, () => Queue.unsafeOffer(reconnected, undefined))
    yield* Effect.forkScoped(Effect.forever(Effect.zipRight(Queue.take(reconnected), check(false))))

    /**
     * Removes `member` from an index outside the guild's slot unless it still holds something: a
     * concurrent join re-adds it after its script, so either that join or this re-check keeps it.
     */
    const untrack = async (index: string, member: string, heldKey: string) => {
      await redis.srem(index, member)
      if ((await redis.exists(heldKey)) === 1) await redis.sadd(index, member)
    }
    const untrackChannels = (guildId: GuildId, channels: ReadonlyArray<string>) =>
      Promise.all(
        channels.map((channelId) =>
          untrack(CHANNELS, `${guildId}:${channelId}`, channelHashKey(guildId, channelId))
        )
      )

    /** Runs one of the guild's removing scripts, untracks what it emptied, returns its removals. */
    const removeIn = async (
      guildId: GuildId,
      script: string,
      key: string,
      ...args: Array<string | number>
    ) => {
      const [removed, emptied] = (await redis.eval(
        script,
        1,
        key,
        guildPrefix(guildId),
        ...args
      )) as ScriptRemovals
      await untrackChannels(guildId, emptied)
      return removals(guildId, removed)
    }

    const join = async (guildId: GuildId, channelId: ChannelId, userId: UserId, entry: StoredEntry) => {
      const entryJson = JSON.stringify(entry)
      const tracked = await redis.eval(
        RESERVE,
        1,
        CHANNELS,
        channelKey(guildId, channelId),
        options.maxChannels
      )
      if (tracked !== 1) return "voice_channel_limit"
      const outcome = await redis.eval(
        JOIN,
        1,
        channelHashKey(guildId, channelId),
        guildPrefix(guildId),
        channelId,
        userId,
        entryJson,
        options.maxParticipantsPerChannel
      )
      // Indexed again after the script: an untrack racing with this join cannot leave it out.
      if (outcome === "ok") {
        remember(guildId, channelId, userId, entryJson)
        await Promise.all([
          redis.sadd(CHANNELS, channelKey(guildId, channelId)),
          redis.sadd(userGuildsKey(userId), guildId)
        ])
      }
      return outcome
    }

    return {
      apply: (change) => {
        const { channel_id: channelId, guild_id: guildId } = change.payload
        const key = channelHashKey(guildId, channelId)
        switch (change._tag) {
          case "join": {
            const now = clock.unsafeCurrentTimeMillis()
            const entry: StoredEntry = {
              participant: change.payload.participant,
              streams: {},
              expiresAt: now + lifetime,
              writtenAt: now
            }
            return call("join", () =>
              join(guildId, channelId, change.payload.participant.user_id, entry)
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
            return quiet("leave", () =>
              removeIn(guildId, LEAVE, key, channelId, change.payload.user_id).then(forget)
            )
          case "update":
            return quiet("update", () =>
              redis
                .eval(
                  UPDATE,
                  1,
                  key,
                  change.payload.user_id,
                  JSON.stringify(change.payload.updated_fields),
                  change.payload.updated_at_unix,
                  clock.unsafeCurrentTimeMillis(),
                  clock.unsafeCurrentTimeMillis() + lifetime
                )
                .then((entry) => remember(guildId, channelId, change.payload.user_id, entry))
            )
          case "publish":
          case "unpublish":
            return quiet("stream", () =>
              redis
                .eval(
                  STREAM,
                  1,
                  key,
                  change.payload.user_id,
                  change.payload.stream,
                  change._tag === "publish" ? "1" : "0",
                  clock.unsafeCurrentTimeMillis()
                )
                .then((entry) => remember(guildId, channelId, change.payload.user_id, entry))
            )
        }
      },
      expire: (channel) =>
        list("expire", async () => {
          const now = clock.unsafeCurrentTimeMillis()
          const channels =
            channel === undefined
              ? (await redis.smembers(CHANNELS)).map((tracked) => tracked.split(":") as [GuildId, ChannelId])
              : [[channel.guildId, channel.channelId] as const]
          const removed = await Promise.all(
            channels.map(([guildId, channelId]) =>
              removeIn(guildId, EXPIRE, channelHashKey(guildId, channelId), channelId, now)
            )
          )
          return forget(removed.flat())
        }),
      removeUser: (userId, guildId) =>
        list("remove_user", async () => {
          const guilds =
            guildId === undefined
              ? ((await redis.smembers(userGuildsKey(userId))) as Array<GuildId>)
              : [guildId]
          const removed = await Promise.all(
            guilds.map(async (guild) => {
              const userChannels = userChannelsKey(guild, userId)
              const inGuild = await removeIn(guild, REMOVE_USER, userChannels, userId)
              await untrack(userGuildsKey(userId), guild, userChannels)
              return inGuild
            })
          )
          return forget(removed.flat())
        }),
      snapshot: (guildId, channelId) =>
        call("snapshot", () => redis.hvals(channelHashKey(guildId, channelId))).pipe(
          Effect.map((values) =>
            values.map((value) => (JSON.parse(value) as StoredEntry).participant).sort(byJoinThenIdentity)
          ),
          Effect.orElseSucceed((): ReadonlyArray<VoiceParticipant> => [])
        )
    }
  })

/** The Redis voice projection at `endpoint` (`GATEWAY_REDIS_URL`). */
export const layerRedis = (
  endpoint: RedisEndpoint
): Layer.Layer<VoiceParticipants, never, GatewayConfig | GatewayMetrics> =>
  Layer.scoped(
    VoiceParticipants,
    Effect.flatMap(GatewayConfig, (config) =>
      makeRedis({
        ...Voice.limitsOf(config),
        endpoint,
        timeout: config.busTimeout,
        // The presence heartbeat's period: both converge within it after Redis lost them.
        checkEvery: Duration.millis(Math.max(1, Math.floor(Duration.toMillis(config.nodeTtl) / 3)))
      })
    )
  )
