/**
 * The generated contract files are what the generator produces now (`npm run docs` regenerates
 * them), and the catalog's event headings are exactly the manifest.
 */
import { readFileSync } from "node:fs"
import { describe, expect, it } from "vitest"
import { renderEventCatalog } from "../../src/protocol/Catalog.js"
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
})
