/**
 * The client decoder generator: compiles the Effect Schema ASTs of the contract (the envelope, every
 * event payload, the commands the client sends) into plain TypeScript with no Effect import, written
 * to src/client/generated/decoders.ts by `npm run docs`. The generated decoders give the same verdict
 * and the same decoded value as `Schema.decodeUnknownEither` (the parity property test checks both);
 * a failure names the path of the offending value.
 *
 * Supported: string, number, boolean and undefined keywords, literals, unions (of literals, of members
 * sharing one literal key, or of members without literal keys, tried as Effect tries them), arrays, structs, the built-in filters listed in
 * `BUILT_IN_FILTERS`, and filters, transformations and declarations that name a rule of
 * `src/protocol/Rules.ts`. Any other node fails generation with its path, so nothing is accepted
 * silently.
 */
import { Option, ParseResult, Schema, SchemaAST as AST } from "effect"
import { COMMANDS } from "../src/protocol/Commands.js"
import { Envelope, MAX_EVENT_BYTES, PROTOCOL_VERSION } from "../src/protocol/Envelope.js"
import { Manifest } from "../src/protocol/Manifest.js"
import { EventPosition } from "../src/protocol/Recovery.js"
import { RuleAnnotationId, type RuleAnnotation } from "../src/protocol/Rules.js"

export const GENERATED_DECODERS_PATH = "src/client/generated/decoders.ts"

export class GeneratorError extends Error {
  override readonly name = "GeneratorError"
}

type Mode = "tolerant" | "strict"

/** A built-in filter: the check (on `v`) its schema id stands for, from the filter's annotations. */
const BUILT_IN_FILTERS = new Map<symbol, (annotations: AST.Annotations) => { test: string; message: string }>(
  [
    [
      Schema.MinLengthSchemaId,
      (a) => {
        const n = jsonSchemaOf(a).minLength as number
        return {
          test: `(v as string).length >= ${n}`,
          message: `expected a string of at least ${n} characters`
        }
      }
    ],
    [
      Schema.MaxLengthSchemaId,
      (a) => {
        const n = jsonSchemaOf(a).maxLength as number
        return {
          test: `(v as string).length <= ${n}`,
          message: `expected a string of at most ${n} characters`
        }
      }
    ],
    [
      Schema.PatternSchemaId,
      (a) => {
        const { regex } = a[Schema.PatternSchemaId] as { readonly regex: RegExp }
        if (regex.global || regex.sticky) throw new GeneratorError(`pattern ${regex} has a stateful flag`)
        return { test: `${regex}.test(v as string)`, message: `expected a string matching ${regex.source}` }
      }
    ],
    [Schema.IntSchemaId, () => ({ test: "Number.isSafeInteger(v)", message: "expected an integer" })],
    [
      Schema.BetweenSchemaId,
      (a) => {
        const { minimum, maximum } = jsonSchemaOf(a) as { minimum: number; maximum: number }
        return {
          test: `(v as number) >= ${minimum} && (v as number) <= ${maximum}`,
          message: `expected a number between ${minimum} and ${maximum}`
        }
      }
    ],
    [
      Schema.MaxItemsSchemaId,
      (a) => {
        const n = jsonSchemaOf(a).maxItems as number
        return {
          test: `(v as ReadonlyArray<unknown>).length <= ${n}`,
          message: `expected at most ${n} items`
        }
      }
    ]
  ]
)

const KEYWORD_CHECKS: Partial<Record<AST.AST["_tag"], string>> = {
  StringKeyword: `if (typeof u !== "string") return fail("expected a string")`,
  NumberKeyword: `if (typeof u !== "number") return fail("expected a number")`,
  BooleanKeyword: `if (typeof u !== "boolean") return fail("expected a boolean")`
}

const jsonSchemaOf = (annotations: AST.Annotations): Record<string, unknown> =>
  (annotations[AST.JSONSchemaAnnotationId] ?? {}) as Record<string, unknown>

/** A filter's own message (`message: () => "..."`), as Effect reports it, when it is a constant string. */
const customMessageOf = (ast: AST.Annotated): string | undefined => {
  const message = AST.getMessageAnnotation(ast).pipe(Option.getOrUndefined)
  if (message === undefined || message.length > 0) return undefined
  const value = (message as () => unknown)()
  return typeof value === "string" ? value : undefined
}

