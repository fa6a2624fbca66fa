/**
 * Missed-event recovery as a property over the real gateway (real sockets, port 0): random publish
 * sequences on a channel, its guild and a user's streams, with random disconnect / reconnect points
 * of one opted-in client and publishes racing its reconnect. A second opted-in connection of the
 * same user never disconnects. Per stream, the recovering client ends with exactly the events (same
 * offsets, same payloads, once each, in order) the never-disconnected one got — or with an explicit
 * `recovered: false` for that stream.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Runtime } from "effect"
import type { UserId } from "../../src/protocol/Ids.js"
import { Manifest } from "../../src/protocol/Manifest.js"
import * as Seams from "../../src/server/core/Seams.js"
import * as fc from "fast-check"
import { eventually } from "../deadline.js"
import {
  newId,
  publishHttp,
  startGateway,
  typed,
  type Frame,
  type Harness,
  type TestClient
} from "../server/harness.js"

type Scope = "channel" | "guild" | "user"
type Step =
  | { readonly _tag: "publish"; readonly scope: Scope }
  | { readonly _tag: "disconnect" }
  | {
      readonly _tag: "reconnect"
      /** Published over HTTP while the client reconnects. */
      readonly racing: ReadonlyArray<Scope>
      /** Published inside the subscribe's seam: after its registry subscribe, before its history read. */
      readonly inSeam: ReadonlyArray<Scope>
    }

const scopeArb = fc.constantFrom<Scope>("channel", "guild", "user")
const stepArb: fc.Arbitrary<Step> = fc.oneof(
  { weight: 5, arbitrary: scopeArb.map((scope) => ({ _tag: "publish" as const, scope })) },
  { weight: 1, arbitrary: fc.constant({ _tag: "disconnect" as const }) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.array(scopeArb, { maxLength: 6 }), fc.array(scopeArb, { maxLength: 3 }))
      .map(([racing, inSeam]) => ({ _tag: "reconnect" as const, racing, inSeam }))
  }
)

interface Pos {
  readonly stream: string
  readonly epoch: string
  readonly offset: number
}

interface Received {
  readonly offset: number
  readonly d: string
}

/** What one client saw: per stream, the positioned events in arrival order, and the streams answered `false`. */
class Seen {
  readonly events = new Map<string, Array<Received>>()
  readonly positions = new Map<string, Pos>()
  readonly notRecovered = new Set<string>()

  take(frames: ReadonlyArray<Frame>) {
    for (const frame of frames) {
      const pos = (frame as unknown as { pos?: Pos }).pos
      if (pos !== undefined) {
        const list = this.events.get(pos.stream) ?? []
        list.push({ offset: pos.offset, d: JSON.stringify(frame.d) })
        this.events.set(pos.stream, list)
        this.positions.set(pos.stream, pos)
      }
      if (frame.t === "recovery") {
        for (const entry of frame.d["streams"] as ReadonlyArray<Pos & { recovered?: boolean }>) {
          if (entry.recovered === false) this.notRecovered.add(entry.stream)
          this.positions.set(entry.stream, { stream: entry.stream, epoch: entry.epoch, offset: entry.offset })
        }
      }
    }
  }
}

const body = (scope: Scope, ids: { guild: string; channel: string; user: string }, n: number) =>
  scope === "channel"
    ? {
        t: "message_delete",
        d: {
          guild_id: ids.guild,
          channel_id: ids.channel,
          message_id: newId(),
          deleted_at_unix: 1_700_000_000 + n
        }
      }
    : scope === "guild"
      ? {
          t: "channel_create",
          d: { guild_id: ids.guild, channel: { channel_id: newId(), name: `c${n}`, kind: "text" } }
        }
      : {
          t: "profile_update",
          d: { user_id: ids.user, updated_fields: { username: `u${n}` }, updated_at_unix: 1_700_000_000 + n },
          users: [ids.user]
        }

/** Publishes armed by the test, run by the next subscribe's `afterAck` (inside the seam). */
const seam: Array<Effect.Effect<void>> = []
const seamHooks: Seams.GatewayHooksShape = {
  ...Seams.none,
  afterAck: () => Effect.all(seam.splice(0), { discard: true })
}

