/**
 * PayloadEncoder: the strict encode of an outbound payload, compiled once per event from its schema.
 * Effect's generic encoder walks the schema twice per value (a refinement is decoded on its type side,
 * then encoded on its wire side; a transformation validates both sides) and checks every key against
 * a union of literals: about 40 µs and over 40 KB of garbage for one `message_create`, once per
 * broadcast. The compiled check accepts exactly what that encoder accepts, builds the same wire
 * value (same keys, schema order) and allocates only that value.
 *
 * It never rejects on its own: a value it does not accept, and every schema (or part) it does not
 * understand, goes through Effect's strict encoder, so failures and their messages are Effect's.
 */
import { Either, Option, type ParseResult, SchemaAST as AST } from "effect"
import { encodePayload, type EventDefinition } from "../../protocol/EventDefinition.js"

/** The options of `encodePayload`, handed to refinements and transformations as Effect would. */
const OPTIONS: AST.ParseOptions = { onExcessProperty: "error", errors: "first" }

/** "Not accepted here": the caller falls back to Effect's encoder. */
const REFER = Symbol("PayloadEncoder.refer")
type Encode = (input: unknown) => unknown

const isRecord = (input: unknown): input is Record<PropertyKey, unknown> =>
  typeof input === "object" && input !== null && !Array.isArray(input)

/** Compiles `ast`, or returns undefined when it contains a node kind this module leaves to Effect. */
const compile = (ast: AST.AST): Encode | undefined => {
  switch (ast._tag) {
    case "Literal": {
      const literal = ast.literal
      return (input) => (input === literal ? input : REFER)
    }
    case "StringKeyword":
      return (input) => (typeof input === "string" ? input : REFER)
    case "NumberKeyword":
      return (input) => (typeof input === "number" ? input : REFER)
    case "BooleanKeyword":
      return (input) => (typeof input === "boolean" ? input : REFER)
    case "UndefinedKeyword":
      return (input) => (input === undefined ? input : REFER)
    case "Refinement": {
      // Effect encodes a refinement as: decode its type side (from, then the predicate), encode `from`.
      // Without transformations below, both are the same check of `from` plus the predicate.
      const from = compile(ast.from)
      if (from === undefined) return undefined
      const refinement = ast
      return (input) => {
        const value = from(input)
        if (value === REFER) return REFER
        return Option.isNone(refinement.filter(value, OPTIONS, refinement)) ? value : REFER
      }
    }
    case "TupleType": {
      // Only `Schema.Array(item)`: no fixed elements, one rest element.
      if (ast.elements.length !== 0 || ast.rest.length !== 1) return undefined
      const item = compile(ast.rest[0]!.type)
      if (item === undefined) return undefined
      return (input) => {
        if (!Array.isArray(input)) return REFER
        const output = new Array<unknown>(input.length)
        for (let i = 0; i < input.length; i++) {
          const value = item(input[i])
          if (value === REFER) return REFER
          output[i] = value
        }
        return output
      }
    }
    case "TypeLiteral": {
      if (ast.indexSignatures.length !== 0) return undefined
      const names: Array<PropertyKey> = []
      const optional: Array<boolean> = []
      const types: Array<Encode> = []
      for (const property of ast.propertySignatures) {
        const type = compile(property.type)
        if (type === undefined) return undefined
        names.push(property.name)
        optional.push(property.isOptional)
        types.push(type)
      }
      const expected = new Set(names)
      // Required literal properties (a union's discriminant) first: rejecting a union member costs a read.
      const discriminants = ast.propertySignatures.flatMap((property) =>
        !property.isOptional && AST.isLiteral(property.type)
          ? [[property.name, property.type.literal] as const]
          : []
      )
      return (input) => {
        if (!isRecord(input)) return REFER
        for (const [name, literal] of discriminants) if (input[name] !== literal) return REFER
        // Strict: a key the schema does not name (symbols included) is an error.
        for (const key of Reflect.ownKeys(input)) if (!expected.has(key)) return REFER
        const output: Record<PropertyKey, unknown> = {}
        for (let i = 0; i < names.length; i++) {
          const name = names[i]!
          if (!Object.prototype.hasOwnProperty.call(input, name)) {
            if (optional[i]) continue
            return REFER
          }
          const value = types[i]!(input[name])
          if (value === REFER) return REFER
          output[name] = value
        }
        return output
      }
    }
    case "Union": {
      const members: Array<Encode> = []
      for (const type of ast.types) {
        const member = compile(type)
        if (member === undefined) return undefined
        members.push(member)
      }
      // Effect tries the members in its own candidate order; exactly one accepting member makes that
      // order irrelevant. Two or more: Effect decides.
      return (input) => {
        let accepted: unknown = REFER
        for (const member of members) {
          const value = member(input)
          if (value === REFER) continue
          if (accepted !== REFER) return REFER
          accepted = value
        }
        return accepted
      }
    }
    case "Transformation": {
      // Only `Schema.transform` (a final transformation whose encode is synchronous): encode the type
      // side, transform, encode the wire side — Effect's order.
      if (ast.transformation._tag !== "FinalTransformation") return undefined
      const to = compile(ast.to)
      const from = compile(ast.from)
      if (to === undefined || from === undefined) return undefined
      const transformation = ast.transformation
      const self = ast
      return (input) => {
        const typed = to(input)
        if (typed === REFER) return REFER
        const transformed = transformation.encode(typed, OPTIONS, self, input)
        if (!Either.isEither(transformed) || Either.isLeft(transformed)) return REFER
        return from(transformed.right)
      }
    }
    default:
      return undefined
  }
}

const compiled = new WeakMap<EventDefinition, Encode | null>()

/**
 * `encodePayload(event, payload)` (strict: unknown keys are errors), through the compiled check when
 * it accepts the payload. Synchronous, never throws.
 */
export const encodeStrict = <A, I>(
  event: EventDefinition<string, A, I>,
  payload: A
): Either.Either<I, ParseResult.ParseError> => {
  let encode = compiled.get(event)
  if (encode === undefined) {
    encode = compile(event.payload.ast) ?? null
    compiled.set(event, encode)
  }
  if (encode !== null) {
    const wire = encode(payload)
    if (wire !== REFER) return Either.right(wire as I)
  }
  return encodePayload(event, payload)
}
