/**
 * How one configuration key's text becomes a checked value (`Config.ts`): a number within its rule,
 * seconds as a `Duration`, a secret of at least 32 characters. A value that does not parse or is
 * refused fails with one message naming the key, the rule and the value given.
 */
import { Config, ConfigError, Duration, Either, Option, Redacted } from "effect"

/**
 * `key` as a number: a value that does not parse, or that `accept` refuses, fails with one message
 * naming the key, the rule and the value given (`Config.validate` would lose the key's path).
 */
export const numeric = (
  key: string,
  fallback: number,
  rule: string,
  accept: (value: number) => boolean,
  parse: (text: string) => number
) =>
  Config.string(key).pipe(
    Config.option,
    Config.mapOrFail((text) => {
      if (Option.isNone(text)) return Either.right(fallback)
      const value = parse(text.value.trim())
      return accept(value)
        ? Either.right(value)
        : Either.left(ConfigError.InvalidData([key], `${key} must be ${rule} (got "${text.value}")`))
    })
  )

/** Decimal digits only: `Number.parseInt` would take "12abc" as 12. */
export const parseInteger = (text: string) => (/^-?[0-9]+$/.test(text) ? Number(text) : Number.NaN)
export const parseDecimal = (text: string) => (text === "" ? Number.NaN : Number(text))

export const positiveInt = (key: string, fallback: number, max = Number.MAX_SAFE_INTEGER) =>
  numeric(
    key,
    fallback,
    max === Number.MAX_SAFE_INTEGER ? "a positive integer" : `an integer between 1 and ${max}`,
    (value) => Number.isSafeInteger(value) && value >= 1 && value <= max,
    parseInteger
  )

export const nonNegativeInt = (key: string, fallback: number) =>
  numeric(
    key,
    fallback,
    "0 (off) or a positive integer",
    (value) => Number.isSafeInteger(value) && value >= 0,
    parseInteger
  )

export const seconds = (key: string, fallbackSeconds: number) =>
  numeric(
    key,
    fallbackSeconds,
    "a positive number of seconds",
    (value) => Number.isFinite(value) && value > 0,
    parseDecimal
  ).pipe(Config.map((value) => Duration.millis(Math.round(value * 1000))))

export const secret = (key: string) =>
  Config.redacted(key).pipe(
    Config.mapOrFail((value) => {
      const length = Redacted.value(value).length
      return length >= 32
        ? Either.right(value)
        : Either.left(ConfigError.InvalidData([key], `${key} must be at least 32 characters (got ${length})`))
    }),
    Config.option
  )
