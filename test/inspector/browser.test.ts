/**
 * The inspector in a real browser: Debian's chromium driven by playwright-core against a real
 * gateway on port 0 with real `ws` clients. Signs in (a wrong key refused and counted), watches the
 * connection count change, sees a published event in the live tail with `<script>` and HTML in it
 * rendered inert, closes a client from the page (the client's socket sees 4014), publishes from the
 * generated form (a field error shown next to its field), at 1280 px and at phone width. Joined to a
 * real redis-server (when installed), the overview also shows the cluster-wide rates.
 *
 * `INSPECTOR_SCREENSHOTS=1` also writes the screenshots of docs/OPERATIONS.md to docs/inspector/.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Option, Redacted, TestClock } from "effect"
import { mkdirSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { chromium, type Browser, type Page } from "playwright-core"
import { MessageCreate } from "../../src/protocol/events/message.js"
import { joinedBy } from "../cluster/chat.js"
import { hasRedisServer, startRedis } from "../cluster/redis.js"
import { message, newId, startGateway } from "../server/harness.js"
import { ADMIN_KEY } from "./support.js"

const CHROMIUM = "/usr/bin/chromium"
/** Bound on any one page condition (the page polls the overview every 2 s). */
const PAGE_DEADLINE_MS = 10_000
const SCREENSHOTS = process.env["INSPECTOR_SCREENSHOTS"] === "1"
const SCREENSHOT_DIR = fileURLToPath(new URL("../../docs/inspector/", import.meta.url))

const launch = Effect.acquireRelease(
  Effect.promise(() =>
    chromium.launch({
      executablePath: CHROMIUM,
      timeout: 20_000,
      args: [
        "--no-sandbox",
        "--headless",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run"
      ]
    })
  ),
  (browser: Browser) => Effect.promise(() => browser.close())
)

const shot = (page: Page, name: string) =>
  SCREENSHOTS
    ? Effect.promise(async () => {
        mkdirSync(SCREENSHOT_DIR, { recursive: true })
        await page.screenshot({ path: `${SCREENSHOT_DIR}${name}.png`, fullPage: true })
      })
    : Effect.void

const step = <A>(run: () => Promise<A>) => Effect.promise(run)

/** No horizontal scrolling: the view fits the viewport's width. */
const fitsWidth = (page: Page) =>
  step(() => page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth))

const HOSTILE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"><b>bold?</b>'