const ruleOf = (ast: AST.Annotated): RuleAnnotation | undefined =>
  ast.annotations[RuleAnnotationId] as RuleAnnotation | undefined

const literalCode = (literal: AST.LiteralValue): string => {
  if (typeof literal === "bigint") throw new GeneratorError("bigint literals are not supported")
  return JSON.stringify(literal)
}

const ruleArgs = (rule: RuleAnnotation): string => rule.args.map((arg) => `, ${JSON.stringify(arg)}`).join("")

/** Compiles ASTs to decoder functions, one per (node, mode), shared by every schema that reuses a node. */
class Compiler {
  private readonly names = new Map<AST.AST, Map<Mode, string>>()
  /** Function sources, numbered in the order they are completed (children first), so output is stable. */
  private readonly sources: Array<string> = []
  private readonly byBody = new Map<string, string>()

  get functions(): string {
    return this.sources.join("\n\n")
  }

  decoder(ast: AST.AST, mode: Mode, path: string): string {
    let byMode = this.names.get(ast)
    if (byMode === undefined) {
      byMode = new Map()
      this.names.set(ast, byMode)
    }
    const known = byMode.get(mode)
    if (known !== undefined) return known
    // No recursive schemas (Suspend is unsupported), so a node's body is complete before it is named;
    // identical bodies (the same rule written twice, a `typeSchema` copy) share one function.
    const body = this.body(ast, mode, path)
    let name = this.byBody.get(body)
    if (name === undefined) {
      name = `d${this.sources.length}`
      this.byBody.set(body, name)
      this.sources.push(`function ${name}(u: unknown): unknown {\n${indent(body)}\n}`)
    }
    byMode.set(mode, name)
    return name
  }

  private body(ast: AST.AST, mode: Mode, path: string): string {
    switch (ast._tag) {
      case "StringKeyword":
      case "NumberKeyword":
      case "BooleanKeyword":
        return `${KEYWORD_CHECKS[ast._tag]}\nreturn u`
      case "UndefinedKeyword":
        return `if (u !== undefined) return fail("expected undefined")\nreturn u`
      case "Literal":
        return `if (u !== ${literalCode(ast.literal)}) return fail(${JSON.stringify(`expected ${literalCode(ast.literal)}`)})\nreturn u`
      case "Refinement":
        return this.refinement(ast, mode, path)
      case "TupleType":
        return this.array(ast, mode, path)
      case "TypeLiteral":
        return this.struct(ast, mode, path)
      case "Union":
        return this.union(ast, mode, path)
      case "Transformation":
        return this.transformation(ast, mode, path)
      case "Declaration": {
        const rule = ruleOf(ast)
        if (rule === undefined) throw new GeneratorError(`${path}: a declaration without a rule annotation`)
        return (
          `if (!DECLARATION_RULES.${rule.rule}(u${ruleArgs(rule)})) return fail(${JSON.stringify(`expected ${AST.getDescriptionAnnotation(ast).pipe(Option.getOrElse(() => rule.rule))}`)})\n` +
          `return u`
        )
      }
      default:
        throw new GeneratorError(`${path}: unsupported schema node ${ast._tag}`)
    }
  }

  /** A chain of refinements is one function: the base, then each check from the innermost out. */
  private refinement(ast: AST.Refinement, mode: Mode, path: string): string {
    const chain: Array<AST.Refinement> = []
    let base: AST.AST = ast
    while (AST.isRefinement(base)) {
      chain.unshift(base)
      base = base.from
    }
    const keyword = KEYWORD_CHECKS[base._tag]
    const lines =
      keyword === undefined
        ? [`const v = ${this.decoder(base, mode, path)}(u)`, "if (v === FAIL) return FAIL"]
        : [keyword, "const v = u"]
    for (const refinement of chain) {
      const rule = ruleOf(refinement)
      if (rule !== undefined) {
        lines.push(
          `{`,
          `  const r = FILTER_RULES.${rule.rule}(v as never${ruleArgs(rule)})`,
          `  if (r !== true) return fail(r)`,
          `}`
        )
        continue
      }
      const schemaId = AST.getSchemaIdAnnotation(refinement).pipe(Option.getOrUndefined)
      const builtIn = typeof schemaId === "symbol" ? BUILT_IN_FILTERS.get(schemaId) : undefined
      if (builtIn === undefined) {
        throw new GeneratorError(
          `${path}: a filter the generator cannot compile (${String(schemaId ?? "no schema id, no rule annotation")}); ` +
            "use a built-in filter or a rule of src/protocol/Rules.ts (ruleFilter)"
        )
      }
      const { test, message } = builtIn(refinement.annotations)
      lines.push(`if (!(${test})) return fail(${JSON.stringify(customMessageOf(refinement) ?? message)})`)
    }
    lines.push("return v")
    return lines.join("\n")
  }

