/**
 * The parity property of the generated client decoders (src/client/generated/decoders.ts) with
 * Effect Schema, shared by the parity test and the mutant test: for the envelope, every event payload
 * (tolerant, as the client decodes) and every command (strict), the same verdict and the same decoded
 * value on values generated from the schemas (`Arbitrary.make`, and the wire shape without its
 * refinements) and on near-misses edited from valid values.
 */
import { Arbitrary, Either, FastCheck as fc, Schema } from "effect"
import type { ParseResult } from "effect"
import { expect } from "vitest"
import type * as Generated from "../../src/client/generated/decoders.js"
import type { Decoded } from "../../src/client/generated/decoders.js"
import { COMMANDS } from "../../src/protocol/Commands.js"
import { EventPosition } from "../../src/protocol/Recovery.js"
import { Envelope } from "../../src/protocol/Envelope.js"
import { decodePayload, type EventDefinition } from "../../src/protocol/EventDefinition.js"
import { Manifest } from "../../src/protocol/Manifest.js"

export type GeneratedModule = Pick<
  typeof Generated,
  "EVENT_PAYLOAD_DECODERS" | "COMMAND_PAYLOAD_DECODERS" | "decodeEnvelope" | "decodePosition"
>

type Verdict = { readonly ok: true; readonly value: unknown } | { readonly ok: false }

export interface Target {
  readonly name: string
  readonly schema: Schema.Schema<unknown, unknown>
  readonly effect: (input: unknown) => Either.Either<unknown, ParseResult.ParseError>
  readonly generated: (module: GeneratedModule) => (input: unknown) => Decoded<unknown>
}

export const TARGETS: ReadonlyArray<Target> = [
  {
    name: "envelope",
    schema: Envelope as unknown as Schema.Schema<unknown, unknown>,
    effect: Schema.decodeUnknownEither(Envelope, { onExcessProperty: "ignore" }),
    generated: (module) => module.decodeEnvelope
  },
  {
    name: "pos",
    schema: EventPosition as unknown as Schema.Schema<unknown, unknown>,
    effect: Schema.decodeUnknownEither(EventPosition, { onExcessProperty: "ignore" }),
    generated: (module) => module.decodePosition
  },
  ...Manifest.events.map((event): Target => ({
    name: event.type,
    schema: event.payload as Schema.Schema<unknown, unknown>,
    effect: (input) => decodePayload(event as EventDefinition, input, { strict: false }),
    generated: (module) => module.EVENT_PAYLOAD_DECODERS.get(event.type)!
  })),
  ...COMMANDS.map((command): Target => ({
    name: `command ${command.type}`,
    schema: command.payload as unknown as Schema.Schema<unknown, unknown>,
    effect: Schema.decodeUnknownEither(command.payload as unknown as Schema.Schema<unknown, unknown>, {
      onExcessProperty: "error"
    }),
    generated: (module) =>
      module.COMMAND_PAYLOAD_DECODERS[command.type] as (input: unknown) => Decoded<unknown>
  }))
]

export const effectVerdict = (target: Target, input: unknown): Verdict =>
  Either.match(target.effect(input), {
    onLeft: () => ({ ok: false }),
    onRight: (value) => ({ ok: true, value })
  })

const generatedVerdict = (module: GeneratedModule, target: Target, input: unknown): Verdict => {
  const result = target.generated(module)(input)
  return result.ok ? { ok: true, value: result.value } : { ok: false }
}

// ---------------------------------------------------------------------------------------------
// Inputs: schema-generated values and their near-misses
// ---------------------------------------------------------------------------------------------

type Json = null | boolean | number | string | ReadonlyArray<Json> | { readonly [key: string]: Json }
type Path = ReadonlyArray<string | number>

/** Every node of a JSON value, with its path. */
const nodes = (value: Json, path: Path = []): Array<{ path: Path; value: Json }> => {
  const out = [{ path, value }]
  if (Array.isArray(value)) value.forEach((item, index) => out.push(...nodes(item, [...path, index])))
  else if (typeof value === "object" && value !== null)
    for (const [key, item] of Object.entries(value)) out.push(...nodes(item, [...path, key]))
  return out
}

/** `value` with the node at `path` replaced by `replace(node)` (or removed when it returns `REMOVE`). */
const REMOVE: unique symbol = Symbol("remove")
const update = (
  value: Json,
  path: Path,
  replace: (node: Json) => Json | typeof REMOVE
): Json | typeof REMOVE => {
  if (path.length === 0) return replace(value)
  const [head, ...rest] = path
  if (Array.isArray(value)) {
    const copy = [...(value as Array<Json>)]
    const next = update(copy[head as number]!, rest, replace)
    if (next === REMOVE) copy.splice(head as number, 1)
    else copy[head as number] = next
    return copy
  }
  const copy: Record<string, Json> = { ...(value as Record<string, Json>) }
  const next = update(copy[head as string]!, rest, replace)
  if (next === REMOVE) delete copy[head as string]
  else copy[head as string] = next
  return copy
}

const ULID = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
const OTHER_TYPES: ReadonlyArray<Json> = [null, 0, 1, -1, 1.5, "", "x", true, false, [], {}]

/**
 * Near-miss edits of a node, aimed at the rules of the contract: lengths just over and far over each
 * bound, bad ids (case, length, excluded letters), control characters, blank strings, integer and
 * range edges, repeated array items (duplicates, counts over each cap), removed and extra keys, and
 * any other JSON type in place of the node.
 */
