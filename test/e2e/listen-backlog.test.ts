/**
 * `GATEWAY_LISTEN_BACKLOG` reaches the kernel: the listening socket's accept-queue limit, as Linux
 * reports it (`ss`: a listening socket's Send-Q is its backlog), is the configured one, capped at
 * `net.core.somaxconn`. CI installs `ss` (iproute2) with the other system packages.
 */
import { execFileSync } from "node:child_process"
import { readFileSync } from "node:fs"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { startGateway } from "../server/harness.js"

/** The accept-queue limit of the socket listening on 127.0.0.1:`port`. */
const listenBacklogOf = (port: number): number => {
  const line = execFileSync("ss", ["-Hltn", `sport = :${port}`], { encoding: "utf8" }).trim()
  // State Recv-Q Send-Q Local Peer, e.g. "LISTEN 0 77 127.0.0.1:40155 0.0.0.0:*"
  const [state, , sendQ] = line.split(/\s+/)
  expect(state).toBe("LISTEN")
  return Number(sendQ)
}

const somaxconn = Number(readFileSync("/proc/sys/net/core/somaxconn", "utf8").trim())

describe("listen backlog", () => {
  it.scoped("the server listens with GATEWAY_LISTEN_BACKLOG, not Node's default of 511", () =>
    Effect.gen(function* () {
      const gateway = yield* startGateway({ listenBacklog: 77 })
      expect(listenBacklogOf(gateway.port)).toBe(77)
    })
  )

  it.scoped("the default asks for 4096; the kernel caps any backlog at net.core.somaxconn", () =>
    Effect.gen(function* () {
      const byDefault = yield* startGateway()
      expect(byDefault.config.listenBacklog).toBe(4096)
      expect(listenBacklogOf(byDefault.port)).toBe(Math.min(4096, somaxconn))
      const above = yield* startGateway({ listenBacklog: somaxconn + 1 })
      expect(listenBacklogOf(above.port)).toBe(somaxconn)
    })
  )
})
