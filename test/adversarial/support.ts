/**
 * Adversarial helpers: raw TCP peers that speak (or trickle, or withhold) HTTP, and a deadline-bound
 * wait for a condition that only the server side can observe. No fixed sleeps: every wait ends on
 * the awaited event or fails at its deadline.
 */
import { connect, type Socket } from "node:net"
import { Effect } from "effect"

export interface RawAnswer {
  /** HTTP status of the answer; 0 when the server closed without answering. */
  readonly status: number
  readonly head: string
  readonly body: string
  /** Real milliseconds from connect to the server closing the socket. */
  readonly elapsedMs: number
}

/**
 * Opens a TCP connection, lets `drive` write to it (possibly slowly, possibly nothing), and resolves
 * when the server closes it, with whatever the server answered.
 */
export const rawExchange = (
  port: number,
  drive: (socket: Socket) => void | (() => void),
  deadlineMs = 5_000
): Effect.Effect<RawAnswer> =>
  Effect.promise(
    () =>
      new Promise<RawAnswer>((resolve, reject) => {
        const started = performance.now()
        const chunks: Array<Buffer> = []
        let stop: void | (() => void)
        const socket = connect(port, "127.0.0.1", () => {
          stop = drive(socket)
        })
        const timer = setTimeout(() => {
          stop?.()
          socket.destroy()
          reject(new Error(`deadline: server did not close the socket within ${deadlineMs} ms`))
        }, deadlineMs)
        socket.on("data", (chunk) => chunks.push(chunk))
        socket.on("error", () => undefined)
        socket.on("close", () => {
          clearTimeout(timer)
          stop?.()
          const text = Buffer.concat(chunks).toString("utf8")
          const [head = "", body = ""] = text.split("\r\n\r\n", 2)
          const status = /^HTTP\/1\.1 (\d{3})/.exec(head)
          resolve({
            status: status === null ? 0 : Number(status[1]),
            head,
            body,
            elapsedMs: performance.now() - started
          })
        })
      })
  )

/** Writes `pieces` one every `everyMs` while the socket is writable (a slowloris peer). */
export const trickle =
  (first: string, piece: string, everyMs: number) =>
  (socket: Socket): (() => void) => {
    socket.write(first)
    const interval = setInterval(() => {
      if (socket.writable) socket.write(piece)
    }, everyMs)
    return () => clearInterval(interval)
  }

/** Waits (real time, bounded) until `check` holds; polls on the event loop's check phase. */
export const eventually = (label: string, check: () => boolean, deadlineMs = 5_000): Effect.Effect<void> =>
  Effect.promise(
    () =>
      new Promise<void>((resolve, reject) => {
        const until = performance.now() + deadlineMs
        const poll = () => {
          if (check()) return resolve()
          if (performance.now() > until)
            return reject(new Error(`deadline: ${label} within ${deadlineMs} ms`))
          setTimeout(poll, 2)
        }
        poll()
      })
  )

/** Like `eventually`, for a condition read through an Effect (e.g. the registry state). */
export const eventuallyEffect = <E, R>(
  label: string,
  check: Effect.Effect<boolean, E, R>,
  deadlineMs = 5_000,
  /** Between checks; longer when a check is a request to another process. */
  pollMs = 2
): Effect.Effect<void, E | Error, R> =>
  Effect.gen(function* () {
    const until = performance.now() + deadlineMs
    for (;;) {
      if (yield* check) return
      if (performance.now() > until) return yield* Effect.fail(new Error(`deadline: ${label}`))
      yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, pollMs)))
    }
  })

/** Sum of every series of a counter family in a `/metrics` text. */
export const familySum = (text: string, name: string): number => {
  let sum = 0
  for (const line of text.split("\n")) {
    if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) sum += Number(line.split(" ").pop())
  }
  return sum
}
