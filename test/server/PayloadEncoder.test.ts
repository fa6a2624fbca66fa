/**
 * The compiled payload encoder against Effect's strict encoder, on every event of the manifest:
 * the same outcome (accepted or not), the same wire value and key order, the same error message —
 * for valid payloads, and for payloads with an unknown key, a missing key or a value of the wrong
 * type at any depth.
 */
import { describe, expect, it } from "@effect/vitest"
import { Arbitrary, Either, FastCheck as fc, ParseResult } from "effect"
import { encodePayload, type EventDefinition } from "../../src/protocol/EventDefinition.js"
import { MessageCreate } from "../../src/protocol/events/message.js"
import { EVENTS } from "../../src/protocol/Manifest.js"
import { encodeStrict } from "../../src/server/core/PayloadEncoder.js"
import { plainTextMessage } from "../fixtures/messages.js"

type Path = ReadonlyArray<string | number>

/** Every object / array position in a value, the root included. */
const containers = (value: unknown, path: Path = []): Array<Path> => {
  if (typeof value !== "object" || value === null) return []
  const inner = Object.entries(value).flatMap(([key, child]) =>
    containers(child, [...path, Array.isArray(value) ? Number(key) : key])
  )
  return [path, ...inner]
}

const leaves = (value: unknown, path: Path = []): Array<Path> =>
  typeof value !== "object" || value === null
    ? [path]
    : Object.entries(value).flatMap(([key, child]) =>
        leaves(child, [...path, Array.isArray(value) ? Number(key) : key])
      )

/** A deep copy with `edit` applied to the container or leaf at `path`. */
const edited = (value: unknown, path: Path, edit: (target: unknown) => unknown): unknown => {
  if (path.length === 0) return edit(value)
  const [head, ...rest] = path
  if (Array.isArray(value)) return value.map((item, i) => (i === head ? edited(item, rest, edit) : item))
  const record = value as Record<string, unknown>
  return { ...record, [head!]: edited(record[head!], rest, edit) }
}

const outcome = (result: Either.Either<unknown, ParseResult.ParseError>) =>
  Either.isRight(result)
    ? { ok: JSON.stringify(result.right) }
    : { error: ParseResult.TreeFormatter.formatErrorSync(result.left) }

const same = (event: EventDefinition, payload: unknown) =>
  expect(outcome(encodeStrict(event, payload))).toEqual(outcome(encodePayload(event, payload)))

const WRONG_VALUES = [null, 7, "x", true, [], {}, undefined]

describe("PayloadEncoder", () => {
  it("message_create: the compiled path takes the bench payload and builds Effect's wire value", () => {
    const payload = plainTextMessage(
      {
        message_id: "01ARZ3NDEKTSV4RRFFQ69G5FAV",
        guild_id: "01ARZ3NDEKTSV4RRFFQ69G5FAW",
        channel_id: "01ARZ3NDEKTSV4RRFFQ69G5FAX",
        author_id: "01ARZ3NDEKTSV4RRFFQ69G5FAY"
      },
      "hello",
      1_735_689_600
    )
    same(MessageCreate, payload)
    expect(Either.isRight(encodeStrict(MessageCreate, payload as never))).toBe(true)
    same(MessageCreate, { ...payload, extra: 1 })
    same(MessageCreate, { ...payload, content: "", attachments: [] })
    same(MessageCreate, { ...payload, markdown_tokens: [{ type: "text" }] })
  })

  for (const event of EVENTS) {
    it(`${event.type}: same outcome as Effect's strict encoder, valid and broken payloads`, () => {
      const payloads = Arbitrary.make(event.payload as never) as fc.Arbitrary<unknown>
      fc.assert(
        fc.property(payloads, fc.nat(), fc.nat(), (payload, pick, wrong) => {
          same(event, payload)
          const places = containers(payload)
          const place = places[pick % places.length]
          if (place !== undefined) {
            same(
              event,
              edited(payload, place, (target) =>
                Array.isArray(target)
                  ? [...target, { unexpected: 1 }]
                  : { ...(target as object), unexpected: 1 }
              )
            )
          }
          const points = leaves(payload)
          const point = points[pick % points.length]
          if (point !== undefined && point.length > 0) {
            same(
              event,
              edited(payload, point, () => WRONG_VALUES[wrong % WRONG_VALUES.length])
            )
            const parent = point.slice(0, -1)
            const key = point[point.length - 1]!
            same(
              event,
              edited(payload, parent, (target) => {
                if (Array.isArray(target)) return target.filter((_, i) => i !== key)
                const { [key]: _removed, ...rest } = target as Record<string | number, unknown>
                return rest
              })
            )
          }
        }),
        { numRuns: 40 }
      )
    })
  }
})
