/**
 * The `{v,t,d}` envelope shared by both directions.
 *
 * Ingress decoding is strict (exactly the keys `v`, `t`, `d`); client decoding tolerates unknown
 * top-level keys, as the original web client does. Both check the UTF-8 byte size before parsing.
 */
import { Array as Arr, Either, Option, ParseResult, Schema, SchemaAST as AST } from "effect"
import { declarationRule } from "./Refinements.js"
import { DECLARATION_RULES, utf8ByteLength } from "./Rules.js"

export { utf8ByteLength }

export const PROTOCOL_VERSION = 1 as const

/** Hard protocol cap on a frame, both directions (UTF-8 bytes). */
export const MAX_EVENT_BYTES = 65_536

/**
 * Deepest nesting of arrays and objects a frame or a publish body may have. The deepest valid command
 * nests 4 levels (envelope, `d`, `since`, `since.channel`) and no event payload more than 4, so the bound
 * refuses nothing valid; it is checked before parsing, so every later step (parse, schema decoding,
 * the rejection message, which renders the offending value) does bounded work. Not a config key:
 * raising it admits only input that is refused anyway.
 */
export const MAX_JSON_DEPTH = 32

export const EVENT_TYPE_PATTERN = /^[a-z0-9_.]{1,64}$/

export const EventType = Schema.String.pipe(
  Schema.pattern(EVENT_TYPE_PATTERN, { message: () => "event type must match ^[a-z0-9_.]{1,64}$" })
)

/**
 * `d` must be a JSON object (not an array, not null). Passed through as parsed, not copied: a copy
 * made by assignment would turn an own `"__proto__"` key into the object's prototype, hiding it from
 * the payload decoder's unknown-key check (and exposing inherited values).
 */
export const EnvelopeData = Schema.declare(DECLARATION_RULES.isJsonObject, {
  ...declarationRule("isJsonObject"),
  identifier: "EnvelopeData",
  description: "a JSON object",
  jsonSchema: { type: "object" }
})

export const Envelope = Schema.Struct({
  v: Schema.Literal(PROTOCOL_VERSION),
  t: EventType,
  d: EnvelopeData
})
export type Envelope = typeof Envelope.Type

export type EnvelopeRejection =
  | { readonly reason: "oversized"; readonly bytes: number }
  | { readonly reason: "invalid_json" }
  | { readonly reason: "invalid_envelope"; readonly detail: string }

/**
 * Whether a JSON text nests arrays and objects deeper than `max` levels. One pass, no allocation,
 * stops at the first level too deep; brackets inside strings do not count. On text that is not JSON
 * the answer is meaningless, but such text is refused either way.
 */
export const nestsDeeperThan = (text: string, max: number): boolean => {
  let depth = 0
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i)
    if (unit === 0x22) {
      for (i++; i < text.length && text.charCodeAt(i) !== 0x22; i++) if (text.charCodeAt(i) === 0x5c) i++
    } else if (unit === 0x7b || unit === 0x5b) {
      if (++depth > max) return true
    } else if (unit === 0x7d || unit === 0x5d) depth--
  }
  return false
}

/** One schema rejection as a client sees it: where (`d.guild_id`, `users[3]`) and what. */
export interface SchemaIssue {
  readonly path: string
  readonly message: string
}

/** Bounds of a rendered rejection (HTTP 400 bodies, ingress rejection details). */
export const MAX_SCHEMA_ISSUES = 3
export const MAX_ISSUE_PATH_CHARS = 100
export const MAX_ISSUE_MESSAGE_CHARS = 200

const truncate = (text: string, max: number) => (text.length > max ? `${text.slice(0, max - 1)}…` : text)
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/

