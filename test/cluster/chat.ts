/** Helpers for the cluster chat tests: chat nodes on one Redis, the subscribe sequence, markers. */
import { expect } from "@effect/vitest"
import { Effect, Either, Option, Redacted } from "effect"
import { decodePayload, type EventDefinition, type PayloadOf } from "../../src/protocol/EventDefinition.js"
import { MessageCreate } from "../../src/protocol/events/message.js"
import type { GatewayConfigShape } from "../../src/server/Config.js"
import { newId, startGateway, type Frame, type Harness, type TestClient } from "../server/harness.js"
import type { RedisServer } from "./redis.js"

export const BUS_SECRET = "bus-secret-0123456789-0123456789-abcdef"
export const BASE_UNIX = 1_700_000_000

export const typed = <E extends EventDefinition>(event: E, wire: unknown): PayloadOf<E> =>
  Either.getOrThrow(decodePayload(event, wire, { strict: true })) as PayloadOf<E>

export const message = (guild: string, channel: string, content: string) =>
  typed(MessageCreate, {
    message_id: newId(),
    guild_id: guild,
    channel_id: channel,
    author_id: newId(),
    content,
    markdown_tokens: [
      { type: "paragraph_start" },
      { type: "text", text: content },
      { type: "paragraph_end" }
    ],
    attachments: [],
    reactions: [],
    created_at_unix: BASE_UNIX
  })

/** A gateway node with the chat follow-ups, joined to the others by `redis`. */
export const startClusterNode = (redis: RedisServer, overrides: Partial<GatewayConfigShape> = {}) =>
  startGateway(
    {
      redis: Option.some({ url: Redacted.make(redis.url), busSecret: Redacted.make(BUS_SECRET) }),
      ...overrides
    },
    undefined,
    "chat"
  )

/** Subscribes and consumes the chat sequence up to the `voice_participant_sync` that ends it. */
export const subscribe = (client: TestClient, guild: string, channel: string) =>
  Effect.gen(function* () {
    client.send({ v: 1, t: "subscribe", d: { guild_id: guild, channel_id: channel } })
    const frames: Array<Frame> = []
    do frames.push(yield* client.next("subscribe sequence"))
    while (frames[frames.length - 1]!.t !== "voice_participant_sync")
    return frames
  })

export const presenceOf = (frames: ReadonlyArray<Frame>, user: string) =>
  frames
    .filter((frame) => frame.t === "presence_update" && frame.d["user_id"] === user)
    .map((frame) => frame.d["status"])

/** A message every listed client must receive next: nothing else arrived before it. */
export const expectMarkerNext = (
  node: Harness,
  guild: string,
  channel: string,
  clients: ReadonlyArray<TestClient>
) =>
  Effect.gen(function* () {
    const text = `marker ${newId()}`
    yield* node.gateway.publish(MessageCreate, message(guild, channel, text))
    for (const client of clients) {
      const frame = yield* client.next(text)
      expect(frame.t, JSON.stringify(frame)).toBe("message_create")
      expect(frame.d["content"]).toBe(text)
    }
  })