const editsOf = (node: Json): ReadonlyArray<(node: Json) => Json | typeof REMOVE> => {
  const retype = OTHER_TYPES.map((other) => () => other)
  const remove = (): typeof REMOVE => REMOVE
  if (typeof node === "string") {
    const lengths = [1, 6, 26, 33, 65, 129, 513, 2001, 2049, 4097, 16_385]
    return [
      ...retype,
      remove,
      ...lengths.map((n) => (s: Json) => (s as string) + "x".repeat(n)),
      ...lengths.map((n) => () => "é".repeat(n)),
      (s) => (s as string).toLowerCase(),
      (s) => (s as string).toUpperCase(),
      (s) => (s as string).slice(1),
      (s) => (s as string).slice(0, -1) + "U",
      (s) => (s as string).slice(0, -1) + "i",
      (s) => ` ${s as string} `,
      (s) => `${s as string}\u0000`,
      (s) => `${s as string}/x`,
      (s) => `${s as string} x`,
      () => ULID,
      () => ULID.toLowerCase(),
      () => "   ",
      () => "😀".repeat(700),
      () => "#ABCDEG",
      () => "a".repeat(64)
    ]
  }
  if (typeof node === "number") {
    return [
      ...retype,
      remove,
      ...[0, -0, 1, 2, 6, 7, 2_147_483_647, 2_147_483_648, -2_147_483_649, 2 ** 53, 2 ** 53 - 1].map(
        (n) => () => n
      ),
      (n) => (n as number) + 0.5,
      (n) => -(n as number)
    ]
  }
  if (Array.isArray(node)) {
    const items = node as ReadonlyArray<Json>
    const counts = [2, 6, 33, 65, 513, 1025, 4097]
    return [
      ...retype,
      remove,
      () => [],
      () => [...items, ...items],
      ...counts.map(
        (n) => () => Array.from({ length: n }, (_, i) => items[i % Math.max(items.length, 1)] ?? null)
      ),
      () => items.map((item) => (typeof item === "string" ? item.toLowerCase() : item)),
      () => [...items].reverse()
    ]
  }
  if (typeof node === "object" && node !== null) {
    const object = node as Record<string, Json>
    const keys = Object.keys(object)
    return [
      ...retype,
      remove,
      () => ({ ...object, extra_key: 1 }),
      () =>
        JSON.parse(`{"__proto__": {"x": 1}, ${JSON.stringify(object).slice(1)}`.replace(", }", "}")) as Json,
      ...keys.map((key) => () => {
        const { [key]: _removed, ...rest } = object
        return rest
      }),
      () => ({})
    ]
  }
  return [...retype, remove]
}

/** A JSON value with 1..3 near-miss edits applied at random nodes. */
export const mutated = (valid: fc.Arbitrary<Json>): fc.Arbitrary<Json> =>
  fc
    .tuple(valid, fc.array(fc.tuple(fc.nat(), fc.nat()), { minLength: 1, maxLength: 3 }))
    .map(([value, picks]) => {
      let current: Json = value
      for (const [nodePick, editPick] of picks) {
        const all = nodes(current)
        const { path, value: node } = all[nodePick % all.length]!
        const edits = editsOf(node)
        const next = update(current, path, edits[editPick % edits.length]!)
        current = next === REMOVE ? null : next
      }
      return current
    })

/** Valid wire values: decoded values of the schema, encoded (what the server sends). */
export const validValues = (target: Target): fc.Arbitrary<Json> => {
  if (target.name === "envelope") {
    // The envelope is generated around a real event's wire payload.
    return fc.constantFrom(...Manifest.events).chain((event) =>
      validValues(TARGETS.find((candidate) => candidate.name === event.type)!).map((d) => ({
        v: 1,
        t: event.type,
        d
      }))
    )
  }
  const encode = Schema.encodeSync(target.schema)
  return Arbitrary.make(target.schema).map((value) => JSON.parse(JSON.stringify(encode(value))) as Json)
}

/** Values of the wire shape with no refinement (`encodedSchema`): mostly wrong ids, lengths, ranges. */
const unrefinedValues = (target: Target): fc.Arbitrary<Json> =>
  target.name === "envelope"
    ? validValues(target)
    : Arbitrary.make(Schema.encodedSchema(target.schema)).map(
        (value) => JSON.parse(JSON.stringify(value)) as Json
      )

/** Valid values, unrefined values and near-misses with 1..3 random edits. */
export const inputsOf = (target: Target): fc.Arbitrary<Json> =>
  fc.oneof(
    validValues(target),
    unrefinedValues(target),
    mutated(validValues(target)),
    mutated(validValues(target))
  )

export const sameVerdict = (module: GeneratedModule, target: Target, input: unknown): boolean => {
  const expected = effectVerdict(target, input)
  const actual = generatedVerdict(module, target, input)
  expect(actual.ok, `${target.name}: ${JSON.stringify(input)?.slice(0, 400)}`).toBe(expected.ok)
  if (expected.ok && actual.ok) expect(actual.value).toStrictEqual(expected.value)
  return true
}

/** Generated and mutated inputs of `target` get Effect's verdict and value. */
export const parity = (module: GeneratedModule, target: Target) =>
  fc.property(inputsOf(target), (input) => sameVerdict(module, target, input))

/** Valid values per target whose whole neighbourhood the parity test checks. */
export const NEIGHBOURHOOD_RUNS = 10

/** Every edit of `editsOf` at every node of a valid value: each bound probed wherever it applies. */
export const neighbourhood = (module: GeneratedModule, target: Target) =>
  fc.property(validValues(target), (value) => {
    for (const { path, value: node } of nodes(value)) {
      for (const edit of editsOf(node)) {
        const input = update(value, path, edit)
        if (input !== REMOVE) sameVerdict(module, target, input)
      }
    }
    return true
  })
