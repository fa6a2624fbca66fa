/**
 * Missed-event recovery through the real gateway on one node (real sockets, port 0): the opt-in at
 * the upgrade, positioned frames next to byte-identical legacy ones, replay with `since` and the
 * user stream's replay after `ready`, the seam with publishes racing the reconnect, revocation
 * between disconnect and reconnect, window expiry under TestClock, and foreign or stale epochs.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, TestClock } from "effect"
import { MessageDelete } from "../../src/protocol/events/message.js"
import * as Seams from "../../src/server/core/Seams.js"
import {
  channelEvent,
  guildEvent,
  newId,
  publishHttp,
  startGateway,
  typed,
  userEvent,
  type Frame,
  type Harness,
  type TestClient
} from "../server/harness.js"

interface Pos {
  readonly stream: string
  readonly epoch: string
  readonly offset: number
}

const posOf = (frame: Frame): Pos => (frame as unknown as { pos: Pos }).pos

/** A gateway whose hooks run, right after each `subscribed` ack, the effects pushed onto `seam`. */
const startWithSeam = (config: Parameters<typeof startGateway>[0]) =>
  Effect.gen(function* () {
    const seam: Array<Effect.Effect<void>> = []
    const hooks: Seams.GatewayHooksShape = {
      ...Seams.none,
      afterAck: () => Effect.all(seam.splice(0), { discard: true })
    }
    const harness = yield* startGateway(config, Layer.succeed(Seams.GatewayHooks, hooks))
    return { harness, seam }
  })

const connectOptedIn = (
  harness: Harness,
  user: string,
  guilds: Readonly<Record<string, "*" | ReadonlyArray<string>>>,
  userSince?: Pos
) =>
  Effect.gen(function* () {
    const client = yield* harness
      .connect(yield* harness.token({ userId: user, guilds }), {
        params: {
          recovery: "1",
          ...(userSince === undefined ? {} : { user_since: `${userSince.epoch}:${userSince.offset}` })
        }
      })
      .pipe(Effect.orDie)
    yield* client.nextOfType("ready")
    return client
  })

const subscribeSince = (
  client: TestClient,
  guild: string,
  channel: string,
  since?: { readonly channel?: Pos; readonly guild?: Pos }
) => {
  const strip = (pos: Pos | undefined) =>
    pos === undefined ? undefined : { epoch: pos.epoch, offset: pos.offset }
  client.send({
    v: 1,
    t: "subscribe",
    d: {
      guild_id: guild,
      channel_id: channel,
      ...(since === undefined
        ? {}
        : {
            since: {
              ...(since.channel === undefined ? {} : { channel: strip(since.channel) }),
              ...(since.guild === undefined ? {} : { guild: strip(since.guild) })
            }
          })
    }
  })
  return client.nextOfType("subscribed")
}

/** Frames up to (and including) the next `recovery` event. */
const untilRecovery = (client: TestClient) =>
  Effect.gen(function* () {
    const before: Array<Frame> = []
    for (;;) {
      const frame = yield* client.next("frame up to recovery")
      if (frame.t === "recovery") return { before, recovery: frame }
      before.push(frame)
    }
  })

const streamsOf = (recovery: Frame) => recovery.d["streams"] as ReadonlyArray<Record<string, unknown>>

const publishAll = (harness: Harness, bodies: ReadonlyArray<unknown>) =>
  Effect.forEach(bodies, (body) =>
    Effect.map(publishHttp(harness, body), (response) => expect(response.status).toBe(202))
  )

