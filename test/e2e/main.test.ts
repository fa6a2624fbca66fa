/**
 * The documented start commands, spawned exactly as written — `npm start` (README) and the production
 * command `node dist/server/main.js` (OPERATIONS.md) — and signalled as a supervisor, a container
 * runtime or a terminal would: the PID the test holds gets SIGTERM / SIGINT, every client gets 1001,
 * the process exits 0 and the port is free again. Dev mode prints how to connect, and following it
 * works. A startup failure prints one line naming the key or resource and exits 1.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process"
import { once } from "node:events"
import { createServer, type Server } from "node:net"
import { promisify } from "node:util"
import { Effect, Redacted } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import WebSocket from "ws"
import { signToken } from "../../src/server/Auth.js"
import { within } from "../deadline.js"

/** Deadline for one awaited condition; `npm start` builds first (tsc), so startup gets longer. */
const DEADLINE_MS = 15_000
const STARTUP_DEADLINE_MS = 90_000
const TEST_TIMEOUT_MS = 150_000

const NPM_START = ["npm", "start"] as const
const PRODUCTION = ["node", "dist/server/main.js"] as const
type Command = typeof NPM_START | typeof PRODUCTION

const JWT_SECRET = "j".repeat(32)
const PUBLISH_KEY = "p".repeat(32)

const withoutGatewayKeys = (env: NodeJS.ProcessEnv) =>
  Object.fromEntries(Object.entries(env).filter(([key]) => !key.startsWith("GATEWAY_")))

interface Started {
  readonly child: ChildProcess
  /** stdout and stderr so far. */
  readonly output: () => { readonly stdout: string; readonly stderr: string }
  /** Resolves with everything written so far once `check` holds for it. */
  readonly waitFor: (
    label: string,
    check: (stdout: string) => boolean,
    deadlineMs?: number
  ) => Promise<string>
  readonly exited: Promise<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>
}

const children = new Set<ChildProcess>()
// Each command runs in its own process group, so a failed test leaves no gateway behind npm.
afterAll(() => children.forEach((child) => process.kill(-child.pid!, "SIGKILL")))

/** Spawns `command` in the repository (its own process group), with no GATEWAY_* key but those given. */
const launch = ([file, ...args]: Command, env: Readonly<Record<string, string>>): Started => {
  const child = spawn(file, args, {
    env: { ...withoutGatewayKeys(process.env), ...env },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true
  })
  children.add(child)
  let stdout = ""
  let stderr = ""
  const waiters = new Set<() => void>()
  const wake = () => waiters.forEach((waiter) => waiter())
  child.stdout!.on("data", (chunk: Buffer) => {
    stdout += chunk.toString()
    wake()
  })
  child.stderr!.on("data", (chunk: Buffer) => {
    stderr += chunk.toString()
    wake()
  })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("close", (code, signal) => {
      children.delete(child)
      resolve({ code, signal })
    })
  )
  const waitFor: Started["waitFor"] = (label, check, deadlineMs = DEADLINE_MS) =>
    within(
      `${label} (output so far: ${stdout.slice(-500)} ${stderr.slice(-500)})`,
      new Promise<string>((resolve) => {
        const waiter = () => {
          if (!check(stdout)) return
          waiters.delete(waiter)
          resolve(stdout)
        }
        waiters.add(waiter)
        waiter()
      }),
      deadlineMs
    )
  return { child, output: () => ({ stdout, stderr }), waitFor, exited }
}

/** The port from the startup log line. */
const listeningPort = async (started: Started) => {
  const stdout = await started.waitFor(
    "listening",
    (text) => /listening on http:\/\/127\.0\.0\.1:\d+ /.test(text),
    STARTUP_DEADLINE_MS
  )
  return Number(/listening on http:\/\/127\.0\.0\.1:(\d+) /.exec(stdout)![1])
}

/** Listening on the port succeeds: the gateway released it. */
const expectPortFree = async (port: number) => {
  const server = createServer()
  server.listen(port, "127.0.0.1")
  await within("listen on the released port", once(server, "listening"), DEADLINE_MS)
  server.close()
}

