/**
 * What an event is: its wire name, schema version, delivery scope, lifecycle and payload schema.
 * Every event of the protocol is one `defineEvent(...)` in `events/`; the registry in `Manifest.ts`
 * collects them, and server builders, client decoders and the generated docs derive from it.
 */
import type { Schema } from "effect"

/** Logical delivery scope (the manifest's `scope`). */
export type EventScope = "connection" | "channel" | "guild" | "user"

export type EventLifecycle = "active" | "deprecated"

/**
 * `original`: an event of the original Filament protocol (reference §4.0), wire-compatible.
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
/** The wire (JSON) payload type of an event definition. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type WirePayloadOf<E> = E extends EventDefinition<string, any, infer I> ? I : never
