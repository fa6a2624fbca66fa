/**
 * The generated contract files (docs and the client's decoders) are what the generators produce now
 * (`npm run docs` regenerates them), and the catalog's event headings are exactly the manifest.
 */
import { readFileSync } from "node:fs"
import { describe, expect, it } from "vitest"
import { Schema } from "effect"
import {
  compileDecoder,
  GENERATED_DECODERS_PATH,
  GeneratorError,
  renderClientDecoders
} from "../../scripts/client-decoders.js"
import { ruleFilter } from "../../src/protocol/Refinements.js"
import { renderEventCatalog } from "../../scripts/event-catalog.js"
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

  it(`${GENERATED_DECODERS_PATH} is up to date (run \`npm run docs\`)`, () => {
    const committed = readFileSync(new URL(`../../${GENERATED_DECODERS_PATH}`, import.meta.url), "utf8")
    expect(committed).toBe(renderClientDecoders())
  })

  it.each([
    ["a filter with no rule", Schema.String.pipe(Schema.filter((s) => s.length % 2 === 0))],
    ["a transformation with no rule", Schema.NumberFromString],
    ["a declaration with no rule", Schema.Struct({ at: Schema.DateFromSelf })],
    ["an index signature", Schema.Record({ key: Schema.String, value: Schema.Number })],
    ["a recursive schema", Schema.suspend(() => Schema.String)],
    ["a tuple", Schema.Tuple(Schema.String, Schema.Number)],
    [
      "a union told apart by two literal keys",
      Schema.Union(
        Schema.Struct({ a: Schema.Literal("x"), n: Schema.Number }),
        Schema.Struct({ b: Schema.Literal("y"), s: Schema.String })
      )
    ]
  ])("the decoder generator fails loudly on %s", (_name, schema) => {
    expect(() => compileDecoder(schema, "tolerant")).toThrow(GeneratorError)
  })

  it("the decoder generator compiles a rule filter and the built-in filters", () => {
    const schema = Schema.Struct({
      name: Schema.String.pipe(
        Schema.minLength(1),
        Schema.maxLength(8),
        ruleFilter("trimmedLength", [8, "m"])
      )
    })
    expect(compileDecoder(schema, "strict")).toContain(`FILTER_RULES.trimmedLength(v as never, 8, "m")`)
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
