/**
 * Schema constructors for the rules of `Rules.ts`: each runs its rule and names it (with its
 * arguments) in a `RuleAnnotationId` annotation, so the client decoder generator can compile the
 * schema to plain code. A filter or transformation written without these has no name the generator
 * knows, and generation fails.
 */
import { Schema } from "effect"
import {
  FILTER_RULES,
  RuleAnnotationId,
  TRANSFORM_RULES,
  type DeclarationRuleName,
  type FilterRuleName,
  type RuleAnnotation,
  type RuleArgs,
  type TransformRuleName
} from "./Rules.js"

type AnyRule = (value: unknown, ...args: ReadonlyArray<unknown>) => unknown

const annotation = (rule: string, args: ReadonlyArray<unknown>): RuleAnnotation => ({ rule, args })

/** A filter running `FILTER_RULES[rule]`; `annotations` are the usual filter annotations (JSON Schema…). */
export const ruleFilter =
  <K extends FilterRuleName>(
    rule: K,
    args: RuleArgs<(typeof FILTER_RULES)[K]>,
    annotations?: { readonly identifier?: string; readonly jsonSchema?: object }
  ) =>
  <A, I, R>(self: Schema.Schema<A, I, R>): Schema.filter<Schema.Schema<A, I, R>> => {
    const check = FILTER_RULES[rule] as AnyRule
    return self.pipe(
      Schema.filter((value: A) => check(value, ...args) as true | string, {
        ...annotations,
        [RuleAnnotationId]: annotation(rule, args)
      })
    )
  }

/** A transformation whose decode is `TRANSFORM_RULES[rule]` and whose encode is the identity. */
export const ruleTransform = <
  From extends Schema.Schema.Any,
  To extends Schema.Schema.Any,
  K extends TransformRuleName
>(
  from: From,
  to: To,
  rule: K,
  args: RuleArgs<(typeof TRANSFORM_RULES)[K]>
) => {
  const decode = TRANSFORM_RULES[rule] as AnyRule
  return Schema.transform(from, to, {
    strict: false,
    decode: (value) => decode(value, ...args),
    encode: (value) => value
  }).annotations({ [RuleAnnotationId]: annotation(rule, args) })
}

/** The annotation that lets a `Schema.declare` be generated: its predicate is `DECLARATION_RULES[rule]`. */
export const declarationRule = (rule: DeclarationRuleName) => ({
  [RuleAnnotationId]: annotation(rule, [])
})