  private array(ast: AST.TupleType, mode: Mode, path: string): string {
    if (ast.elements.length > 0 || ast.rest.length !== 1) {
      throw new GeneratorError(`${path}: only arrays (no tuple elements, one rest type) are supported`)
    }
    const item = this.decoder(ast.rest[0]!.type, mode, `${path}[]`)
    return [
      `if (!Array.isArray(u)) return fail("expected an array")`,
      `const out: Array<unknown> = []`,
      `for (let i = 0; i < u.length; i++) {`,
      `  const v = ${item}(u[i])`,
      `  if (v === FAIL) return at(i)`,
      `  out.push(v)`,
      `}`,
      `return out`
    ].join("\n")
  }

  private struct(ast: AST.TypeLiteral, mode: Mode, path: string): string {
    if (ast.indexSignatures.length > 0)
      throw new GeneratorError(`${path}: index signatures are not supported`)
    if (ast.propertySignatures.length === 0)
      throw new GeneratorError(`${path}: empty structs are not supported`)
    const lines = [
      `if (typeof u !== "object" || u === null || Array.isArray(u)) return fail("expected an object")`,
      `const o = u as Rec`
    ]
    if (mode === "strict") {
      const keys = ast.propertySignatures.map((ps) => {
        if (typeof ps.name !== "string") throw new GeneratorError(`${path}: symbol keys are not supported`)
        return JSON.stringify(ps.name)
      })
      lines.push(
        `for (const key of Reflect.ownKeys(o)) {`,
        `  if (${keys.map((key) => `key !== ${key}`).join(" && ")}) return (fail("is unexpected"), at(String(key)))`,
        `}`
      )
    }
    lines.push(`const out: Record<string, unknown> = {}`)
    for (const ps of ast.propertySignatures) {
      if (typeof ps.name !== "string" || ps.name === "__proto__") {
        throw new GeneratorError(`${path}: property ${String(ps.name)} is not supported`)
      }
      const key = JSON.stringify(ps.name)
      const decode = this.decoder(ps.type, mode, `${path}.${ps.name}`)
      const assign = [
        `const v = ${decode}(o[${key}])`,
        `if (v === FAIL) return at(${key})`,
        `out[${key}] = v`
      ]
      // Like Effect: an absent optional key stays absent; an absent required one is decoded as undefined.
      if (ps.isOptional)
        lines.push(`if (Object.hasOwn(o, ${key})) {`, ...assign.map((line) => `  ${line}`), `}`)
      else lines.push(`{`, ...assign.map((line) => `  ${line}`), `}`)
    }
    lines.push("return out")
    return lines.join("\n")
  }

