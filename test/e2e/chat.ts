/**
 * Helpers for the chat follow-up tests (presence, voice, revocation, migration): a gateway with the
 * production follow-ups, the exact subscribe sequence, publishing through the HTTP API, and
 * "nothing else arrived" proven by a marker (delivery order per connection is guaranteed).
 */
import { expect } from "@effect/vitest"
import { Effect } from "effect"
import type { ChannelId, GuildId, UserId } from "../../src/protocol/Ids.js"
import type { GatewayConfigShape } from "../../src/server/Config.js"
import { Connection } from "../../src/server/core/Connection.js"
import { eventually } from "../deadline.js"
import {
  newId,
  publishHttp,
  recordingPeer,
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

/**
 * A connection of `userId` (granted `guildId`) attached to the harness's gateway in-process: its
 * socket is a recording peer, so the test sees the very Buffers the gateway writes, one per socket
 * write. Above `socketHighWaterBytes` unflushed, frames wait in the outbox (`peer.drained()` flushes).
 */
export const inProcessConnection = (
  harness: Harness,
  id: number,
  userId: string,
  guildId: string,
  socketHighWaterBytes = 100
) =>
  Effect.gen(function* () {
    const { peer, socket, transport } = recordingPeer()
    const connection = new Connection(
      id,
      {
        userId: userId as UserId,
        expiresAt: Infinity,
        guilds: new Map([[guildId as GuildId, "*" as const]])
      },
      socket,
      transport,
      { outboundQueue: 64, socketHighWaterBytes, ingressEventsPerWindow: 60, ingressWindowMillis: 10_000 },
      0,
      () => undefined
    )
    yield* harness.registry.register(connection)
    connection.registered = true
    /** Runs the command through the gateway's command path; returns what it wrote until the ack. */
    const command = (tag: "subscribe" | "unsubscribe", channelId: string) =>
      Effect.gen(function* () {
        const before = peer.written.length
        expect(
          harness.gateway.runCommand(connection, {
            _tag: tag,
            guild_id: guildId as GuildId,
            channel_id: channelId as ChannelId
          })
        ).toBe(true)
        const written = () => peer.written.slice(before)
        yield* eventually(`${tag}d ${channelId}`, () => {
          peer.drained()
          return written().some((wire) => wire.includes(`"t":"${tag}d"`))
        })
        return written()
      })
    /** Subscribes; returns the presence_sync Buffer it wrote. */
    const subscribe = (channelId: string) =>
      Effect.map(command("subscribe", channelId), (frames) => {
        const syncs = frames.filter((wire) => wire.includes('"t":"presence_sync"'))
        expect(syncs).toHaveLength(1)
        return syncs[0]!
      })
    const unsubscribe = (channelId: string) => command("unsubscribe", channelId)
    return { connection, peer, subscribe, unsubscribe }
  })
