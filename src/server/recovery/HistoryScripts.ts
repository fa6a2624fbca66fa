/**
 * The Redis history's keys and Lua scripts (declarative), used by `RedisHistory.ts`.
 *
 * Keys, with one hash tag per guild (`{g:<guild>}`: its channels' streams and its own) or per user
 * (`{u:<user>}`), so every script touches one hash slot on a Redis Cluster:
 * `filament:{…}:history:<stream>:meta` (hash: `e` epoch, `o` the last offset, `a` the last append
 * time), `filament:{…}:history:<stream>` (a Redis Stream: entry id `<append millis>-<offset>`,
 * fields `t`, `d`, `s` the publish stamp) and `filament:{…}:history:stamp` (the tag's last stamp).
 */
import { scopeOf, type Entry, type StreamName } from "./History.js"

/**
 * The hash tag of a stream's keys: its guild's for channel and guild streams, its user's for user
 * streams. A bus channel published in the append script must carry the same tag (a Redis Cluster
 * refuses another slot inside a script; checked before the script runs, with one Redis too).
 */
export const slotTag = (stream: StreamName): string => {
  const scope = scopeOf(stream)
  const id = stream.slice(scope.length + 1)
  return scope === "user" ? `{u:${id}}` : `{g:${scope === "channel" ? id.slice(0, id.indexOf(":")) : id}}`
}

/** The hash tag a Redis Cluster hashes `name` by: its first `{…}` with something inside, else none. */
export const hashTagOf = (name: string): string | undefined => {
  const open = name.indexOf("{")
  const close = open < 0 ? -1 : name.indexOf("}", open + 1)
  return close > open + 1 ? name.slice(open, close + 1) : undefined
}

export const keysOf = (stream: StreamName) => {
  const prefix = `filament:${slotTag(stream)}:history:`
  return { meta: `${prefix}${stream}:meta`, entries: `${prefix}${stream}`, stamp: `${prefix}stamp` }
}

/** Reads the epoch or starts a new one (ARGV[1]) with the old entries dropped; refreshes the meta's expiry. */
const EPOCH = `
local function epoch_of(meta, entries, candidate, meta_ttl)
  local epoch = redis.call('HGET', meta, 'e')
  if not epoch then
    epoch = candidate
    redis.call('DEL', entries)
    redis.call('HSET', meta, 'e', epoch, 'o', 0, 'a', 0)
  end
  redis.call('PEXPIRE', meta, meta_ttl)
  return epoch
end
local function trim_age(entries, now, ttl)
  if now - ttl + 1 > 0 then redis.call('XTRIM', entries, 'MINID', string.format('%.0f', now - ttl + 1)) end
end
`

/**
 * KEYS: meta, entries, stamp. ARGV: candidate epoch, now millis, ttl millis, max events, meta ttl
 * millis, t, d, publish command ('' for none), channel, prefix, suffix. Returns { epoch, offset }.
 */
export const APPEND = `${EPOCH}
local now, ttl = tonumber(ARGV[2]), tonumber(ARGV[3])
local epoch = epoch_of(KEYS[1], KEYS[2], ARGV[1], ARGV[5])
local offset = redis.call('HINCRBY', KEYS[1], 'o', 1)
local at = math.max(now, tonumber(redis.call('HGET', KEYS[1], 'a')))
redis.call('HSET', KEYS[1], 'a', string.format('%.0f', at))
local stamp = math.max(tonumber(redis.call('GET', KEYS[3]) or '0') + 1, now * 1000)
redis.call('SET', KEYS[3], string.format('%.0f', stamp), 'PX', ARGV[5])
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[4], string.format('%.0f-%d', at, offset),
  't', ARGV[6], 'd', ARGV[7], 's', string.format('%.0f', stamp))
trim_age(KEYS[2], now, ttl)
redis.call('PEXPIRE', KEYS[2], string.format('%.0f', at - now + ttl))
if ARGV[8] ~= '' then
  redis.call(ARGV[8], ARGV[9], ARGV[10] .. epoch .. ':' .. offset .. ARGV[11])
end
return { epoch, offset }`

/**
 * KEYS: meta, entries. ARGV: candidate epoch, now millis, ttl millis, meta ttl millis, '1' when a
 * position is given ('0': the head alone), position epoch, position offset, max. Returns
 * { epoch, head } and then either the verdict or '' and the entries newest first.
 */
export const READ = `${EPOCH}
local epoch = epoch_of(KEYS[1], KEYS[2], ARGV[1], ARGV[4])
local head = tonumber(redis.call('HGET', KEYS[1], 'o'))
if ARGV[5] == '0' then return { epoch, head } end
if ARGV[6] ~= epoch then return { epoch, head, 'epoch_changed' } end
local from = tonumber(ARGV[7])
if from > head then return { epoch, head, 'position_ahead' } end
local missed = head - from
if missed == 0 then return { epoch, head, '', {} } end
trim_age(KEYS[2], tonumber(ARGV[2]), tonumber(ARGV[3]))
if redis.call('XLEN', KEYS[2]) < missed then return { epoch, head, 'position_trimmed' } end
if missed > tonumber(ARGV[8]) then return { epoch, head, 'too_many_events' } end
return { epoch, head, '', redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', missed) }`

export type RawEntry = [id: string, fields: Array<string>]
export type ReadReply = [epoch: string, head: number, verdict?: string, entries?: Array<RawEntry>]

export interface HistoryCommands {
  readonly historyAppend: (...args: ReadonlyArray<string | number | Uint8Array>) => Promise<[string, number]>
  readonly historyRead: (...args: ReadonlyArray<string | number>) => Promise<ReadReply>
}

export const toEntry = ([id, fields]: RawEntry): Entry => {
  const [at, offset] = id.split("-")
  const field = (name: string) => fields[fields.indexOf(name) + 1]!
  return { t: field("t"), d: field("d"), offset: Number(offset), at: Number(at), stamp: Number(field("s")) }
}
