/**
 * `npm start` as a newcomer meets it: dev mode prints a secret, a ready token, the subscribe frame
 * and a publish command; following them works end to end; SIGTERM drains with 1001 and exits 0.
 */
import { spawn } from "node:child_process"
import { describe, expect, it } from "vitest"
import WebSocket from "ws"

const DEADLINE_MS = 15_000

const withoutGatewayKeys = (env: NodeJS.ProcessEnv) =>
  Object.fromEntries(Object.entries(env).filter(([key]) => !key.startsWith("GATEWAY_")))

const within = <A>(label: string, promise: Promise<A>): Promise<A> =>
  Promise.race([
    promise,
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`deadline: ${label}`)), DEADLINE_MS))
  ])

describe("npm start (dev mode)", () => {
  it("prints how to connect; the printed token, frame and publish command work; SIGTERM exits 0", async () => {
    const child = spawn(process.execPath, ["--import", "tsx", "src/server/main.ts"], {
      env: { ...withoutGatewayKeys(process.env), GATEWAY_PORT: "0" },
      stdio: ["ignore", "pipe", "pipe"]
    })
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
    try {
      let output = ""
      child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()))
      const banner = await within(
        "dev banner",
        new Promise<string>((resolve) =>
          child.stdout.on("data", (chunk: Buffer) => {
            output += chunk.toString()
            if (output.includes("publish:") && output.includes("-d '")) resolve(output)
          })
        )
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
          })
        )
      await within("open", new Promise((resolve) => socket.once("open", resolve)))
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

      child.kill("SIGTERM")
      expect(await within("close", closed)).toEqual({ code: 1001, reason: "going_away" })
      expect(await within("exit", exited)).toBe(0)
    } finally {
      child.kill("SIGKILL")
    }
  })
})

describe("npm start (logging)", () => {
  it("GATEWAY_LOG_FORMAT=json, GATEWAY_LOG_LEVEL=debug: every stdout line is one JSON record, debug included", async () => {
    const child = spawn(process.execPath, ["--import", "tsx", "src/server/main.ts"], {
      env: {
        ...withoutGatewayKeys(process.env),
        GATEWAY_PORT: "0",
        GATEWAY_JWT_SECRET: "j".repeat(32),
        GATEWAY_PUBLISH_KEY: "p".repeat(32),
        GATEWAY_LOG_FORMAT: "json",
        GATEWAY_LOG_LEVEL: "debug"
      },
      stdio: ["ignore", "pipe", "pipe"]
    })
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
    try {
      let stdout = ""
      const waiters: Array<() => void> = []
      child.stdout.on("data", (chunk: Buffer) => {
        stdout += chunk.toString()
        waiters.splice(0).forEach((wake) => wake())
      })
      const records = () =>
        stdout
          .split("\n")
          .filter((line) => line !== "")
          .map((line) => JSON.parse(line) as { message: unknown; logLevel: string })
      const recordWith = (text: string) =>
        within(
          text,
          new Promise<{ message: unknown; logLevel: string }>((resolve) => {
            const check = () => {
              const found = stdout.includes(text)
                ? records().find((r) => String(r.message).includes(text))
                : undefined
              if (found) resolve(found)
              else waiters.push(check)
            }
            check()
          })
        )
      const listening = await recordWith("filament-gateway listening on")
      expect(listening.logLevel).toBe("INFO")
      const port = /:(\d+) \(WebSocket/.exec(String(listening.message))?.[1]
      const refused = await within(
        "401",
        new Promise<number>((resolve) => {
          const socket = new WebSocket(`ws://127.0.0.1:${port}/gateway/ws?access_token=not-a-token`)
          socket.once("unexpected-response", (_request, response) => resolve(response.statusCode ?? 0))
          socket.once("error", () => undefined)
        })
      )
      expect(refused).toBe(401)
      expect((await recordWith("gateway.auth.rejected")).logLevel).toBe("DEBUG")
      child.kill("SIGTERM")
      expect(await within("exit", exited)).toBe(0)
      // Every line written, to the last one, is a JSON record.
      expect(records().length).toBeGreaterThanOrEqual(2)
    } finally {
      child.kill("SIGKILL")
    }
  })
})
