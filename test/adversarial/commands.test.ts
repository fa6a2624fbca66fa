/**
 * Commands a connection cannot complete, over real sockets: a host AccessPolicy or MessageHandler
 * call that never returns (the command times out, 4012; the commands piling up behind it are bounded,
 * 4013), and an ack the server cannot build (1011, counted as a build failure, not a defect). Each
 * asserts the close code, the reason and the metric delta; with a hanging call, also that a neighbour
 * connection is served throughout.
 */
import { describe, expect, it } from "@effect/vitest"
import {
  Deferred,
  Duration,
  Effect,
  Exit,
  Fiber,
  FiberRef,
  HashMap,
  HashSet,
  Layer,
  Logger,
  Option,
  Scope,
  TestClock
} from "effect"
import { MessageCreate } from "../../src/protocol/events/message.js"
import { fromClaims } from "../../src/server/chat/Access.js"
import { plainText } from "../../src/server/chat/Messages.js"
import { AccessPolicy, MessageHandler } from "../../src/server/core/Seams.js"
import { message, newId, startGateway, type Harness, type TestClient } from "../server/harness.js"
import { eventually } from "../deadline.js"

/**
 * Host services whose calls for one user never finish (a hung permission service or message store);
 * `entered` tells the test such a call has started. Every other user is served normally.
 */
const hangingFor = (stuckUser: string) =>
  Effect.gen(function* () {
    const entered = yield* Deferred.make<void>()
    const interrupted = yield* Deferred.make<void>()
    const hang = Effect.zipRight(
      Deferred.succeed(entered, undefined),
      Effect.onInterrupt(Effect.never, () => Deferred.succeed(interrupted, undefined))
    )
    const policy = Layer.succeed(AccessPolicy, {
      canSubscribe: (principal, guild, channel) =>
        principal.userId === stuckUser
          ? Effect.as(hang, true)
          : fromClaims.canSubscribe(principal, guild, channel),
      canPost: fromClaims.canPost
    })
    const handler = Layer.succeed(MessageHandler, {
      create: (principal, command) =>
        principal.userId === stuckUser ? hang : plainText.create(principal, command)
    })
    // The command sent decides which of the two hangs: `subscribe` the policy, `message_create` the handler.
    return { entered, interrupted, services: Layer.merge(policy, handler) }
  })

/** The neighbour is still served: an event published now reaches it. */
const neighbourServed = (harness: Harness, neighbour: TestClient, guild: string, channel: string) =>
  Effect.gen(function* () {
    yield* harness.gateway.publish(MessageCreate, message(guild, channel, "still here"))
    expect((yield* neighbour.nextOfType("message_create")).d["content"]).toBe("still here")
    expect(neighbour.closed).toBeUndefined()
  })

