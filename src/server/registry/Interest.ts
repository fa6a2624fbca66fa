/**
 * TopicInterest: where this node's interest in other nodes' events begins and ends. The registry
 * reports it as subscriptions and connections come and go; the event bus (`core/Bus.ts`, Redis in
 * `cluster/`) follows it, so a node receives only the topics it has local recipients for.
 */
import { Context, Effect, Layer } from "effect"
import type { GuildId, UserId } from "../../protocol/Ids.js"

/**
 * A bus topic: one per guild, one per user. Each is one Redis Cluster hash tag (`{g:<guild>}`,
 * `{u:<user>}`), the tag of the history keys of the streams it carries, so the history's append
 * script can publish on it in the same atomic step (`recovery/RedisHistory.ts`).
 */
export type Topic = string

export const USER_TOPIC_PREFIX = "filament:{u:"
export const guildTopic = (guildId: GuildId): Topic => `filament:{g:${guildId}}`
export const userTopic = (userId: UserId): Topic => `${USER_TOPIC_PREFIX}${userId}}`

export interface TopicInterestShape {
  /** This node gained (`true`) or lost (`false`) its last local interest in a topic. */
  readonly setInterest: (topic: Topic, interested: boolean) => void
  /**
   * Waits, bounded by `GATEWAY_BUS_TIMEOUT_SECS`, until the subscription to an interesting topic is
   * active, so a `subscribed` ack means other nodes' events reach the connection. Returns at once
   * when the bus is down (the gap is counted, the ack is not held hostage by Redis).
   */
  readonly awaitActive: (topic: Topic) => Effect.Effect<void>
}

export class TopicInterest extends Context.Tag("filament/TopicInterest")<
  TopicInterest,
  TopicInterestShape
>() {}

/** One node on its own: there is no other node to be interested in. */
export const none: TopicInterestShape = { setInterest: () => undefined, awaitActive: () => Effect.void }

export const layerNone: Layer.Layer<TopicInterest> = Layer.succeed(TopicInterest, none)
