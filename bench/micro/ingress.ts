/**
 * Ingress decode rate: `decodeCommand` (the whole synchronous frame -> command path: size check,
 * JSON parse, strict envelope, strict payload, canonical ids) per second on one core, for valid and
 * for rejected frames. Each case checks its outcome first, so a decoder that stopped rejecting (or
 * accepting) fails the bench instead of reporting a fast wrong number.
 *
 * usage: node --import tsx bench/micro/ingress.ts [--seconds 1] [--out file.json]
 */
import { writeFileSync } from "node:fs"
import { Either } from "effect"
import { decodeCommand, type CommandRejectionReason } from "../../src/protocol/Commands.js"
import { HOT_CHANNEL, HOT_GUILD, benchUlid } from "../Workload.js"

const envelope = (t: string, d: unknown) => JSON.stringify({ v: 1, t, d })
const target = { guild_id: HOT_GUILD, channel_id: HOT_CHANNEL }
const lowercaseTarget = { guild_id: HOT_GUILD.toLowerCase(), channel_id: HOT_CHANNEL.toLowerCase() }

interface Case {
  readonly name: string
  readonly frame: string
  /** `null`: must decode; otherwise the rejection reason it must produce. */
  readonly rejection: CommandRejectionReason | null
}

const CASES: ReadonlyArray<Case> = [
  { name: "subscribe", frame: envelope("subscribe", target), rejection: null },
  { name: "subscribe (lowercase ids)", frame: envelope("subscribe", lowercaseTarget), rejection: null },
  { name: "unsubscribe", frame: envelope("unsubscribe", target), rejection: null },
  {
    name: "message_create (120 B content, 2 attachments)",
    frame: envelope("message_create", {
      ...target,
      content: "x".repeat(120),
      attachment_ids: [benchUlid("message", 1), benchUlid("message", 2)]
    }),
    rejection: null
  },
  { name: "not JSON", frame: "not-json", rejection: "invalid_envelope" },
  {
    name: "unknown envelope key",
    frame: JSON.stringify({ v: 1, t: "subscribe", d: target, x: 1 }),
    rejection: "invalid_envelope"
  },
  {
    name: "subscribe, guild_id not a ULID",
    frame: envelope("subscribe", { ...target, guild_id: "not-a-ulid" }),
    rejection: "invalid_subscribe_payload"
  },
  {
    name: "subscribe, unknown payload key",
    frame: envelope("subscribe", { ...target, extra: true }),
    rejection: "invalid_subscribe_payload"
  },
  {
    name: "message_create, content over 2000 B",
    frame: envelope("message_create", { ...target, content: "y".repeat(2001) }),
    rejection: "invalid_message_create_payload"
  },
  { name: "unknown command", frame: envelope("unknown_ingress_event", {}), rejection: "unknown_event" }
]

const check = (c: Case) => {
  const decoded = decodeCommand(c.frame)
  const outcome = Either.isRight(decoded) ? null : decoded.left.reason
  if (outcome !== c.rejection) {
    throw new Error(`case "${c.name}": expected ${c.rejection ?? "a command"}, got ${outcome ?? "a command"}`)
  }
}

/** Decodes `frame` in batches until `seconds` have passed (bounded also by a count). */
const measure = (frame: string, seconds: number) => {
  const batch = 1000
  const maxOps = 50_000_000
  let ops = 0
  let sink = 0
  const start = process.hrtime.bigint()
  const budgetNs = BigInt(Math.round(seconds * 1e9))
  let elapsed = 0n
  while (elapsed < budgetNs && ops < maxOps) {
    for (let i = 0; i < batch; i++) if (Either.isRight(decodeCommand(frame))) sink++
    ops += batch
    elapsed = process.hrtime.bigint() - start
  }
  const ns = Number(elapsed)
  return { ops, nsPerOp: ns / ops, perSec: ops / (ns / 1e9), accepted: sink }
}

const runIngress = (seconds: number) => {
  for (const c of CASES) check(c)
  // Warm every path first so the first measured case does not pay the JIT for all of them.
  for (const c of CASES) measure(c.frame, Math.min(0.05, seconds / 4))
  const cases = CASES.map((c) => {
    const m = measure(c.frame, seconds)
    return {
      name: c.name,
      valid: c.rejection === null,
      rejection: c.rejection,
      bytes: c.frame.length,
      perSec: m.perSec,
      nsPerOp: m.nsPerOp,
      ops: m.ops
    }
  })
  // Mixed rate of a class = total frames / total time over its cases (each case weighted equally).
  const mix = (valid: boolean) => {
    const of = cases.filter((c) => c.valid === valid)
    const nsPerOp = of.reduce((sum, c) => sum + c.nsPerOp, 0) / of.length
    return { nsPerOp, perSec: 1e9 / nsPerOp }
  }
  return { seconds, cases, valid: mix(true), rejected: mix(false) }
}

const argValue = (name: string): string | undefined => {
  const at = process.argv.indexOf(`--${name}`)
  return at < 0 ? undefined : process.argv[at + 1]
}

const result = runIngress(Number(argValue("seconds") ?? 1))
const out = argValue("out")
if (out !== undefined) writeFileSync(out, JSON.stringify(result, null, 2))
for (const c of result.cases) {
  process.stdout.write(
    `${c.name.padEnd(48)} ${Math.round(c.perSec).toLocaleString("en-US").padStart(11)}/s ${c.nsPerOp.toFixed(0).padStart(7)} ns\n`
  )
}
process.stdout.write(
  `valid mix ${Math.round(result.valid.perSec)}/s, rejected mix ${Math.round(result.rejected.perSec)}/s per core\n`
)
