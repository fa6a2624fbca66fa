/**
 * The voice projection as Redis holds it (`ClusterVoice`): the keys, the stored entry and one Lua
 * script per operation on a guild.
 *
 * Keys: one hash slot per guild (hash tag `{g:<guild>}`), so every script touches keys of one slot
 * and runs on a Redis Cluster as on one Redis: `filament:{g:<guild>}:voice:ch:<channel>` (hash
 * user -> entry JSON: participant, streams, expiry millis) and `filament:{g:<guild>}:voice:user:<user>`
 * (set of the user's channels in the guild). Outside the guilds' slots, updated by separate commands
 * around the scripts: `filament:voice:channels` (set of tracked "guild:channel": the channel cap and
 * the sweep) and `filament:voice:user:<user>` (set of the guilds the user may be in a channel of).
 */
import type { ChannelId, GuildId } from "../../protocol/Ids.js"
import type { VoiceParticipant, VoiceStreamKind } from "../../protocol/Shapes.js"
import { orderedStreams, type VoiceRemoval } from "../chat/Voice.js"

export interface StoredEntry {
  readonly participant: VoiceParticipant
  /** A set as an object: Lua's cjson writes an empty array as `{}`. */
  readonly streams: Partial<Record<VoiceStreamKind, true>>
  readonly expiresAt: number
  /** When a node last wrote it (its clock): of two copies written back, the later wins. */
  readonly writtenAt: number
}

export const CHANNELS = "filament:voice:channels"
export const guildPrefix = (guildId: string) => `filament:{g:${guildId}}:voice:`
export const channelHashKey = (guildId: string, channelId: string) => `${guildPrefix(guildId)}ch:${channelId}`
export const userChannelsKey = (guildId: string, userId: string) => `${guildPrefix(guildId)}user:${userId}`
export const userGuildsKey = (userId: string) => `filament:voice:user:${userId}`

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
export const RESERVE = `
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 1 end
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('SADD', KEYS[1], ARGV[1])
return 1`

/** KEYS: channel hash. ARGV: prefix, channel, user, entry JSON, max participants. "ok" or the refusal. */
export const JOIN = `${PREFIX}
local channel, user = ARGV[2], ARGV[3]
if redis.call('HEXISTS', KEYS[1], user) == 0 and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[5]) then
  return 'voice_participant_limit'
end
redis.call('HSET', KEYS[1], user, ARGV[4])
redis.call('SADD', userkey(user), channel)
return 'ok'`

/** KEYS: channel hash. ARGV: prefix, channel, user. Returns { removed pairs, emptied channels }. */
export const LEAVE = `${PREFIX}
local removed, emptied = {}, {}
drop(ARGV[2], ARGV[3], removed, emptied)
return { removed, emptied }`

/**
 * KEYS: channel hash. ARGV: user, updated fields JSON, updated_at_unix, now millis, new expiry
 * millis. The new entry or nil.
 */
export const UPDATE = `
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
export const STREAM = `
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
export const REASSERT = `${PREFIX}
local current = redis.call('HGET', KEYS[1], ARGV[3])
if current and (cjson.decode(current).writtenAt or 0) >= cjson.decode(ARGV[4]).writtenAt then return 0 end
redis.call('HSET', KEYS[1], ARGV[3], ARGV[4])
redis.call('SADD', userkey(ARGV[3]), ARGV[2])
return 1`

/**
 * KEYS: channel hash. ARGV: prefix, channel, now millis. Returns { removed pairs, emptied channels }
 * (a tracked channel with nobody left in it counts as emptied, so the sweep untracks it).
 */
export const EXPIRE = `${PREFIX}
local removed, emptied = {}, {}
local fields = redis.call('HGETALL', KEYS[1])
local now = tonumber(ARGV[3])
for i = 1, #fields, 2 do
  if cjson.decode(fields[i + 1]).expiresAt <= now then drop(ARGV[2], fields[i], removed, emptied) end
end
if #emptied == 0 and redis.call('EXISTS', KEYS[1]) == 0 then table.insert(emptied, ARGV[2]) end
return { removed, emptied }`

/** KEYS: the user's channels in the guild. ARGV: prefix, user. Returns { removed pairs, emptied channels }. */
export const REMOVE_USER = `${PREFIX}
local removed, emptied = {}, {}
for _, channel in ipairs(redis.call('SMEMBERS', KEYS[1])) do drop(channel, ARGV[2], removed, emptied) end
return { removed, emptied }`

export type ScriptRemovals = [removed: Array<string>, emptied: Array<string>]

/** Removed (channel, entry JSON) pairs of one guild as the removals the caller announces. */
export const removals = (guildId: GuildId, flat: ReadonlyArray<string>): Array<VoiceRemoval> => {
  const result: Array<VoiceRemoval> = []
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const entry = JSON.parse(flat[i + 1]!) as StoredEntry
    result.push({
      guildId,
      channelId: flat[i] as ChannelId,
      userId: entry.participant.user_id,
      identity: entry.participant.identity,
      streams: orderedStreams((stream) => entry.streams[stream] === true)
    })
  }
  return result
}