const openClient = async (port: number) => {
  const token = await Effect.runPromise(
    signToken({
      secret: Redacted.make(JWT_SECRET),
      userId: "01ARZ3NDEKTSV4RRFFQ69G5FAV",
      expiresAt: Math.floor(Date.now() / 1000) + 3600
    })
  )
  const socket = new WebSocket(`ws://127.0.0.1:${port}/gateway/ws?access_token=${token}`)
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    socket.once("close", (code, reason) => resolve({ code, reason: reason.toString() }))
  )
  const ready = new Promise<void>((resolve) =>
    socket.on("message", (data) => {
      if ((JSON.parse(data.toString()) as { t: string }).t === "ready") resolve()
    })
  )
  await within("ready", ready, DEADLINE_MS)
  // Wrapped: an async function returning the promise itself would wait for the close.
  return { closed }
}

const execFileAsync = promisify(execFile)

describe("documented start commands", () => {
  // The production command runs what `npm run build` emitted (`npm start` builds by itself).
  beforeAll(() => execFileAsync("npm", ["run", "build"], { env: withoutGatewayKeys(process.env) }), 120_000)

  it(
    "npm start (dev mode) prints how to connect; the printed token, frame and publish command work; SIGTERM drains and exits 0",
    async () => {
      const started = launch(NPM_START, { GATEWAY_PORT: "0" })
      const banner = await started.waitFor(
        "dev banner",
        (text) => text.includes("publish:") && text.includes("-d '"),
        STARTUP_DEADLINE_MS
      )
      const url = /(ws:\/\/\S+\/gateway\/ws\?access_token=\S+)/.exec(banner)?.[1]
      const subscribe = /then send: (\{.*\})/.exec(banner)?.[1]
      const publishKey = /GATEWAY_PUBLISH_KEY=(\S+)/.exec(banner)?.[1]
      const body = /-d '(\{.*\})'/.exec(banner)?.[1]
      expect(banner).toContain("DEV MODE")
      expect([url, subscribe, publishKey, body].every((value) => value !== undefined)).toBe(true)

      const socket = new WebSocket(url!)
      const frames: Array<{ t: string; d: Record<string, unknown> }> = []
      const waiters: Array<() => void> = []
      socket.on("message", (data) => {
        frames.push(JSON.parse(data.toString()))
        waiters.splice(0).forEach((wake) => wake())
      })
      const closed = new Promise<{ code: number; reason: string }>((resolve) =>
        socket.once("close", (code, reason) => resolve({ code, reason: reason.toString() }))
      )
      const frameOfType = (t: string) =>
        within(
          t,
          new Promise<{ t: string; d: Record<string, unknown> }>((resolve) => {
            const check = () => {
              const found = frames.find((frame) => frame.t === t)
              if (found) resolve(found)
              else waiters.push(check)
            }
            check()
          }),
          DEADLINE_MS
        )
      await within("open", new Promise((resolve) => socket.once("open", resolve)), DEADLINE_MS)
      expect((await frameOfType("ready")).t).toBe("ready")
      socket.send(subscribe!)
      await frameOfType("subscribed")

      const base = new URL(url!.replace("ws://", "http://")).origin
      const response = await fetch(`${base}/v1/publish`, {
        method: "POST",
        headers: { authorization: `Bearer ${publishKey}`, "content-type": "application/json" },
        body: body!
      })
      expect(response.status).toBe(202)
      expect(await response.json()).toEqual({ recipients: 1 })
      expect((await frameOfType("channel_create")).d).toEqual(JSON.parse(body!).d)
      const metrics = await (await fetch(`${base}/metrics`)).text()
      expect(metrics).toMatch(
        /^filament_gateway_events_emitted_total\{scope="guild",event_type="channel_create"\} 1$/m
      )

      started.child.kill("SIGTERM")
      expect(await within("close", closed, DEADLINE_MS)).toEqual({ code: 1001, reason: "going_away" })
      expect(await within("exit", started.exited, DEADLINE_MS)).toEqual({ code: 0, signal: null })
      await expectPortFree(Number(new URL(base).port))
    },
    TEST_TIMEOUT_MS
  )

  const production = { GATEWAY_PORT: "0", GATEWAY_JWT_SECRET: JWT_SECRET, GATEWAY_PUBLISH_KEY: PUBLISH_KEY }

  describe.each([
    { name: "npm start", command: NPM_START, signal: "SIGINT" as const },
    { name: "node dist/server/main.js", command: PRODUCTION, signal: "SIGTERM" as const },
    { name: "node dist/server/main.js", command: PRODUCTION, signal: "SIGINT" as const }
  ])("$name", ({ command, signal }) => {
    it(
      `${signal} to its PID drains: the client gets 1001, the process exits 0, the port is released`,
      async () => {
        const started = launch(command, production)
        const port = await listeningPort(started)
        const { closed } = await openClient(port)
        started.child.kill(signal)
        expect(await within("close", closed, DEADLINE_MS)).toEqual({ code: 1001, reason: "going_away" })
        expect(await within("exit", started.exited, DEADLINE_MS)).toEqual({ code: 0, signal: null })
        await expectPortFree(port)
      },
      TEST_TIMEOUT_MS
    )
  })

  // Ctrl-C in a terminal signals the whole foreground process group: the gateway gets the
  // terminal's SIGINT and then npm's forwarded copy, during its drain.
  it(
    "npm start: SIGINT to its process group (Ctrl-C) drains once: 1001, exit 0, port released",
    async () => {
      const started = launch(NPM_START, production)
      const port = await listeningPort(started)
      const { closed } = await openClient(port)
      process.kill(-started.child.pid!, "SIGINT")
      expect(await within("close", closed, DEADLINE_MS)).toEqual({ code: 1001, reason: "going_away" })
      expect(await within("exit", started.exited, DEADLINE_MS)).toEqual({ code: 0, signal: null })
      await expectPortFree(port)
    },
    TEST_TIMEOUT_MS
  )

  it(
    "GATEWAY_LOG_FORMAT=json, GATEWAY_LOG_LEVEL=debug: every stdout line is one JSON record, debug included; a retired key still set is named",
    async () => {
      const started = launch(PRODUCTION, {
        ...production,
        GATEWAY_LOG_FORMAT: "json",
        GATEWAY_LOG_LEVEL: "debug",
        // Retired: the gateway starts and names it.
        GATEWAY_PRESENCE_BURST: "8"
      })
      const records = () =>
        started
          .output()
          .stdout.split("\n")
          .filter((line) => line !== "")
          .map((line) => JSON.parse(line) as { message: unknown; logLevel: string })
      const recordWith = async (text: string) => {
        await started.waitFor(text, (stdout) => stdout.includes(text) && stdout.endsWith("\n"))
        return records().find((record) => String(record.message).includes(text))!
      }
      const listening = await recordWith("filament-gateway listening on")
      expect(listening.logLevel).toBe("INFO")
      const retired = await recordWith("config.retired_key")
      expect(retired.logLevel).toBe("WARN")
      expect(retired.message).toBe(
        "config.retired_key: GATEWAY_PRESENCE_BURST is ignored (replaced by GATEWAY_PRESENCE_WRITES_PER_SEC)"
      )
      const port = /:(\d+) \(WebSocket/.exec(String(listening.message))?.[1]
      const refused = await within(
        "401",
        new Promise<number>((resolve) => {
          const socket = new WebSocket(`ws://127.0.0.1:${port}/gateway/ws?access_token=not-a-token`)
          socket.once("unexpected-response", (_request, response) => resolve(response.statusCode ?? 0))
          socket.once("error", () => undefined)
        }),
        DEADLINE_MS
      )
      expect(refused).toBe(401)
      expect((await recordWith("gateway.auth.rejected")).logLevel).toBe("DEBUG")
      started.child.kill("SIGTERM")
      expect(await within("exit", started.exited, DEADLINE_MS)).toEqual({ code: 0, signal: null })
      // Every line written, to the last one, is a JSON record.
      expect(records().length).toBeGreaterThanOrEqual(2)
    },
    TEST_TIMEOUT_MS
  )

  describe("a startup failure is one line on stderr naming the key or resource, and exit 1", () => {
    const REDIS_PASSWORD = "hunter2-do-not-print"
    let occupied: Server
    let occupiedPort: number
    beforeAll(async () => {
      occupied = createServer()
      occupied.listen(0, "127.0.0.1")
      await once(occupied, "listening")
      occupiedPort = (occupied.address() as { port: number }).port
    })
    afterAll(() => occupied.close())

    const cases: ReadonlyArray<{
      readonly name: string
      readonly env: () => Record<string, string>
      readonly lines: () => ReadonlyArray<string>
    }> = [
      {
        name: "an unreachable Redis (its password is not printed)",
        env: () => ({
          ...production,
          GATEWAY_REDIS_URL: `redis://gateway:${REDIS_PASSWORD}@127.0.0.1:1/0`,
          GATEWAY_BUS_SECRET: "b".repeat(32)
        }),
        lines: () => [
          "cannot reach Redis at redis://127.0.0.1:1/0 (GATEWAY_REDIS_URL): connect ECONNREFUSED 127.0.0.1:1"
        ]
      },
      {
        name: "a port in use",
        env: () => ({ ...production, GATEWAY_PORT: String(occupiedPort) }),
        lines: () => [
          `cannot listen on 127.0.0.1:${occupiedPort} (GATEWAY_HOST, GATEWAY_PORT): address already in use (EADDRINUSE)`
        ]
      },
      {
        name: "a value over its cap",
        env: () => ({ GATEWAY_MAX_EVENT_BYTES: "70000" }),
        lines: () => [
          'invalid configuration: GATEWAY_MAX_EVENT_BYTES must be an integer between 1 and 65536 (got "70000")'
        ]
      },
      {
        name: "a short secret (its length, not its value)",
        env: () => ({ GATEWAY_JWT_SECRET: "short-secret" }),
        lines: () => ["invalid configuration: GATEWAY_JWT_SECRET must be at least 32 characters (got 12)"]
      },
      {
        name: "several bad values at once: one line per key",
        env: () => ({
          GATEWAY_PORT: "http",
          GATEWAY_OUTBOUND_QUEUE: "0",
          GATEWAY_PING_INTERVAL_SECS: "-1",
          GATEWAY_LOG_FORMAT: "xml"
        }),
        lines: () => [
          'invalid configuration: GATEWAY_PORT must be 0 (any free port) or a port number (1-65535) (got "http")',
          'invalid configuration: GATEWAY_OUTBOUND_QUEUE must be a positive integer (got "0")',
          'invalid configuration: GATEWAY_PING_INTERVAL_SECS must be a positive number of seconds (got "-1")',
          'invalid configuration: GATEWAY_LOG_FORMAT must be pretty, logfmt or json (got "xml")'
        ]
      },
      {
        name: "keys that only work together",
        env: () => ({ GATEWAY_REDIS_URL: "redis://127.0.0.1:6379" }),
        lines: () => [
          "invalid configuration: GATEWAY_BUS_SECRET is required when GATEWAY_REDIS_URL is set (bus messages are HMAC-signed)"
        ]
      }
    ]

    it.each(cases)("node dist/server/main.js: $name", async ({ env, lines }) => {
      const started = launch(PRODUCTION, env())
      expect(await within("exit", started.exited, DEADLINE_MS)).toEqual({ code: 1, signal: null })
      const { stderr, stdout } = started.output()
      expect(stderr).toBe(
        lines()
          .map((line) => `filament-gateway: ${line}\n`)
          .join("")
      )
      expect(stdout).toBe("")
      expect(stderr + stdout).not.toContain(REDIS_PASSWORD)
    })

    it(
      "npm start: the same line, and npm exits non-zero",
      async () => {
        const { env, lines } = cases[0]!
        const started = launch(NPM_START, env())
        const { code } = await within("exit", started.exited, STARTUP_DEADLINE_MS)
        expect(code).not.toBe(0)
        const { stderr, stdout } = started.output()
        expect(stderr.split("\n")).toContain(`filament-gateway: ${lines()[0]}`)
        expect(stderr + stdout).not.toContain(REDIS_PASSWORD)
      },
      TEST_TIMEOUT_MS
    )
  })
})
