/**
 * Presence as Redis holds it (`ClusterPresence`): the keys, one Lua script per transition, and the
 * reaping of a dead node's holdings.
 *
 * Keys: one hash slot per guild (hash tag `{g:<guild>}`), so every script touches keys of one slot
 * and runs on a Redis Cluster as on one Redis: `filament:{g:<guild>}:presence` (hash user -> holding
 * nodes) and `filament:{g:<guild>}:node:<node>` (hash user -> holdings of that node in the guild).
 * Outside the guilds' slots: `filament:node:<node>:guilds` (set: the guilds the node may hold someone
 * in; added to before each join, never trimmed, so a reaper may visit a guild with nothing to reap)
 * and `filament:nodes` (sorted set node -> last heartbeat).
 */
import type { GuildId, UserId } from "../../protocol/Ids.js"
import type * as RedisClient from "./RedisClient.js"

export const NODES = "filament:nodes"
export const guildKey = (guildId: string) => `filament:{g:${guildId}}:presence`
export const holdingsKey = (guildId: string, node: string) => `filament:{g:${guildId}}:node:${node}`
export const guildsOfNodeKey = (node: string) => `filament:node:${node}:guilds`

/** KEYS: node's holdings in the guild, guild hash. ARGV: user. 1 when the user came online in the guild. */
export const JOIN = `
if redis.call('HINCRBY', KEYS[1], ARGV[1], 1) ~= 1 then return 0 end
if redis.call('HINCRBY', KEYS[2], ARGV[1], 1) == 1 then return 1 end
return 0`

/** KEYS: node's holdings in the guild, guild hash. ARGV: user. 1 when the user went offline in the guild. */
export const LEAVE = `
local held = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if held > 0 then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
if held < 0 then return 0 end
local nodes = redis.call('HINCRBY', KEYS[2], ARGV[1], -1)
if nodes > 0 then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
return 1`

/**
 * KEYS: a node's holdings in one guild, guild hash. Removes the holdings; returns the users that went
 * offline in the guild. Deleting what it reaps makes a second reaper of the same node find nothing.
 */
export const REAP_GUILD = `
local offline = {}
for _, user in ipairs(redis.call('HKEYS', KEYS[1])) do
  if redis.call('HINCRBY', KEYS[2], user, -1) <= 0 then
    redis.call('HDEL', KEYS[2], user)
    table.insert(offline, user)
  end
end
redis.call('DEL', KEYS[1])
return offline`

/**
 * KEYS: node's holdings in the guild, guild hash. ARGV: user, this node's holdings of the user.
 * Restores the holding; counts the node in the guild hash unless its holding was there (written by a
 * join sent after Redis came back, or never lost). 1 when it restored the node's count.
 */
export const REASSERT = `
local had = redis.call('HEXISTS', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if had == 1 then return 0 end
redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
return 1`

/**
 * Removes a node's holdings guild by guild (one atomic script per guild), then its index and its
 * heartbeat; the users that went offline.
 */
export const reapNode = async (redis: RedisClient.RedisClient, node: string) => {
  const guilds = await redis.smembers(guildsOfNodeKey(node))
  const offline = await Promise.all(
    guilds.map(async (guildId) => {
      const users = (await redis.eval(
        REAP_GUILD,
        2,
        holdingsKey(guildId, node),
        guildKey(guildId)
      )) as Array<string>
      return users.map((user) => [guildId as GuildId, user as UserId] as const)
    })
  )
  await redis.del(guildsOfNodeKey(node))
  await redis.zrem(NODES, node)
  return offline.flat()
}