  /**
   * Effect tries the members whose literal keys match the input first (by key, then by member order),
   * then the members without literal keys, and takes the first that decodes. The contract has three
   * kinds, compiled as such: literals, members told apart by one literal key (one lookup), members
   * without literal keys (tried in order). Any other union fails generation.
   */
  private union(ast: AST.Union, mode: Mode, path: string): string {
    const literals = ast.types.flatMap((type) => (AST.isLiteral(type) ? [literalCode(type.literal)] : []))
    if (literals.length === ast.types.length) {
      return (
        `if (${literals.map((literal) => `u !== ${literal}`).join(" && ")}) ` +
        `return fail(${JSON.stringify(`expected one of ${literals.join(", ")}`)})\nreturn u`
      )
    }
    const tree = getSearchTree(ast.types, true)
    const decoderOf = (member: AST.AST) => this.decoder(member, mode, `${path}|${ast.types.indexOf(member)}`)
    const list = (members: ReadonlyArray<AST.AST>) => `[${members.map(decoderOf).join(", ")}]`
    const keys = Reflect.ownKeys(tree.keys).map((key) => {
      if (typeof key !== "string") throw new GeneratorError(`${path}: symbol union keys are not supported`)
      return key
    })
    const lines: Array<string> = []
    if (keys.length === 1 && tree.otherwise.length === 0) {
      // One discriminating key, every member has it (MarkdownToken, override targets): one lookup.
      const key = keys[0]!
      const buckets = tree.keys[key]!.buckets
      lines.push(
        `if (typeof u !== "object" || u === null || !Object.hasOwn(u, ${JSON.stringify(key)})) return fail(${JSON.stringify(`expected an object with ${key}`)})`,
        `switch (String((u as Rec)[${JSON.stringify(key)}])) {`
      )
      for (const literal of Object.keys(buckets)) {
        const members = buckets[literal]!
        if (members.length !== 1) throw new GeneratorError(`${path}: two members share ${key} ${literal}`)
        lines.push(`  case ${JSON.stringify(literal)}:`, `    return ${decoderOf(members[0]!)}(u)`)
      }
      lines.push(
        `  default:`,
        `    return (fail(${JSON.stringify(`expected one of ${Object.keys(buckets).join(", ")}`)}), at(${JSON.stringify(key)}))`,
        `}`
      )
      return lines.join("\n")
    }
    if (keys.length === 0) return `return firstOf(${list(tree.otherwise)}, u)`
    // Several discriminating keys, or keyed members mixed with others: none in the contract today.
    throw new GeneratorError(`${path}: a union with several literal keys or mixed members is not supported`)
  }

  private transformation(ast: AST.Transformation, mode: Mode, path: string): string {
    const rule = ruleOf(ast)
    if (rule === undefined || !AST.isFinalTransformation(ast.transformation)) {
      throw new GeneratorError(
        `${path}: a transformation the generator cannot compile; use ruleTransform (src/protocol/Refinements.ts)`
      )
    }
    const from = this.decoder(ast.from, mode, `${path}<from>`)
    const to = this.decoder(ast.to, mode, `${path}<to>`)
    return [
      `const w = ${from}(u)`,
      `if (w === FAIL) return FAIL`,
      `return ${to}(TRANSFORM_RULES.${rule.rule}(w as never${ruleArgs(rule)}))`
    ].join("\n")
  }
}

interface SearchTree {
  readonly keys: {
    readonly [key: PropertyKey]: { readonly buckets: { readonly [literal: string]: ReadonlyArray<AST.AST> } }
  }
  readonly otherwise: ReadonlyArray<AST.AST>
}

/**
 * Effect's own candidate search for unions (exported by `effect/ParseResult`, untyped): using it
 * keeps the member order exactly Effect's. The parity test fails if its behaviour changes.
 */
const getSearchTree = (
  ParseResult as unknown as {
    readonly getSearchTree: (members: ReadonlyArray<AST.AST>, isDecoding: boolean) => SearchTree
  }
).getSearchTree

const indent = (text: string) =>
  text
    .split("\n")
    .map((line) => `  ${line}`)
    .join("\n")

/** The decoder functions of one schema (what generation emits for it); throws `GeneratorError`. */
export const compileDecoder = (schema: Schema.Schema.Any, mode: Mode): string => {
  const compiler = new Compiler()
  compiler.decoder(schema.ast, mode, "schema")
  return compiler.functions
}

