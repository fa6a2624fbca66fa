import { spawn } from "node:child_process"
import WebSocket from "ws"
import { Effect, Redacted } from "effect"
import { signToken } from "./src/server/Auth.js"
const t0 = Date.now(); const log = (...a: unknown[]) => console.log(((Date.now()-t0)/1000).toFixed(2), ...a)
const [file, ...args] = process.argv.slice(3)
const child = spawn(file!, args, { env: { ...process.env, GATEWAY_PORT: "0", GATEWAY_JWT_SECRET: "j".repeat(32), GATEWAY_PUBLISH_KEY: "p".repeat(32) }, stdio: ["ignore", "pipe", "pipe"] })
let out = ""
child.stderr.on("data", (c) => log("stderr", String(c)))
child.on("close", (code, sig) => log("close", code, sig))
child.on("exit", (code, sig) => log("exit", code, sig))
child.stdout.on("data", async (c) => {
  out += c
  const m = /listening on http:\/\/127\.0\.0\.1:(\d+) /.exec(out)
  if (!m || (globalThis as any).done) return
  ;(globalThis as any).done = true
  log("listening", m[1])
  const token = await Effect.runPromise(signToken({ secret: Redacted.make("j".repeat(32)), userId: "01ARZ3NDEKTSV4RRFFQ69G5FAV", expiresAt: Math.floor(Date.now() / 1000) + 3600 }))
  const ws = new WebSocket(`ws://127.0.0.1:${m[1]}/gateway/ws?access_token=${token}`)
  ws.on("close", (code, r) => log("ws close", code, String(r)))
  ws.on("message", (d) => { log("frame", String(d).slice(0, 60)); child.kill(process.argv[2] as NodeJS.Signals); log("sent") })
})
setTimeout(() => { log("giving up", out.slice(-300)); child.kill("SIGKILL"); process.exit(1) }, 40000).unref()