const renderPath = (prefix: ReadonlyArray<PropertyKey>, path: ReadonlyArray<PropertyKey>): string => {
  let rendered = ""
  for (const key of [...prefix, ...path]) {
    if (rendered.length > MAX_ISSUE_PATH_CHARS) break
    if (typeof key === "number") rendered += `[${key}]`
    else {
      // Keys come from the input (an unexpected key can be any string): bounded, quoted when odd.
      const name = truncate(String(key), 64)
      rendered += IDENTIFIER.test(name) ? (rendered === "" ? name : `.${name}`) : `[${JSON.stringify(name)}]`
    }
  }
  return truncate(rendered, MAX_ISSUE_PATH_CHARS)
}

/** An offending value in a few words, never by walking it. */
const summarize = (value: unknown): string =>
  typeof value === "string"
    ? JSON.stringify(truncate(value, 40))
    : Array.isArray(value)
      ? `an array of ${value.length} item${value.length === 1 ? "" : "s"}`
      : typeof value === "object" && value !== null
        ? "an object"
        : String(value)

/**
 * What a `Type` issue expected, in a few words: keywords and literals as Effect prints them, arrays
 * and objects by kind, refinements and declarations by their annotation. `String(ast)` would spell
 * out the whole schema (patterns, transformations, brands).
 */
const expected = (ast: AST.AST): string => {
  switch (ast._tag) {
    case "TupleType":
      return "an array"
    case "TypeLiteral":
      return "an object"
    case "Union":
      return ast.types.map(expected).join(" | ")
    case "Transformation":
      return expected(ast.from)
    case "Refinement":
    case "Declaration":
      return AST.getDescriptionAnnotation(ast).pipe(
        Option.orElse(() => AST.getTitleAnnotation(ast)),
        Option.getOrElse(() => (ast._tag === "Refinement" ? expected(ast.from) : "a valid value"))
      )
    default:
      return truncate(String(ast), 40)
  }
}

/**
 * The issue tree with every `Type` issue given its message: what was expected in a few words and the
 * value as a summary. Effect's default renders the value whole and recursively (a 32 000-element array
 * costs milliseconds, deep nesting overflows the stack) and the schema in full; this walk follows the
 * schema's shape, not the value's. Messages a schema declares still take precedence.
 */
const isMany = (
  issues: ParseResult.SingleOrNonEmpty<ParseResult.ParseIssue>
): issues is Arr.NonEmptyReadonlyArray<ParseResult.ParseIssue> => Array.isArray(issues)

const summarized = (issue: ParseResult.ParseIssue): ParseResult.ParseIssue => {
  switch (issue._tag) {
    case "Type":
      return new ParseResult.Type(
        issue.ast,
        issue.actual,
        issue.message ?? `Expected ${expected(issue.ast)}, actual ${summarize(issue.actual)}`
      )
    case "Pointer":
      return new ParseResult.Pointer(issue.path, issue.actual, summarized(issue.issue))
    case "Refinement":
      return new ParseResult.Refinement(issue.ast, issue.actual, issue.kind, summarized(issue.issue))
    case "Transformation":
      return new ParseResult.Transformation(issue.ast, issue.actual, issue.kind, summarized(issue.issue))
    case "Composite":
      return new ParseResult.Composite(
        issue.ast,
        issue.actual,
        isMany(issue.issues) ? Arr.map(issue.issues, summarized) : summarized(issue.issues),
        issue.output
      )
    default:
      return issue
  }
}

/**
 * A schema rejection as at most `MAX_SCHEMA_ISSUES` issues, each a path (under `prefix`) and the
 * message, both cut to their bound: never the schema's internals (brands, transformations), and the
 * offending value only as a summary (`"abc"`, `an array of 3 items`, `an object`).
 */
export const schemaIssues = (
  error: ParseResult.ParseError,
  prefix: ReadonlyArray<PropertyKey> = []
): ReadonlyArray<SchemaIssue> =>
  ParseResult.ArrayFormatter.formatIssueSync(summarized(error.issue))
    .slice(0, MAX_SCHEMA_ISSUES)
    .map((issue) => ({
      path: renderPath(prefix, issue.path),
      message: truncate(issue.message, MAX_ISSUE_MESSAGE_CHARS)
    }))

