/**
 * Real-time deadlines for tests that wait on real I/O (sockets, child processes, Redis), whatever
 * clock the gateway under test reads: wait until a condition holds (`eventually`,
 * `eventuallyEffect`), or race a promise or an effect against a deadline (`within`,
 * `withinEffect`). Never a fixed sleep; a missed deadline fails the test with its label.
 */
import { Effect } from "effect"

/** Real-time deadline for any awaited socket condition. */
export const DEADLINE_MS = 5_000

const missed = (label: string, deadlineMs: number) => new Error(`deadline: ${label} within ${deadlineMs} ms`)

/** Polls `check` until it holds (every `pollMs`, longer when a check is a request to another process). */
export const eventuallyEffect = <E, R>(
  label: string,
  check: Effect.Effect<boolean, E, R>,
  deadlineMs = DEADLINE_MS,
  pollMs = 2
): Effect.Effect<void, E | Error, R> =>
  Effect.gen(function* () {
    const until = performance.now() + deadlineMs
    for (;;) {
      if (yield* check) return
      if (performance.now() > until) return yield* Effect.fail(missed(label, deadlineMs))
      yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, pollMs)))
    }
  })

/** `eventuallyEffect` for a condition read synchronously. */
export const eventually = (
  label: string,
  check: () => boolean,
  deadlineMs = DEADLINE_MS
): Effect.Effect<void, Error> => eventuallyEffect(label, Effect.sync(check), deadlineMs)

/** Settles as `promise` does, or rejects at the deadline; the timer is cleared either way. */
export const within = <A>(label: string, promise: Promise<A>, deadlineMs = DEADLINE_MS): Promise<A> => {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(missed(label, deadlineMs)), deadlineMs)
    })
  ]).finally(() => clearTimeout(timer))
}

/**
 * `effect`, or a defect at the deadline (real time, even under the TestClock); the loser is
 * interrupted, so an `Effect.async` effect's cleanup (a listener removed) runs either way.
 */
export const withinEffect = <A, E, R>(
  label: string,
  effect: Effect.Effect<A, E, R>,
  deadlineMs = DEADLINE_MS
): Effect.Effect<A, E, R> =>
  Effect.raceFirst(
    effect,
    Effect.async<never>((resume) => {
      const timer = setTimeout(() => resume(Effect.die(missed(label, deadlineMs))), deadlineMs)
      return Effect.sync(() => clearTimeout(timer))
    })
  )