describe("missed-event recovery, one node", () => {
  it.scoped("recovery=<other> and a malformed user_since: 400 invalid_recovery, counted, no upgrade", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway()
      const token = yield* harness.token({ userId: newId() })
      const rejected = () =>
        harness.metric("filament_gateway_connections_rejected_total", { reason: "invalid_recovery" })
      for (const params of [{ recovery: "true" }, { recovery: "" }, { recovery: "1", user_since: "e:01" }]) {
        const before = yield* rejected()
        const refused = yield* Effect.flip(harness.connect(token, { params }))
        expect(refused).toEqual({ status: 400, body: '{"error":"invalid_recovery"}' })
        expect(yield* rejected()).toBe(before + 1)
      }
      // Without the opt-in, `user_since` is not looked at.
      const legacy = yield* harness.connect(token, { params: { user_since: "bogus" } }).pipe(Effect.orDie)
      expect((yield* legacy.nextOfType("ready")).t).toBe("ready")
    })
  )

  it.scoped("a legacy neighbour gets byte-identical frames: the opted-in one's minus pos", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway()
      const [guild, channel] = [newId(), newId()]
      const legacy = yield* harness.connectReady(newId(), { [guild]: "*" })
      yield* legacy.subscribe(guild, channel)
      const optedIn = yield* connectOptedIn(harness, newId(), { [guild]: "*" })
      expect((yield* untilRecovery(optedIn)).recovery.d["streams"]).toHaveLength(1)
      yield* subscribeSince(optedIn, guild, channel)
      const fresh = yield* untilRecovery(optedIn)
      // A fresh subscribe states the positions only.
      expect(
        streamsOf(fresh.recovery).map((entry) => [entry["stream"], entry["offset"], "recovered" in entry])
      ).toEqual([
        [`channel:${guild}:${channel}`, 0, false],
        [`guild:${guild}`, 0, false]
      ])

      yield* publishAll(harness, [channelEvent(guild, channel, 1), guildEvent(guild, "a")])
      const legacyFrames = [
        yield* legacy.nextOfType("message_delete"),
        yield* legacy.nextOfType("channel_create")
      ]
      const optedFrames = [
        yield* optedIn.nextOfType("message_delete"),
        yield* optedIn.nextOfType("channel_create")
      ]
      expect(optedFrames.map(posOf).map((pos) => [pos.stream, pos.offset])).toEqual([
        [`channel:${guild}:${channel}`, 1],
        [`guild:${guild}`, 1]
      ])
      const legacyTexts = legacy.texts.slice(-2)
      const optedTexts = optedIn.texts.slice(-2)
      optedTexts.forEach((text, i) => {
        const pos = JSON.stringify(posOf(optedFrames[i]!))
        expect(text).toBe(`${legacyTexts[i]!.slice(0, -1)},"pos":${pos}}`)
        expect(legacyTexts[i]).not.toContain('"pos"')
      })
      expect(legacyFrames.map((frame) => frame.t)).toEqual(["message_delete", "channel_create"])
    })
  )

  it.scoped(
    "reconnect with since: exactly the missed channel and guild events, merged in publish order",
    () =>
      Effect.gen(function* () {
        const harness = yield* startGateway()
        const [user, guild, channel] = [newId(), newId(), newId()]
        const first = yield* connectOptedIn(harness, user, { [guild]: "*" })
        yield* untilRecovery(first)
        yield* subscribeSince(first, guild, channel)
        yield* untilRecovery(first)
        yield* publishAll(harness, [channelEvent(guild, channel, 1), guildEvent(guild, "g1")])
        const seen = [yield* first.next(), yield* first.next()]
        const lastChannel = posOf(seen[0]!)
        const lastGuild = posOf(seen[1]!)
        first.socket.terminate()
        yield* first.waitClosed()

        const missed = [
          channelEvent(guild, channel, 2),
          guildEvent(guild, "g2"),
          channelEvent(guild, channel, 3),
          channelEvent(guild, channel, 4)
        ]
        yield* publishAll(harness, missed)
        const replayedBefore = yield* harness.metric("filament_gateway_events_replayed_total", {
          scope: "channel"
        })
        const recoveredBefore = yield* harness.metric("filament_gateway_recoveries_total", {
          scope: "channel",
          outcome: "recovered"
        })

        const second = yield* connectOptedIn(harness, user, { [guild]: "*" })
        yield* untilRecovery(second)
        yield* subscribeSince(second, guild, channel, { channel: lastChannel, guild: lastGuild })
        const { before, recovery } = yield* untilRecovery(second)
        expect(before.map((frame) => [frame.t, posOf(frame).offset])).toEqual([
          ["message_delete", 2],
          ["channel_create", 2],
          ["message_delete", 3],
          ["message_delete", 4]
        ])
        expect(before.map((frame) => frame.d)).toEqual(missed.map((body) => body.d))
        expect(streamsOf(recovery)).toEqual([
          {
            stream: `channel:${guild}:${channel}`,
            epoch: lastChannel.epoch,
            offset: 4,
            recovered: true,
            replayed: 3
          },
          { stream: `guild:${guild}`, epoch: lastGuild.epoch, offset: 2, recovered: true, replayed: 1 }
        ])
        expect(recovery.d["guild_id"]).toBe(guild)
        expect(yield* harness.metric("filament_gateway_events_replayed_total", { scope: "channel" })).toBe(
          replayedBefore + 3
        )
        expect(
          yield* harness.metric("filament_gateway_recoveries_total", {
            scope: "channel",
            outcome: "recovered"
          })
        ).toBe(recoveredBefore + 1)

        // Live from there; a second channel of the guild finds the guild stream live already.
        yield* publishAll(harness, [channelEvent(guild, channel, 5)])
        expect(posOf(yield* second.nextOfType("message_delete")).offset).toBe(5)
        const other = newId()
        yield* subscribeSince(second, guild, other, { guild: { ...lastGuild, offset: 2 } })
        const again = yield* untilRecovery(second)
        expect(again.before).toEqual([])
        expect(streamsOf(again.recovery)[1]).toEqual({
          stream: `guild:${guild}`,
          epoch: lastGuild.epoch,
          offset: 2,
          recovered: true,
          replayed: 0,
          reason: "already_live"
        })
      })
  )

  it.scoped(
    "publishes racing the reconnect, some inside the subscribe's seam: every offset once, in order",
    () =>
      Effect.gen(function* () {
        // Publishes that land between the registry subscribe and the history read: delivered live
        // (held) and also in the replay — the seam must send each once.
        let seamPublishes: Array<ReturnType<typeof channelEvent>> = []
        const hooks: Seams.GatewayHooksShape = {
          ...Seams.none,
          afterAck: (_change, publisher) =>
            Effect.forEach(seamPublishes.splice(0), (body) =>
              Effect.orDie(publisher.publish(MessageDelete, typed(MessageDelete, body.d)))
            ).pipe(Effect.asVoid)
        }
        const harness = yield* startGateway({}, Layer.succeed(Seams.GatewayHooks, hooks))
        const [user, guild, channel] = [newId(), newId(), newId()]
        const first = yield* connectOptedIn(harness, user, { [guild]: "*" })
        yield* untilRecovery(first)
        yield* subscribeSince(first, guild, channel)
        const { recovery } = yield* untilRecovery(first)
        const start = streamsOf(recovery)[0]!
        first.socket.terminate()
        yield* first.waitClosed()
        yield* publishAll(harness, [channelEvent(guild, channel, 1), channelEvent(guild, channel, 2)])

        const second = yield* connectOptedIn(harness, user, { [guild]: "*" })
        yield* untilRecovery(second)
        seamPublishes = [3, 4, 5].map((n) => channelEvent(guild, channel, n))
        const racing = yield* Effect.fork(
          Effect.forEach(
            Array.from({ length: 40 }, (_, i) => channelEvent(guild, channel, 10 + i)),
            (body) => publishHttp(harness, body),
            { concurrency: 8 }
          )
        )
        yield* subscribeSince(second, guild, channel, {
          channel: { stream: "", epoch: start["epoch"] as string, offset: 0 }
        })
        yield* racing.await
        const offsets: Array<number> = []
        while (offsets.length < 45) {
          const frame = yield* second.next("replayed or live message_delete")
          if (frame.t === "message_delete") offsets.push(posOf(frame).offset)
          if (frame.t === "recovery") expect(streamsOf(frame)[0]!["recovered"]).toBe(true)
        }
        expect(offsets).toEqual(Array.from({ length: 45 }, (_, i) => i + 1))
        // Nothing more: a duplicate would follow the last one.
        yield* publishAll(harness, [channelEvent(guild, channel, 99)])
        expect(posOf(yield* second.nextOfType("message_delete")).offset).toBe(46)
      })
  )

  it.scoped(
    "a fresh subscribe with publishes inside its seam: they arrive, then the recovery event naming them",
    () =>
      Effect.gen(function* () {
        const { harness, seam } = yield* startWithSeam({})
        const [user, guild, channel] = [newId(), newId(), newId()]
        const client = yield* connectOptedIn(harness, user, { [guild]: "*" })
        yield* untilRecovery(client)
        const publish = (n: number) =>
          Effect.orDie(
            harness.gateway.publish(MessageDelete, typed(MessageDelete, channelEvent(guild, channel, n).d))
          ).pipe(Effect.asVoid)
        seam.push(publish(1), publish(2))
        yield* subscribeSince(client, guild, channel)
        const { before, recovery } = yield* untilRecovery(client)
        expect(before.map((frame) => posOf(frame).offset)).toEqual([1, 2])
        expect(streamsOf(recovery)[0]).toEqual({
          stream: `channel:${guild}:${channel}`,
          epoch: posOf(before[0]!).epoch,
          offset: 2
        })
      })
  )

  it.scoped(
    "live frames held during a replay are bounded: one over GATEWAY_OUTBOUND_QUEUE closes 1008 slow_consumer",
    () =>
      Effect.gen(function* () {
        const { harness, seam } = yield* startWithSeam({ outboundQueue: 3 })
        const [user, guild, channel] = [newId(), newId(), newId()]
        const client = yield* connectOptedIn(harness, user, { [guild]: "*" })
        yield* untilRecovery(client)
        const publish = (n: number) =>
          Effect.orDie(
            harness.gateway.publish(MessageDelete, typed(MessageDelete, channelEvent(guild, channel, n).d))
          ).pipe(Effect.asVoid)
        const evictedBefore = yield* harness.metric("filament_ws_disconnects_total", {
          reason: "slow_consumer"
        })
        seam.push(publish(1), publish(2), publish(3), publish(4))
        yield* subscribeSince(client, guild, channel)
        expect(yield* client.waitClosed()).toEqual({ code: 1008, reason: "slow_consumer" })
        expect(yield* harness.metric("filament_ws_disconnects_total", { reason: "slow_consumer" })).toBe(
          evictedBefore + 1
        )
      })
  )

  it.scoped(
    "more missed than GATEWAY_RECOVERY_MAX_REPLAY: too_many_events; an offset past the head: position_ahead",
    () =>
      Effect.gen(function* () {
        const harness = yield* startGateway({ recoveryMaxReplay: 2 })
        const [user, guild, channel] = [newId(), newId(), newId()]
        const first = yield* connectOptedIn(harness, user, { [guild]: "*" })
        yield* untilRecovery(first)
        yield* subscribeSince(first, guild, channel)
        const start = streamsOf((yield* untilRecovery(first)).recovery)
        first.socket.terminate()
        yield* first.waitClosed()
        yield* publishAll(
          harness,
          [1, 2, 3].map((n) => channelEvent(guild, channel, n))
        )
        const second = yield* connectOptedIn(harness, user, { [guild]: "*" })
        yield* untilRecovery(second)
        yield* subscribeSince(second, guild, channel, {
          channel: { stream: "", epoch: start[0]!["epoch"] as string, offset: 0 },
          guild: { stream: "", epoch: start[1]!["epoch"] as string, offset: 5 }
        })
        const { before, recovery } = yield* untilRecovery(second)
        expect(before).toEqual([])
        expect(
          streamsOf(recovery).map((entry) => [entry["offset"], entry["recovered"], entry["reason"]])
        ).toEqual([
          [3, false, "too_many_events"],
          [0, false, "position_ahead"]
        ])
      })
  )

  it.scoped("the user stream: replayed after ready from user_since, then its recovery event", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway()
      const user = newId()
      const first = yield* connectOptedIn(harness, user, {})
      const { recovery } = yield* untilRecovery(first)
      const start = streamsOf(recovery)[0]!
      expect(recovery.d).toEqual({ streams: [{ stream: `user:${user}`, epoch: start["epoch"], offset: 0 }] })
      first.socket.terminate()
      yield* first.waitClosed()
      yield* publishAll(harness, [userEvent(user, 1), userEvent(user, 2)])

      const since = { stream: `user:${user}`, epoch: start["epoch"] as string, offset: 0 }
      const second = yield* connectOptedIn(harness, user, {}, since)
      const replay = yield* untilRecovery(second)
      expect(replay.before.map((frame) => [frame.t, posOf(frame).offset])).toEqual([
        ["profile_update", 1],
        ["profile_update", 2]
      ])
      expect(streamsOf(replay.recovery)).toEqual([
        { stream: `user:${user}`, epoch: since.epoch, offset: 2, recovered: true, replayed: 2 }
      ])

      // Another user's position names another stream: its epoch never matches this one's.
      const stranger = newId()
      const third = yield* connectOptedIn(harness, stranger, {}, { ...since, offset: 1 })
      expect(streamsOf((yield* untilRecovery(third)).recovery)[0]).toMatchObject({
        stream: `user:${stranger}`,
        recovered: false,
        reason: "epoch_changed"
      })
    })
  )

  it.scoped("revoked between disconnect and reconnect: the refused subscribe replays nothing", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway()
      const [user, guild, channel, kept] = [newId(), newId(), newId(), newId()]
      const first = yield* connectOptedIn(harness, user, { [guild]: [channel, kept] })
      yield* untilRecovery(first)
      yield* subscribeSince(first, guild, channel)
      const { recovery } = yield* untilRecovery(first)
      const position = streamsOf(recovery)[0]!
      first.socket.terminate()
      yield* first.waitClosed()
      yield* publishAll(harness, [channelEvent(guild, channel, 1), channelEvent(guild, kept, 2)])

      const second = yield* connectOptedIn(harness, user, { [guild]: [kept] })
      yield* untilRecovery(second)
      second.send({
        v: 1,
        t: "subscribe",
        d: {
          guild_id: guild,
          channel_id: channel,
          since: { channel: { epoch: position["epoch"], offset: 0 } }
        }
      })
      // The next subscribe's answers come first: the refused one sent nothing at all.
      yield* subscribeSince(second, guild, kept)
      const next = yield* untilRecovery(second)
      expect(next.before).toEqual([])
      expect(second.frames.some((frame) => frame.t === "message_delete")).toBe(false)
    })
  )

  it.scoped("window expiry under TestClock: position_trimmed; a foreign epoch: epoch_changed", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway()
      const [user, guild, channel] = [newId(), newId(), newId()]
      const first = yield* connectOptedIn(harness, user, { [guild]: "*" })
      yield* untilRecovery(first)
      yield* subscribeSince(first, guild, channel)
      const start = streamsOf((yield* untilRecovery(first)).recovery)[0]!
      first.socket.terminate()
      yield* first.waitClosed()
      yield* publishAll(harness, [channelEvent(guild, channel, 1)])
      // Past GATEWAY_HISTORY_TTL_SECS (120 s by default).
      yield* TestClock.adjust("121 seconds")
      const trimmedBefore = yield* harness.metric("filament_gateway_recoveries_total", {
        scope: "channel",
        outcome: "position_trimmed"
      })

      const second = yield* connectOptedIn(harness, user, { [guild]: "*" })
      yield* untilRecovery(second)
      yield* subscribeSince(second, guild, channel, {
        channel: { stream: "", epoch: start["epoch"] as string, offset: 0 },
        guild: { stream: "", epoch: "not-this-history", offset: 3 }
      })
      const { before, recovery } = yield* untilRecovery(second)
      expect(before).toEqual([])
      expect(streamsOf(recovery)).toEqual([
        {
          stream: `channel:${guild}:${channel}`,
          epoch: start["epoch"],
          offset: 1,
          recovered: false,
          reason: "position_trimmed"
        },
        {
          stream: `guild:${guild}`,
          epoch: expect.any(String),
          offset: 0,
          recovered: false,
          reason: "epoch_changed"
        }
      ])
      expect(
        yield* harness.metric("filament_gateway_recoveries_total", {
          scope: "channel",
          outcome: "position_trimmed"
        })
      ).toBe(trimmedBefore + 1)
    })
  )

  it.scoped(
    "presence and voice are never recorded nor positioned; the subscribe order ends with the recovery event",
    () =>
      Effect.gen(function* () {
        const harness = yield* startGateway({}, Layer.empty, "chat")
        const [guild, channel] = [newId(), newId()]
        const entries = (scope: string) => harness.metric("filament_gateway_history_entries", { scope })
        const client = yield* connectOptedIn(harness, newId(), { [guild]: "*" })
        yield* untilRecovery(client)
        client.send({ v: 1, t: "subscribe", d: { guild_id: guild, channel_id: channel } })
        yield* untilRecovery(client)
        expect(client.frames.map((frame) => frame.t)).toEqual([
          "ready",
          "recovery",
          "presence_sync",
          "presence_update",
          "subscribed",
          "voice_participant_sync",
          "recovery"
        ])
        expect(client.frames.some((frame) => "pos" in frame)).toBe(false)
        expect([yield* entries("channel"), yield* entries("guild"), yield* entries("user")]).toEqual([
          0, 0, 0
        ])
        yield* publishAll(harness, [channelEvent(guild, channel, 1)])
        expect("pos" in (yield* client.nextOfType("message_delete"))).toBe(true)
        expect(yield* entries("channel")).toBe(1)
      })
  )

  it.scoped("subscribe.since on a legacy connection is ignored: no pos, no recovery event", () =>
    Effect.gen(function* () {
      const harness = yield* startGateway()
      const [guild, channel] = [newId(), newId()]
      const legacy = yield* harness.connectReady(newId(), { [guild]: "*" })
      yield* subscribeSince(legacy, guild, channel, { channel: { stream: "", epoch: "e", offset: 0 } })
      yield* publishAll(harness, [channelEvent(guild, channel, 1)])
      const frame = yield* legacy.next()
      expect(frame.t).toBe("message_delete")
      expect("pos" in frame).toBe(false)
    })
  )
})
