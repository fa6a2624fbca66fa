/**
 * What an event is: its wire name, schema version, delivery scope, lifecycle and payload schema.
 * Every event of the protocol is one `defineEvent(...)` in `events/`; the registry in `Manifest.ts`
 * collects them, and server builders, client decoders and the generated docs derive from it.
 */
import type { Either, ParseResult } from "effect"
import { Schema } from "effect"

/** Logical delivery scope (the manifest's `scope`). */
export type EventScope = "connection" | "channel" | "guild" | "user"

export type EventLifecycle = "active" | "deprecated"

/**
 * `original`: one of the 36 events of the original Filament protocol, wire-compatible.
 * `extension`: additive, ours (e.g. the `unsubscribed` ack); original clients ignore it.
 */
export type EventOrigin = "original" | "extension"

export interface EventMigration {
  /** Human migration note; required for a deprecated event, forbidden for an active one. */
  readonly note: string
  /** The events that replace a deprecated one. */
  readonly replacedBy: ReadonlyArray<string>
}

// `any` defaults: Schema is invariant in its types, so "some event" must not pin them to unknown.
export interface EventDefinition<
  T extends string = string,
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  A = any,
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  I = any,
  S extends EventScope = EventScope
> {
  readonly type: T
  readonly version: number
  readonly scope: S
  readonly lifecycle: EventLifecycle
  readonly origin: EventOrigin
  readonly migration?: EventMigration
  readonly description: string
  /** Who receives the event, when that differs from the scope's default routing (e.g. snapshots). */
  readonly delivery?: string
  /** Decoded (`A`, branded ids) and wire (`I`) forms of `d`. */
  readonly payload: Schema.Schema<A, I>
  /**
   * Rules of the payload that its generated JSON Schema cannot express (cross-field refinements and
   * the like). The manifest lists them, and the JSON Schema parity test excuses exactly these.
   */
  readonly unexpressible: ReadonlyArray<string>
}

export const defineEvent = <const T extends string, A, I, const S extends EventScope>(definition: {
  readonly type: T
  readonly version: number
  readonly scope: S
  readonly lifecycle?: EventLifecycle
  readonly origin?: EventOrigin
  readonly migration?: EventMigration
  readonly description: string
  readonly delivery?: string
  readonly payload: Schema.Schema<A, I>
  readonly unexpressible?: ReadonlyArray<string>
}): EventDefinition<T, A, I, S> => ({
  ...definition,
  lifecycle: definition.lifecycle ?? "active",
  origin: definition.origin ?? "original",
  unexpressible: definition.unexpressible ?? []
})

/** The decoded payload type of an event definition. */
export type PayloadOf<E> = E extends EventDefinition<string, infer A> ? A : never

export interface DecodeOptions {
  /**
   * `true` (publish API, ingress): unknown keys anywhere in the payload are rejected.
   * `false` (client): additive unknown keys are ignored, as the original web client does.
   */
  readonly strict: boolean
}

type Decoder = (input: unknown) => Either.Either<unknown, ParseResult.ParseError>
type Encoder = (payload: unknown) => Either.Either<unknown, ParseResult.ParseError>

// Built once per event and mode: decoding runs per frame.
const strictDecoders = new WeakMap<EventDefinition, Decoder>()
const tolerantDecoders = new WeakMap<EventDefinition, Decoder>()
const encoders = new WeakMap<EventDefinition, Encoder>()

const cached = <F>(cache: WeakMap<EventDefinition, F>, event: EventDefinition, make: () => F): F => {
  let value = cache.get(event)
  if (value === undefined) {
    value = make()
    cache.set(event, value)
  }
  return value
}

/**
 * Decodes the wire `d` of an event into its payload (branded ids, client normalizations applied).
 * Synchronous, never throws.
 */
export const decodePayload = <A, I>(
  event: EventDefinition<string, A, I>,
  input: unknown,
  options: DecodeOptions
): Either.Either<A, ParseResult.ParseError> => {
  const decoder = options.strict
    ? cached(strictDecoders, event, () =>
        Schema.decodeUnknownEither(event.payload, { onExcessProperty: "error", errors: "first" })
      )
    : cached(tolerantDecoders, event, () =>
        Schema.decodeUnknownEither(event.payload, { onExcessProperty: "ignore", errors: "first" })
      )
  return decoder(input) as Either.Either<A, ParseResult.ParseError>
}

/** Encodes a payload to its wire form (what goes into `d`). Synchronous, never throws. */
export const encodePayload = <A, I>(
  event: EventDefinition<string, A, I>,
  payload: A
): Either.Either<I, ParseResult.ParseError> => {
  const encoder = cached(encoders, event, () =>
    Schema.encodeUnknownEither(event.payload, { onExcessProperty: "error", errors: "first" })
  )
  return encoder(payload) as Either.Either<I, ParseResult.ParseError>
}