describe("hanging host services", () => {
  for (const service of ["AccessPolicy", "MessageHandler"] as const) {
    it.scoped(`a hanging ${service} call closes only its connection, 4012 command_timeout`, () =>
      Effect.gen(function* () {
        const [stuckUser, guild, channel] = [newId(), newId(), newId()]
        const hanging = yield* hangingFor(stuckUser)
        const logs: Array<{ message: string; command: unknown }> = []
        const capture = Logger.make(({ annotations, message }) => {
          const text = String(Array.isArray(message) ? message[0] : message)
          logs.push({
            message: text,
            command: HashMap.get(annotations, "command").pipe(Option.getOrUndefined)
          })
        })
        const harness = yield* startGateway({ commandTimeout: Duration.seconds(5) }, hanging.services).pipe(
          Effect.locallyWith(FiberRef.currentLoggers, HashSet.add(capture))
        )
        const stuck = yield* harness.connectReady(stuckUser, { [guild]: "*" })
        const neighbour = yield* harness.connectReady(newId(), { [guild]: "*" })
        const [connection] = yield* harness.serverConnections(stuckUser)
        const before = yield* harness.metric("filament_ws_disconnects_total", { reason: "command_timeout" })
        // The heartbeat sweep (every second since the gateway started) times commands out: one that
        // starts half-way between two sweeps is closed by the first sweep at or after its deadline.
        yield* TestClock.adjust(Duration.millis(500))
        stuck.send({
          v: 1,
          t: service === "AccessPolicy" ? "subscribe" : "message_create",
          d: {
            guild_id: guild,
            channel_id: channel,
            ...(service === "AccessPolicy" ? {} : { content: "hi" })
          }
        })
        yield* Deferred.await(hanging.entered)
        // The neighbour is served while the call hangs.
        yield* neighbour.subscribe(guild, channel)
        yield* TestClock.adjust(Duration.millis(5_000))
        // At its deadline, between two sweeps: still open (the documented precision is one sweep).
        expect(connection!.isOpen).toBe(true)
        yield* TestClock.adjust(Duration.millis(499))
        expect(connection!.isOpen).toBe(true)
        yield* TestClock.adjust(Duration.millis(1))
        expect(yield* stuck.waitClosed()).toEqual({ code: 4012, reason: "command_timeout" })
        expect(yield* harness.metric("filament_ws_disconnects_total", { reason: "command_timeout" })).toBe(
          before + 1
        )
        expect(logs).toContainEqual({
          message: "gateway.command.timeout",
          command: service === "AccessPolicy" ? "subscribe" : "message_create"
        })
        // The hanging call itself was interrupted, not left running.
        yield* Deferred.await(hanging.interrupted)
        yield* neighbourServed(harness, neighbour, guild, channel)
      })
    )
  }

  it.scoped("shutdown interrupts a hanging command; its client gets 1001 going_away", () =>
    Effect.gen(function* () {
      const [stuckUser, guild, channel] = [newId(), newId(), newId()]
      const hanging = yield* hangingFor(stuckUser)
      const scope = yield* Scope.make()
      const harness = yield* startGateway({}, hanging.services).pipe(Scope.extend(scope))
      const stuck = yield* harness.connectReady(stuckUser, { [guild]: "*" })
      stuck.send({ v: 1, t: "subscribe", d: { guild_id: guild, channel_id: channel } })
      yield* Deferred.await(hanging.entered)
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      expect(yield* stuck.waitClosed()).toEqual({ code: 1001, reason: "going_away" })
      yield* Fiber.join(closing)
      expect(yield* Deferred.isDone(hanging.interrupted)).toBe(true)
    })
  )

  it.scoped(
    "commands piling up behind a hanging call are bounded: one more closes 4013 command_queue_full",
    () =>
      Effect.gen(function* () {
        const [stuckUser, guild, channel] = [newId(), newId(), newId()]
        const hanging = yield* hangingFor(stuckUser)
        const harness = yield* startGateway({ maxPendingCommands: 3 }, hanging.services)
        const stuck = yield* harness.connectReady(stuckUser, { [guild]: "*" })
        const neighbour = yield* harness.connectReady(newId(), { [guild]: "*" })
        yield* neighbour.subscribe(guild, channel)
        const [connection] = yield* harness.serverConnections(stuckUser)
        const before = yield* harness.metric("filament_ws_disconnects_total", {
          reason: "command_queue_full"
        })
        const subscribe = { v: 1, t: "subscribe", d: { guild_id: guild, channel_id: channel } }
        stuck.send(subscribe)
        yield* Deferred.await(hanging.entered)
        // The running command is not queued: the bound holds the three behind it.
        for (let i = 0; i < 3; i++) stuck.send(subscribe)
        yield* eventually("three commands wait", () => connection!.pendingCommands?.length === 3)
        expect(connection!.isOpen).toBe(true)
        stuck.send(subscribe)
        expect(yield* stuck.waitClosed()).toEqual({ code: 4013, reason: "command_queue_full" })
        expect(yield* harness.metric("filament_ws_disconnects_total", { reason: "command_queue_full" })).toBe(
          before + 1
        )
        yield* neighbourServed(harness, neighbour, guild, channel)
      })
  )
})

describe("a command whose ack cannot be built", () => {
  for (const command of ["subscribe", "unsubscribe"] as const) {
    it.scoped(
      `${command}: counted and logged as a build failure, the connection closes 1011 (no defect)`,
      () =>
        Effect.gen(function* () {
          const [user, guild, channel] = [newId(), newId(), newId()]
          const frame = JSON.stringify({ v: 1, t: command, d: { guild_id: guild, channel_id: channel } })
          const messages: Array<string> = []
          const capture = Logger.make(({ message }) => {
            messages.push(String(Array.isArray(message) ? message[0] : message))
          })
          // The cap admits the command exactly; its ack (`subscribed` / `unsubscribed`) is one byte longer.
          const harness = yield* startGateway({ maxEventBytes: Buffer.byteLength(frame) }).pipe(
            Effect.locallyWith(FiberRef.currentLoggers, HashSet.add(capture))
          )
          const client = yield* harness.connectReady(user, { [guild]: "*" })
          const ack = `${command}d`
          const dropped = { scope: "connection", event_type: ack, reason: "oversized_outbound" }
          const droppedBefore = yield* harness.metric("filament_gateway_events_dropped_total", dropped)
          const closedBefore = yield* harness.metric("filament_ws_disconnects_total", {
            reason: "internal_error"
          })
          client.send(frame)
          // The client would wait for the ack for ever: the connection ends instead.
          expect(yield* client.waitClosed()).toEqual({ code: 1011, reason: "internal_error" })
          expect(yield* harness.metric("filament_gateway_events_dropped_total", dropped)).toBe(
            droppedBefore + 1
          )
          expect(yield* harness.metric("filament_ws_disconnects_total", { reason: "internal_error" })).toBe(
            closedBefore + 1
          )
          expect(messages).toContain("gateway.connection_fanout.oversized_outbound")
          expect(messages).not.toContain("gateway.command.defect")
        })
    )
  }
})