/** The generated module's source. Deterministic: the staleness test compares it with the committed file. */
export const renderClientDecoders = (): string => {
  const compiler = new Compiler()
  const envelope = compiler.decoder(Envelope.ast, "tolerant", "envelope")
  const position = compiler.decoder(EventPosition.ast, "tolerant", "pos")
  const events = Manifest.events.map((event) => ({
    type: event.type,
    decoder: compiler.decoder(event.payload.ast, "tolerant", event.type)
  }))
  // The client's own commands are strict, as the server decodes them.
  const commands = COMMANDS.map((command) => ({
    type: command.type,
    decoder: compiler.decoder(command.payload.ast, "strict", command.type)
  }))

  const legacy = Manifest.events
    .filter((event) => event.lifecycle === "deprecated")
    .map((event) => `  [${JSON.stringify(event.type)}, ${JSON.stringify(event.migration?.replacedBy ?? [])}]`)

  return `/**
 * GENERATED by \`npm run docs\` (scripts/client-decoders.ts) from the schemas of src/protocol. Do not
 * edit: change the contract and regenerate. A test fails when this file is stale.
 *
 * Plain decoders for the envelope, its \`pos\`, every event payload and the client's commands, with the verdicts
 * and decoded values of the Effect schemas (proven by test/protocol/decoder-parity.test.ts).
 */
/* eslint-disable no-control-regex -- the contract's patterns reject control characters */
import type { CommandType, Command } from "../../protocol/Commands.js"
import type { GatewayEventType } from "../../protocol/Manifest.js"
import type { EventPosition } from "../../protocol/Recovery.js"
import { DECLARATION_RULES, FILTER_RULES, TRANSFORM_RULES } from "../../protocol/Rules.js"

export const PROTOCOL_VERSION = ${PROTOCOL_VERSION}
export const MAX_EVENT_BYTES = ${MAX_EVENT_BYTES}

/** Every event type, in catalog order. */
export const EVENT_TYPES: ReadonlyArray<GatewayEventType> = ${JSON.stringify(Manifest.events.map((event) => event.type))}

/** Each deprecated event and the events that replace it, in the manifest's order. */
export const REPLACED_BY: ReadonlyMap<string, ReadonlyArray<GatewayEventType>> = new Map([
${legacy.join(",\n")}
])

/** A decoded value, or the failure: the path of the offending value, then what was expected. */
export type Decoded<A> = { readonly ok: true; readonly value: A } | { readonly ok: false; readonly error: string }

type Rec = Readonly<Record<string, unknown>>
type Decoder = (u: unknown) => unknown

// A failure is a sentinel plus its message and path, recorded once (nothing is built on success).
const FAIL: unique symbol = Symbol("FAIL")
let failureMessage = ""
const failurePath: Array<string | number> = []

const fail = (message: string): typeof FAIL => {
  failureMessage = message
  failurePath.length = 0
  return FAIL
}

/** Adds a path segment (innermost first) to the failure being returned. */
const at = (segment: string | number): typeof FAIL => {
  failurePath.push(segment)
  return FAIL
}

const firstOf = (candidates: ReadonlyArray<Decoder>, u: unknown): unknown => {
  for (const candidate of candidates) {
    const v = candidate(u)
    if (v !== FAIL) return v
  }
  return fail(candidates.length === 0 ? "no member of the union applies" : "matches no member of the union")
}

const describeFailure = (): string => {
  let path = ""
  for (let i = failurePath.length - 1; i >= 0; i--) {
    const segment = failurePath[i]!
    path += typeof segment === "number" ? \`[\${segment}]\` : path === "" ? segment : \`.\${segment}\`
  }
  return path === "" ? failureMessage : \`\${path}: \${failureMessage}\`
}

const run = <A>(decoder: Decoder, input: unknown): Decoded<A> => {
  const value = decoder(input)
  return value === FAIL ? { ok: false, error: describeFailure() } : { ok: true, value: value as A }
}

${compiler.functions}

export interface EnvelopeValue {
  readonly v: typeof PROTOCOL_VERSION
  readonly t: string
  readonly d: { readonly [key: string]: unknown }
}

/** The \`{v,t,d}\` envelope, tolerant of unknown top-level keys (the client's mode). */
export const decodeEnvelope = (input: unknown): Decoded<EnvelopeValue> => run(${envelope}, input)

/** The top-level \`pos\` of a recoverable event on a connection that opted in to recovery. */
export const decodePosition = (input: unknown): Decoded<EventPosition> => run(${position}, input)

/** The payload decoder of each event type (tolerant: additive keys are ignored and stripped). */
export const EVENT_PAYLOAD_DECODERS: ReadonlyMap<string, (input: unknown) => Decoded<unknown>> = new Map([
${events.map(({ type, decoder }) => `  [${JSON.stringify(type)}, (input: unknown) => run(${decoder}, input)]`).join(",\n")}
])

type CommandPayload<T extends CommandType> = Omit<Extract<Command, { readonly _tag: T }>, "_tag">

/** The payload decoder of each command (strict: unknown keys are rejected, ids canonicalized). */
export const COMMAND_PAYLOAD_DECODERS: { readonly [T in CommandType]: (input: unknown) => Decoded<CommandPayload<T>> } = {
${commands.map(({ type, decoder }) => `  ${type}: (input) => run(${decoder}, input)`).join(",\n")}
}
`
}
