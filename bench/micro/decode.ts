/**
 * Client decode speed: ns per frame for a mix of real event frames (every valid payload recorded
 * from the original web client's tests, test/fixtures/filament-client-vectors.json, all 36 events),
 * decoded by the generated decoders (`decodeFrame` of the callback client) and by Effect Schema (the
 * envelope and payload schemas, `parseEnvelope` + `decodeEvent`), in the same run, alternating (the median of five rounds each).
 * Measured for the whole frame (size check, JSON.parse, envelope, payload) and for the payload alone
 * (parsed `d` to decoded payload). Both decoders must give the same events before anything is timed.
 *
 * usage: node --import tsx bench/micro/decode.ts [--seconds 1] [--out file.json]
 */
import { Either } from "effect"
import { isDeepStrictEqual } from "node:util"
import { readFileSync, writeFileSync } from "node:fs"
import { decodeFrame } from "../../src/client/Decode.js"
import { EVENT_PAYLOAD_DECODERS } from "../../src/client/generated/decoders.js"
import { parseEnvelope } from "../../src/protocol/Envelope.js"
import { decodePayload, type EventDefinition } from "../../src/protocol/EventDefinition.js"
import { decodeEvent, Manifest } from "../../src/protocol/Manifest.js"

const tolerant = { strict: false } as const

const generatedFrame = (text: string): unknown => {
  const result = decodeFrame(text)
  return result._tag === "Right" ? result.right : undefined
}

const effectFrame = (text: string): unknown => {
  const envelope = parseEnvelope(text, tolerant)
  if (Either.isLeft(envelope)) return undefined
  const event = decodeEvent(envelope.right.t, envelope.right.d, tolerant)
  return Either.isRight(event) ? event.right : undefined
}

interface Payload {
  readonly type: string
  readonly d: unknown
}

const generatedPayload = ({ type, d }: Payload): unknown => {
  const result = EVENT_PAYLOAD_DECODERS.get(type)!(d)
  return result.ok ? result.value : undefined
}

const effectPayload = ({ type, d }: Payload): unknown => {
  const result = decodePayload(Manifest.lookup(type) as EventDefinition, d, tolerant)
  return Either.isRight(result) ? result.right : undefined
}

const vectors = JSON.parse(
  readFileSync(new URL("../../test/fixtures/filament-client-vectors.json", import.meta.url), "utf8")
) as { readonly valid: Record<string, ReadonlyArray<unknown>> }

/** The valid vectors both decoders accept (one is a deliberate disagreement with the web client). */
const payloads: ReadonlyArray<Payload> = Object.entries(vectors.valid)
  .flatMap(([type, list]) => list.map((d) => ({ type, d })))
  .filter((payload) => effectPayload(payload) !== undefined)
const frames = payloads.map(({ type, d }) => JSON.stringify({ v: 1, t: type, d }))

const MIXES = [
  { name: "all 36 events (every valid vector)", select: () => true },
  { name: "message_create only", select: (payload: Payload) => payload.type === "message_create" }
] as const

/** Same outcome from both decoders on every input, or the bench fails instead of timing a wrong decoder. */
const check = <I>(inputs: ReadonlyArray<I>, a: (input: I) => unknown, b: (input: I) => unknown) => {
  for (const input of inputs) {
    const [x, y] = [a(input), b(input)]
    if (x === undefined || !isDeepStrictEqual(x, y)) {
      throw new Error(`decoders disagree on ${JSON.stringify(input).slice(0, 200)}`)
    }
  }
}

/** ns per input: the whole list decoded in rounds until `seconds` have passed. */
const measure = <I>(inputs: ReadonlyArray<I>, decode: (input: I) => unknown, seconds: number): number => {
  let decoded = 0
  let sink = 0
  const start = process.hrtime.bigint()
  const budgetNs = BigInt(Math.round(seconds * 1e9))
  let elapsed = 0n
  while (elapsed < budgetNs && decoded < 50_000_000) {
    for (const input of inputs) if (decode(input) !== undefined) sink++
    decoded += inputs.length
    elapsed = process.hrtime.bigint() - start
  }
  if (sink !== decoded) throw new Error("a frame stopped decoding while measured")
  return Number(elapsed) / decoded
}

const ROUNDS = 5

/**
 * Generated and Effect measured alternately, `ROUNDS` times each, so load on the machine hits both
 * alike; the median round of each.
 */
const compare = <I>(
  inputs: ReadonlyArray<I>,
  generated: (input: I) => unknown,
  effect: (input: I) => unknown,
  seconds: number
) => {
  check(inputs, generated, effect)
  measure(inputs, generated, Math.min(0.05, seconds / 4))
  measure(inputs, effect, Math.min(0.05, seconds / 4))
  const rounds = { generated: [] as Array<number>, effect: [] as Array<number> }
  for (let round = 0; round < ROUNDS; round++) {
    rounds.generated.push(measure(inputs, generated, seconds / ROUNDS))
    rounds.effect.push(measure(inputs, effect, seconds / ROUNDS))
  }
  const median = (values: Array<number>) => values.sort((x, y) => x - y)[Math.floor(values.length / 2)]!
  const generatedNs = median(rounds.generated)
  const effectNs = median(rounds.effect)
  return { generatedNs, effectNs, speedup: effectNs / generatedNs }
}

const runDecode = (seconds: number) => ({
  seconds,
  mixes: MIXES.map((mix) => {
    const selected = payloads.flatMap((payload, index) => (mix.select(payload) ? [index] : []))
    const mixFrames = selected.map((index) => frames[index]!)
    return {
      name: mix.name,
      frames: mixFrames.length,
      meanBytes: Math.round(mixFrames.reduce((sum, frame) => sum + frame.length, 0) / mixFrames.length),
      frame: compare(mixFrames, generatedFrame, effectFrame, seconds),
      payload: compare(
        selected.map((index) => payloads[index]!),
        generatedPayload,
        effectPayload,
        seconds
      )
    }
  })
})

const argValue = (name: string): string | undefined => {
  const at = process.argv.indexOf(`--${name}`)
  return at < 0 ? undefined : process.argv[at + 1]
}

const result = runDecode(Number(argValue("seconds") ?? 1))
const out = argValue("out")
if (out !== undefined) writeFileSync(out, JSON.stringify(result, null, 2))
for (const mix of result.mixes) {
  for (const [what, m] of [
    ["frame", mix.frame],
    ["payload", mix.payload]
  ] as const) {
    process.stdout.write(
      `${`${mix.name}, ${what}`.padEnd(48)} generated ${m.generatedNs.toFixed(0).padStart(6)} ns, ` +
        `Effect Schema ${m.effectNs.toFixed(0).padStart(6)} ns, ×${m.speedup.toFixed(1)}\n`
    )
  }
}
