/**
 * Table-driven dispatch: a handler table keyed by event type, built from the event registry.
 *
 * `on.message_create(payload)` is typed with that event's decoded payload from the manifest; the
 * route table is generated from `CLIENT_EVENT_TYPES`, so an event added to the registry is routable
 * without touching this module.
 */
import type { PayloadOfType } from "../protocol/Manifest.js"
import { CLIENT_EVENT_TYPES, decodeFrame, LEGACY_EVENTS, replacementsOf } from "./Decode.js"
import type {
  ClientEvent,
  ClientEventOf,
  ClientEventType,
  FrameDropped,
  LegacyEventType,
  Result
} from "./Decode.js"

/** One optional handler per event type, typed from the manifest. */
export type Handlers = {
  readonly [T in ClientEventType]?: (payload: PayloadOfType<T>, event: ClientEventOf<T>) => void
}

type MigrationPath = (typeof LEGACY_EVENTS)[LegacyEventType]["path"]

/** Compatibility counter key `<path>:<mode>`, as the original web client names them (docs/CLIENT.md). */
export type CompatibilityCounterKey = `${MigrationPath}:${"legacy_decode" | "explicit_decode"}`

/** `explicit_decode` is counted for every replacement event of a legacy one, by the legacy's path. */
const explicitPaths: ReadonlyMap<string, MigrationPath> = new Map(
  (Object.keys(LEGACY_EVENTS) as Array<LegacyEventType>).flatMap((legacy) =>
    replacementsOf(legacy).map((type) => [type, LEGACY_EVENTS[legacy].path] as const)
  )
)

const compatibilityKeyOf = (event: ClientEvent): CompatibilityCounterKey | undefined => {
  if (event.legacyType !== undefined) return `${LEGACY_EVENTS[event.legacyType].path}:legacy_decode`
  const path = explicitPaths.get(event.type)
  return path === undefined ? undefined : `${path}:explicit_decode`
}

const allCounterKeys = (): Array<CompatibilityCounterKey> =>
  Object.values(LEGACY_EVENTS).flatMap(({ path }) => [
    `${path}:legacy_decode` as const,
    `${path}:explicit_decode` as const
  ])

export interface Dispatcher {
  /** Routes a decoded event to its handler. `false` when no handler is registered for its type. */
  readonly dispatch: (event: ClientEvent) => boolean
  /** Decodes a text frame and dispatches it; a dropped frame is returned, never thrown. */
  readonly dispatchFrame: (text: string) => Result<ClientEvent, FrameDropped>
  /** A snapshot of the compatibility counters (successful decodes only). */
  readonly compatibilityCounters: () => ReadonlyMap<CompatibilityCounterKey, number>
}

/**
 * Builds a dispatcher from a handler object. Only own properties named after a registry event are
 * routed, so inherited names (`__proto__`, `constructor`, ...) can never become handlers.
 */
export const makeDispatcher = (handlers: Handlers, options?: { readonly maxBytes?: number }): Dispatcher => {
  const routes = new Map<string, (payload: unknown, event: ClientEvent) => void>()
  for (const type of CLIENT_EVENT_TYPES) {
    if (!Object.hasOwn(handlers, type)) continue
    const handler = handlers[type]
    // The route for `type` only ever receives events of `type`, whose payload matches the handler.
    if (typeof handler === "function")
      routes.set(type, handler as (payload: unknown, event: ClientEvent) => void)
  }
  const counters = new Map<CompatibilityCounterKey, number>(allCounterKeys().map((key) => [key, 0]))

  const dispatch = (event: ClientEvent): boolean => {
    const key = compatibilityKeyOf(event)
    if (key !== undefined) counters.set(key, (counters.get(key) ?? 0) + 1)
    const handler = routes.get(event.type)
    if (handler === undefined) return false
    handler(event.payload, event)
    return true
  }

  return {
    dispatch,
    dispatchFrame: (text) => {
      const result = decodeFrame(text, options)
      if (result._tag === "Right") dispatch(result.right)
      return result
    },
    compatibilityCounters: () => new Map(counters)
  }
}