const run = (harness: Harness, steps: ReadonlyArray<Step>) =>
  Effect.gen(function* () {
    seam.length = 0
    const ids = { guild: newId(), channel: newId(), user: newId() }
    const streams = {
      channel: `channel:${ids.guild}:${ids.channel}`,
      guild: `guild:${ids.guild}`,
      user: `user:${ids.user}`
    }
    const token = yield* harness.token({ userId: ids.user, guilds: { [ids.guild]: "*" } })
    const published = { channel: 0, guild: 0, user: 0 }
    let n = 0
    const publish = (scope: Scope) =>
      Effect.flatMap(publishHttp(harness, body(scope, ids, n++)), (response) =>
        Effect.sync(() => {
          expect(response.status).toBe(202)
          published[scope]++
        })
      )

    /** The same event, published in-process (from inside the seam). */
    const publishInProcess = (scope: Scope) =>
      Effect.suspend(() => {
        const { d, t, users } = body(scope, ids, n++) as { t: string; d: unknown; users?: Array<string> }
        const event = Manifest.lookup(t)!
        const payload = typed(event, d)
        const published_ =
          users === undefined
            ? harness.gateway.publish(event as Seams.RoutedEvent, payload)
            : harness.gateway.publishToUsers(event as Seams.UserEvent, payload, users as Array<UserId>)
        return Effect.map(Effect.orDie(published_), () => {
          published[scope]++
        })
      })

    const subject = new Seen()
    const open = (userSince: Pos | undefined) =>
      Effect.gen(function* () {
        const client = yield* harness
          .connect(token, {
            params: {
              recovery: "1",
              ...(userSince === undefined ? {} : { user_since: `${userSince.epoch}:${userSince.offset}` })
            }
          })
          .pipe(Effect.orDie)
        const channel = subject.positions.get(streams.channel)
        const guild = subject.positions.get(streams.guild)
        const since = {
          ...(channel === undefined ? {} : { channel: { epoch: channel.epoch, offset: channel.offset } }),
          ...(guild === undefined ? {} : { guild: { epoch: guild.epoch, offset: guild.offset } })
        }
        client.send({
          v: 1,
          t: "subscribe",
          d: {
            guild_id: ids.guild,
            channel_id: ids.channel,
            ...(Object.keys(since).length === 0 ? {} : { since })
          }
        })
        return client
      })
    /** Frames of a subject connection already taken into `subject`. */
    const taken = new Map<TestClient, number>()
    const takeFrom = (client: TestClient) => {
      subject.take(client.frames.slice(taken.get(client) ?? 0))
      taken.set(client, client.frames.length)
    }
    /** Counted up to its disconnect: what a real client had processed when its socket went. */
    const close = (client: TestClient) =>
      Effect.sync(() => {
        takeFrom(client)
        client.socket.terminate()
      })
    const subscribeRecovered = (client: TestClient) =>
      eventually("subscribe answered", () =>
        client.frames.some((frame) => frame.t === "recovery" && frame.d["channel_id"] !== undefined)
      )

    const reference = yield* open(undefined)
    yield* subscribeRecovered(reference)
    let current: TestClient | undefined = yield* open(undefined)
    yield* subscribeRecovered(current)
    // The initial answers give the subject positions before anything is published.
    takeFrom(current)

    for (const step of steps) {
      if (step._tag === "publish") yield* publish(step.scope)
      else if (step._tag === "disconnect") {
        if (current !== undefined) yield* close(current)
        current = undefined
      } else if (current === undefined) {
        seam.push(...step.inSeam.map(publishInProcess))
        const racing = yield* Effect.fork(Effect.forEach(step.racing, publish, { concurrency: "unbounded" }))
        current = yield* open(subject.positions.get(streams.user))
        yield* racing.await
      }
    }
    if (current === undefined) current = yield* open(subject.positions.get(streams.user))
    const last = current
    // Its subscribe has run (and with it any publishes armed for its seam) before anything is compared.
    yield* subscribeRecovered(last)
    const expected = new Seen()
    yield* eventually("the reference has every event", () => {
      const seen = new Seen()
      seen.take(reference.frames)
      return (Object.keys(streams) as Array<Scope>).every(
        (scope) => (seen.events.get(streams[scope])?.length ?? 0) === published[scope]
      )
    })
    expected.take(reference.frames)
    yield* eventually("the subject caught up or was told it cannot", () => {
      const seen = new Seen()
      seen.take(last.frames)
      return (Object.keys(streams) as Array<Scope>).every((scope) => {
        const stream = streams[scope]
        if (subject.notRecovered.has(stream) || seen.notRecovered.has(stream)) return true
        // The last connection's answers (after ready, after subscribe) name every stream.
        return seen.positions.get(stream)?.offset === published[scope]
      })
    })
    yield* close(last)
    for (const scope of Object.keys(streams) as Array<Scope>) {
      const stream = streams[scope]
      if (subject.notRecovered.has(stream)) continue
      expect(subject.events.get(stream) ?? [], stream).toEqual(expected.events.get(stream) ?? [])
    }
  })

describe("missed-event recovery, property", () => {
  it.scoped(
    "random publishes, disconnects and racing reconnects: exactly the never-disconnected sequence, or a verdict",
    () =>
      Effect.gen(function* () {
        const harness = yield* startGateway({}, Layer.succeed(Seams.GatewayHooks, seamHooks))
        const runtime = yield* Effect.runtime<never>()
        yield* Effect.promise(() =>
          fc.assert(
            fc.asyncProperty(fc.array(stepArb, { minLength: 1, maxLength: 30 }), (steps) =>
              Runtime.runPromise(runtime)(Effect.scoped(run(harness, steps)))
            ),
            { numRuns: 25 }
          )
        )
      }),
    60_000
  )
})