/** The issues as one line: `d.guild_id: Expected string, actual 5; …`. */
export const formatSchemaIssues = (issues: ReadonlyArray<SchemaIssue>): string =>
  issues.map((issue) => (issue.path === "" ? issue.message : `${issue.path}: ${issue.message}`)).join("; ")

const isJsonWhitespace = (unit: number) => unit === 0x20 || unit === 0x0a || unit === 0x0d || unit === 0x09

/**
 * Whether a JSON text (one that `JSON.parse` accepted) has an object with a repeated key, which
 * `JSON.parse` would silently resolve to the last value. Strict ingress refuses such frames, as the
 * original server's decoder does: `{"guild_id":A,"guild_id":B}` must not mean B to us and A to a proxy.
 */
export const hasDuplicateKeys = (text: string): boolean => {
  // One entry per open container: the keys seen so far for an object, `undefined` for an array.
  const open: Array<Set<string> | undefined> = []
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i)
    if (unit === 0x7b) open.push(new Set())
    else if (unit === 0x5b) open.push(undefined)
    else if (unit === 0x7d || unit === 0x5d) open.pop()
    else if (unit === 0x22) {
      const start = i
      for (i++; i < text.length && text.charCodeAt(i) !== 0x22; i++) if (text.charCodeAt(i) === 0x5c) i++
      let next = i + 1
      while (isJsonWhitespace(text.charCodeAt(next))) next++
      const keys = open[open.length - 1]
      // In valid JSON a string followed by `:` is an object key; values are followed by `,` `}` `]`.
      if (keys !== undefined && text.charCodeAt(next) === 0x3a) {
        const raw = text.slice(start, i + 1)
        const key = raw.includes("\\") ? (JSON.parse(raw) as string) : raw.slice(1, -1)
        if (keys.has(key)) return true
        keys.add(key)
      }
    }
  }
  return false
}

const decodeStrict = Schema.decodeUnknownEither(Envelope, { onExcessProperty: "error" })
const decodeTolerant = Schema.decodeUnknownEither(Envelope, { onExcessProperty: "ignore" })

/**
 * Parses a text frame into an envelope. `strict` (ingress) rejects nesting deeper than
 * `MAX_JSON_DEPTH` (before parsing), unknown top-level keys and duplicate keys anywhere; otherwise
 * (client) unknown keys are ignored. Never throws.
 */
export const parseEnvelope = (
  text: string,
  options: { readonly strict: boolean; readonly maxBytes?: number }
): Either.Either<Envelope, EnvelopeRejection> => {
  const maxBytes = options.maxBytes ?? MAX_EVENT_BYTES
  // Checked before parsing: a UTF-16 unit is 1..3 UTF-8 bytes, so short frames skip the count.
  if (text.length > maxBytes || (text.length * 3 > maxBytes && utf8ByteLength(text) > maxBytes)) {
    return Either.left({ reason: "oversized", bytes: utf8ByteLength(text) })
  }
  if (options.strict && nestsDeeperThan(text, MAX_JSON_DEPTH)) {
    return Either.left({
      reason: "invalid_envelope",
      detail: `frame nests deeper than ${MAX_JSON_DEPTH} levels`
    })
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    return Either.left({ reason: "invalid_json" })
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    return Either.left({ reason: "invalid_envelope", detail: "frame is not a JSON object" })
  }
  if (options.strict && hasDuplicateKeys(text)) {
    return Either.left({ reason: "invalid_envelope", detail: "frame has a duplicate object key" })
  }
  const decoded = (options.strict ? decodeStrict : decodeTolerant)(json)
  return Either.mapLeft(decoded, (error) => ({
    reason: "invalid_envelope" as const,
    detail: formatSchemaIssues(schemaIssues(error))
  }))
}
