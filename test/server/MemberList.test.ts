/**
 * MemberList: after any sequence of adds and removes (enough members to split and merge chunks)
 * the list holds exactly the model's members in ascending id order, every earlier version still
 * holds its own, and a change that changes nothing returns the same list.
 */
import { describe, expect, it } from "@effect/vitest"
import fc from "fast-check"
import type { Connection } from "../../src/server/core/Connection.js"
import * as MemberList from "../../src/server/registry/MemberList.js"

/** A list only uses a connection's id (and keeps the connection itself). */
const connection = (id: number) => ({ id }) as unknown as Connection
const POOL = Array.from({ length: 600 }, (_, id) => connection(id))

const ids = (list: MemberList.MemberList) => MemberList.toArray(list).map((member) => member.id)

const stepArb = fc.record({ add: fc.boolean(), id: fc.nat(POOL.length - 1) })

describe("MemberList", () => {
  it("agrees with a sorted set under random adds and removes; earlier versions never change", () =>
    fc.assert(
      fc.property(
        // Runs of adds first, so lists grow past several chunks before the removes thin them out.
        fc.array(fc.nat(POOL.length - 1), { maxLength: 600, size: "max" }),
        fc.array(stepArb, { maxLength: 1500, size: "max" }),
        (seed, steps) => {
          let list = MemberList.empty
          const model = new Set<number>()
          const versions: Array<[MemberList.MemberList, ReadonlyArray<number>]> = []
          const apply = (add: boolean, id: number) => {
            const next = add ? MemberList.add(list, POOL[id]!) : MemberList.remove(list, POOL[id]!)
            const changes = add !== model.has(id)
            if (add) model.add(id)
            else model.delete(id)
            if (!changes) expect(next).toBe(list)
            list = next
            expect(list.size).toBe(model.size)
            if (versions.length % 50 === 0) versions.push([list, ids(list)])
          }
          for (const id of seed) apply(true, id)
          for (const { add, id } of steps) apply(add, id)
          expect(ids(list)).toEqual([...model].sort((a, b) => a - b))
          expect(MemberList.last(list)?.id).toBe(model.size === 0 ? undefined : Math.max(...model))
          for (const [version, members] of versions) expect(ids(version)).toEqual(members)
          // Every chunk non-empty and within capacity: removes merge, adds split.
          for (const chunk of list.chunks) {
            expect(chunk.length).toBeGreaterThan(0)
            expect(chunk.length).toBeLessThanOrEqual(128)
          }
        }
      ),
      { numRuns: 150 }
    ))

  it("a flooded list stays a short index of full chunks, and a fanout array is shared", () => {
    let list = MemberList.empty
    for (const member of POOL) list = MemberList.add(list, member)
    expect(list.chunks.length).toBeLessThanOrEqual(Math.ceil((2 * POOL.length) / 128))
    expect(MemberList.toArray(list)).toBe(MemberList.toArray(list))
    for (const member of POOL.filter((m) => m.id % 3 !== 0)) list = MemberList.remove(list, member)
    expect(list.size).toBe(200)
    // Thinned by two thirds, neighbours merged: no index of tiny chunks is left behind.
    expect(list.chunks.length).toBeLessThanOrEqual(Math.ceil((2 * list.size) / 128) + 1)
    expect(ids(list)).toEqual(POOL.filter((m) => m.id % 3 === 0).map((m) => m.id))
  })
})