describe("inspector in a real browser", () => {
  it.scoped(
    "sign in, live counts, live tail (inert payload), close a client with 4014, publish form; 1280 px and phone",
    () =>
      Effect.gen(function* () {
        const harness = yield* startGateway({
          adminKey: Option.some(ADMIN_KEY),
          ...(hasRedisServer ? joinedBy(yield* startRedis) : {})
        })
        const browser = yield* launch
        const context = yield* Effect.acquireRelease(
          step(() => browser.newContext({ viewport: { width: 1280, height: 900 } })),
          (context) => Effect.promise(() => context.close())
        )
        const page = yield* step(() => context.newPage())
        page.setDefaultTimeout(PAGE_DEADLINE_MS)
        const pageErrors: Array<string> = []
        page.on("pageerror", (error) => pageErrors.push(error.message))
        page.on("console", (entry) => {
          // Refused calls (the 401s this test causes, the favicon's 404) are answers, not page errors;
          // a CSP violation or a script error is.
          if (entry.type() === "error" && !entry.text().startsWith("Failed to load resource"))
            pageErrors.push(entry.text())
        })
        page.on("dialog", (dialog) => void dialog.accept())
        const base = `http://127.0.0.1:${harness.port}`

        // A wrong key is refused and counted.
        yield* step(() => page.goto(`${base}/admin`))
        // The form appears once the page's session probe has been refused (counted before it answers).
        yield* step(() => page.locator("#admin-key").waitFor())
        const unauthorized = yield* harness.metric("filament_gateway_admin_requests_total", {
          outcome: "unauthorized"
        })
        yield* step(() => page.fill("#admin-key", "not-the-admin-key-0123456789-0123456789"))
        yield* step(() => page.click("button[type=submit]"))
        yield* step(() => page.getByTestId("login-error").filter({ hasText: "Wrong key." }).waitFor())
        // The wrong key alone (the probe was counted before the baseline).
        expect(
          (yield* harness.metric("filament_gateway_admin_requests_total", { outcome: "unauthorized" })) -
            unauthorized
        ).toBe(1)

        yield* step(() => page.fill("#admin-key", Redacted.value(ADMIN_KEY)))
        yield* step(() => page.click("button[type=submit]"))
        const connections = page.locator('[data-stat="connections"]')
        yield* step(() => connections.filter({ hasText: /^0$/ }).waitFor())
        const cookies = yield* step(() => context.cookies())
        expect(cookies.find((cookie) => cookie.name === "filament_admin")).toMatchObject({
          httpOnly: true,
          sameSite: "Strict"
        })

        // Counts follow real clients.
        const [alice, bob, guild, channel] = [newId(), newId(), newId(), newId()]
        const a = yield* harness.connectReady(alice, { [guild]: "*" })
        const b = yield* harness.connectReady(bob, { [guild]: "*" })
        yield* a.subscribe(guild, channel)
        yield* b.subscribe(guild, channel)
        yield* step(() => connections.filter({ hasText: /^2$/ }).waitFor())
        yield* step(() => page.locator('[data-stat="users-online"]').filter({ hasText: /^2$/ }).waitFor())
        // A few seconds of traffic for the sparklines (the sampler runs on the gateway's Clock).
        for (let second = 0; second < 12; second++) {
          for (let i = 0; i <= second % 4; i++)
            yield* harness.gateway.publish(MessageCreate, message(guild, channel, `tick ${second}.${i}`))
          yield* TestClock.adjust("1 second")
        }
        yield* step(() =>
          page.getByTestId("deliveries").locator("code", { hasText: "message_create" }).first().waitFor()
        )
        if (hasRedisServer) {
          // The cluster-wide rates: one point per 5 s (of the gateway's Clock) at the page's next poll.
          for (let round = 0; round < 3; round++) {
            yield* harness.gateway.publish(MessageCreate, message(guild, channel, `round ${round}`))
            yield* TestClock.adjust("5 seconds")
            yield* step(() =>
              page.waitForResponse((response) => response.url().includes("/admin/api/overview"))
            )
          }
          yield* step(() =>
            page
              .getByTestId("cluster-deliveries")
              .locator("code", { hasText: "message_create" })
              .first()
              .waitFor()
          )
        }
        expect(yield* fitsWidth(page)).toBe(true)
        yield* shot(page, "overview")

        // Live tail: the published payload shows as text, its markup inert.
        yield* step(() => page.click('[data-tab="tail"]'))
        yield* step(() => page.selectOption("#tail-kind", "channel"))
        yield* step(() => page.fill("#tail-first", guild))
        yield* step(() => page.fill("#tail-second", channel))
        yield* step(() => page.click("#tail-start"))
        yield* step(() => page.getByTestId("status").filter({ hasText: "watching" }).waitFor())
        yield* harness.gateway.publish(MessageCreate, message(guild, channel, HOSTILE))
        const event = page.locator('.tail .event[data-type="message_create"]').first()
        yield* step(() => event.waitFor())
        const payloadText = yield* step(() => event.locator("pre.payload").textContent())
        expect(payloadText).toContain(JSON.stringify(HOSTILE).slice(1, -1))
        expect(yield* step(() => event.locator(".meta").textContent())).toMatch(/2 recipients.*valid/)
        expect(yield* step(() => page.locator(".tail script, .tail img, .tail b").count())).toBe(0)
        expect(
          yield* step(() => page.evaluate(() => (window as { __pwned?: number }).__pwned))
        ).toBeUndefined()
        yield* shot(page, "live-tail")

        // Explore: close alice's connection from the page; her socket sees the documented code.
        yield* step(() => page.click('[data-tab="explore"]'))
        yield* step(() => page.getByTestId("top-channels").locator("code", { hasText: channel }).waitFor())
        yield* step(() => page.fill("#user-id", alice))
        yield* step(() => page.click(".lookup button[type=submit]"))
        const row = page.locator("tr[data-connection]")
        yield* step(() => row.first().waitFor())
        yield* shot(page, "explore")
        // Drop her subscription: her connection gets the unsubscribed ack, the row shows none.
        yield* step(() => row.first().locator('[data-action="drop"]').click())
        let ack = yield* a.next()
        while (ack.t !== "unsubscribed") ack = yield* a.next()
        expect(ack.d).toEqual({ guild_id: guild, channel_id: channel })
        yield* step(() => row.first().locator("td", { hasText: "none" }).waitFor())
        yield* step(() => row.first().locator('[data-action="close"]').click())
        expect(yield* a.waitClosed()).toEqual({ code: 4014, reason: "closed_by_admin" })
        yield* step(() => page.getByTestId("status").filter({ hasText: "closed connection" }).waitFor())

        // Publish console: a field error next to its field, then a valid event reaching bob.
        yield* step(() => page.click('[data-tab="publish"]'))
        yield* step(() => page.selectOption("#publish-type", "channel_create"))
        yield* step(() => page.fill('[data-path="guild_id"] input', guild))
        yield* step(() => page.fill('[data-path="channel.channel_id"] input', "not-a-ulid"))
        yield* step(() => page.fill('[data-path="channel.name"] input', "ops"))
        yield* step(() => page.click("#publish-send"))
        const fieldError = page.locator('[data-error-for="channel.channel_id"]')
        yield* step(() => fieldError.filter({ hasText: /.+/ }).waitFor())
        expect(yield* step(() => page.locator('[data-error-for="channel.name"]').textContent())).toBe("")
        yield* shot(page, "publish")
        const channelId = newId()
        yield* step(() => page.fill('[data-path="channel.channel_id"] input', channelId))
        yield* step(() => page.click("#publish-send"))
        yield* step(() => page.getByTestId("publish-outcome").filter({ hasText: "delivered to 1" }).waitFor())
        // Bob has the tail's messages before it; the next channel_create is the console's.
        let created = yield* b.next()
        while (created.t !== "channel_create") created = yield* b.next()
        expect(created.d).toEqual({
          guild_id: guild,
          channel: { channel_id: channelId, name: "ops", kind: "text" }
        })

        // Phone width: every view fits without horizontal scrolling.
        yield* step(() => page.setViewportSize({ width: 390, height: 844 }))
        for (const view of ["overview", "explore", "tail", "publish"]) {
          yield* step(() => page.click(`[data-tab="${view}"]`))
          yield* step(() => page.locator(`[data-view="${view}"]`).waitFor())
          expect(yield* fitsWidth(page)).toBe(true)
          if (view === "overview") {
            yield* step(() => page.locator('[data-stat="connections"]').filter({ hasText: /^1$/ }).waitFor())
            yield* shot(page, "overview-phone")
          }
        }
        expect(pageErrors).toEqual([])
      }),
    60_000
  )
})
