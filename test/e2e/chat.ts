/**
 * Helpers for the chat follow-up tests (presence, voice, revocation, migration): a gateway with the
 * production follow-ups, the exact subscribe sequence, publishing through the HTTP API, and
 * "nothing else arrived" proven by a marker (delivery order per connection is guaranteed).
 */
import { expect } from "@effect/vitest"
import { Effect } from "effect"
import type { GatewayConfigShape } from "../../src/server/Config.js"
import {
  newId,
  publishHttp,
  startGateway,
  type Frame,
  type Harness,
  type TestClient
} from "../server/harness.js"

export const startChatGateway = (overrides: Partial<GatewayConfigShape> = {}) =>
  startGateway(overrides, undefined, "chat")

export const BASE_UNIX = 1_700_000_000

/**
 * Sends `subscribe` and checks the original's exact order: `presence_sync`, `presence_update`
 * online (only when `online`), [expiry events in `expired`], `subscribed`... then
 * `voice_participant_sync`. Returns the frames by type.
 */
export const subscribeInOrder = (
  client: TestClient,
  guildId: string,
  channelId: string,
  options: { readonly online: boolean; readonly expired?: ReadonlyArray<string> }
) =>
  Effect.gen(function* () {
    client.send({ v: 1, t: "subscribe", d: { guild_id: guildId, channel_id: channelId } })
    const presenceSync = yield* client.nextOfType("presence_sync")
    expect(presenceSync.d["guild_id"]).toBe(guildId)
    let presenceUpdate: Frame | undefined
    if (options.online) {
      presenceUpdate = yield* client.nextOfType("presence_update")
      expect(presenceUpdate.d).toEqual({
        guild_id: guildId,
        user_id: presenceUpdate.d["user_id"],
        status: "online"
      })
    }
    const subscribed = yield* client.nextOfType("subscribed")
    expect(subscribed.d).toEqual({ guild_id: guildId, channel_id: channelId })
    const expired: Array<Frame> = []
    for (const type of options.expired ?? []) expired.push(yield* client.nextOfType(type))
    const voiceSync = yield* client.nextOfType("voice_participant_sync")
    expect(voiceSync.d["guild_id"]).toBe(guildId)
    expect(voiceSync.d["channel_id"]).toBe(channelId)
    return { presenceSync, presenceUpdate, subscribed, expired, voiceSync }
  })

/** POST /v1/publish; fails the test unless 202. */
export const publishOk = (harness: Harness, t: string, d: unknown) =>
  Effect.gen(function* () {
    const response = yield* publishHttp(harness, { t, d })
    expect(response, response.body).toMatchObject({ status: 202 })
    return JSON.parse(response.body) as { recipients: number }
  })

/** A channel event every listed client must receive next: proves nothing else arrived before it. */
export const expectNextIsMarker = (harness: Harness, guildId: string, clients: ReadonlyArray<TestClient>) =>
  Effect.gen(function* () {
    const name = `marker-${newId().slice(-6).toLowerCase()}`
    yield* publishOk(harness, "channel_create", {
      guild_id: guildId,
      channel: { channel_id: newId(), name, kind: "text" }
    })
    for (const client of clients) {
      const frame = yield* client.next(`marker ${name}`)
      expect(frame.t, JSON.stringify(frame)).toBe("channel_create")
      expect((frame.d["channel"] as { name: string }).name).toBe(name)
    }
  })

export const metricDelta = (harness: Harness, name: string, labels: Readonly<Record<string, string>> = {}) =>
  Effect.map(harness.metric(name, labels), (before) =>
    Effect.map(harness.metric(name, labels), (after) => after - before)
  )
