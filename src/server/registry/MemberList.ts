/**
 * MemberList: the connections of one channel, guild or user, as the registry's persistent indexes
 * hold them. Sorted by connection id in chunks of at most `CHUNK`, copied on write: an add or a
 * remove copies one chunk and the chunk index, O(CHUNK + n / CHUNK), where one flat array copied
 * O(n) per change and made a 50 000-member channel's subscribe (or disconnect) flood quadratic. A
 * list is never mutated, so every earlier registry state keeps exactly its members. The flat array
 * a fanout loops over is built on first use and kept with the list (a list that is never broadcast
 * to never builds one).
 */
import type { Connection, ConnectionId } from "../core/Connection.js"

/** Below this a copy is a few hundred bytes; above it the chunk index stays short (n / CHUNK). */
const CHUNK = 128

type Chunk = ReadonlyArray<Connection>

export interface MemberList {
  readonly size: number
  /** Non-empty chunks in ascending id order, each sorted by id. */
  readonly chunks: ReadonlyArray<Chunk>
  /** The members as one array (ascending id), built on first use. */
  flat: ReadonlyArray<Connection> | undefined
}

const make = (chunks: ReadonlyArray<Chunk>, size: number): MemberList => ({ size, chunks, flat: undefined })

export const empty: MemberList = { size: 0, chunks: [], flat: [] }

/** The first chunk whose last id is >= `id` (the last chunk when every id is smaller). */
const chunkIndex = (chunks: ReadonlyArray<Chunk>, id: ConnectionId): number => {
  let low = 0
  let high = chunks.length - 1
  while (low < high) {
    const middle = (low + high) >>> 1
    const chunk = chunks[middle]!
    if (chunk[chunk.length - 1]!.id < id) low = middle + 1
    else high = middle
  }
  return low
}

/** The position of the first member whose id is >= `id`. */
const position = (chunk: Chunk, id: ConnectionId): number => {
  let low = 0
  let high = chunk.length
  while (low < high) {
    const middle = (low + high) >>> 1
    if (chunk[middle]!.id < id) low = middle + 1
    else high = middle
  }
  return low
}

const replaced = (chunks: ReadonlyArray<Chunk>, at: number, count: number, by: ReadonlyArray<Chunk>) => [
  ...chunks.slice(0, at),
  ...by,
  ...chunks.slice(at + count)
]

/** The list with `connection` (the same list when a member with its id is already in it). */
export const add = (list: MemberList, connection: Connection): MemberList => {
  if (list.size === 0) return make([[connection]], 1)
  const at = chunkIndex(list.chunks, connection.id)
  const chunk = list.chunks[at]!
  const index = position(chunk, connection.id)
  if (chunk[index]?.id === connection.id) return list
  const grown = [...chunk.slice(0, index), connection, ...chunk.slice(index)]
  const by =
    grown.length > CHUNK ? [grown.slice(0, grown.length >>> 1), grown.slice(grown.length >>> 1)] : [grown]
  return make(replaced(list.chunks, at, 1, by), list.size + 1)
}

/** The list without `connection` (the same list when no member has its id). */
export const remove = (list: MemberList, connection: Connection): MemberList => {
  if (list.size === 0) return list
  const at = chunkIndex(list.chunks, connection.id)
  const chunk = list.chunks[at]!
  const index = position(chunk, connection.id)
  if (chunk[index]?.id !== connection.id) return list
  if (list.size === 1) return empty
  const shrunk = [...chunk.slice(0, index), ...chunk.slice(index + 1)]
  const next = list.chunks[at + 1]
  // A chunk that fits with its successor joins it, so removals cannot leave a long index of tiny chunks.
  if (next !== undefined && shrunk.length + next.length <= CHUNK) {
    return make(replaced(list.chunks, at, 2, [[...shrunk, ...next]]), list.size - 1)
  }
  return make(replaced(list.chunks, at, 1, shrunk.length === 0 ? [] : [shrunk]), list.size - 1)
}

/** Every member, ascending id: one array per list, shared by every fanout over it. */
export const toArray = (list: MemberList): ReadonlyArray<Connection> =>
  (list.flat ??= list.chunks.length === 1 ? list.chunks[0]! : list.chunks.flat())

/** The member with the highest id. */
export const last = (list: MemberList): Connection | undefined => {
  const chunk = list.chunks[list.chunks.length - 1]
  return chunk?.[chunk.length - 1]
}
