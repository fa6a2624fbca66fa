/**
 * The generated contract files are what the generator produces now (`npm run docs` regenerates
 * them), and the catalog's event headings are exactly the manifest.
 */
import { readFileSync } from "node:fs"
import { describe, expect, it } from "vitest"
import { renderEventCatalog } from "../../src/protocol/Catalog.js"
import { CLOSE_CODES } from "../../src/protocol/CloseCodes.js"
import { Manifest, renderJsonManifest } from "../../src/protocol/Manifest.js"

const doc = (name: string) => readFileSync(new URL(`../../docs/${name}`, import.meta.url), "utf8")

describe("generated docs", () => {
  it("docs/gateway-events.manifest.json is up to date (run `npm run docs`)", () => {
    expect(doc("gateway-events.manifest.json")).toBe(renderJsonManifest())
  })

  it("docs/GATEWAY_EVENTS.md is up to date (run `npm run docs`)", () => {
    expect(doc("GATEWAY_EVENTS.md")).toBe(renderEventCatalog())
  })

  it("has one event heading per manifest entry, active events before the deprecated section", () => {
    const catalog = renderEventCatalog()
    const headings = [...catalog.matchAll(/^### `([a-z0-9_.]+)`$/gm)].map((match) => match[1])
    expect(headings).toEqual(Manifest.events.map((event) => event.type))
    const deprecatedSection = catalog.slice(catalog.indexOf("## Deprecated events"))
    expect(deprecatedSection).toContain("### `workspace_channel_override_update`")
    expect(deprecatedSection.indexOf("### `workspace_channel_override_update`")).toBeLessThan(
      deprecatedSection.indexOf("## Shared shapes")
    )
  })

  it("the JSON manifest parses and lists every event", () => {
    const parsed = JSON.parse(doc("gateway-events.manifest.json")) as {
      events: Array<{ event_type: string }>
    }
    expect(parsed.events.map((event) => event.event_type)).toEqual(Manifest.events.map((event) => event.type))
  })

  it("PROTOCOL.md and OPERATIONS.md list every close code the server sends, with the same code", () => {
    // Rows `| <code> | `reason`, `reason` | …` of a section's tables.
    const rows = (text: string, heading: string) => {
      const section = text.slice(text.indexOf(heading), text.indexOf("\n## ", text.indexOf(heading) + 1))
      const listed = new Map<string, number>()
      for (const match of section.matchAll(/^\| (\d{4}) +\| ([^|]+)\|/gm))
        for (const reason of match[2]!.matchAll(/`([a-z_]+)`/g)) listed.set(reason[1]!, Number(match[1]))
      return listed
    }
    const protocol = rows(doc("PROTOCOL.md"), "## Close codes")
    const operations = rows(doc("OPERATIONS.md"), "## Close codes and HTTP statuses")
    for (const { code, reason } of CLOSE_CODES) {
      expect(protocol.get(reason), `PROTOCOL.md: ${reason}`).toBe(code)
      // `normal` is never sent and `client_close` is the client's own code, echoed.
      if (reason !== "normal" && reason !== "client_close")
        expect(operations.get(reason), `OPERATIONS.md: ${reason}`).toBe(code)
    }
    expect([...operations.keys()].every((reason) => protocol.has(reason))).toBe(true)
  })
})
