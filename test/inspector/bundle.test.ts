/**
 * The page the gateway serves is the committed `bundle.generated.ts`: it must be what
 * `npm run build:inspector` builds from `page/app.ts` and `page/style.css` now, and stay small.
 */
import { describe, expect, it } from "@effect/vitest"
import { readFileSync } from "node:fs"
import { gzipSync } from "node:zlib"
import { GENERATED_PATH, renderInspectorBundle } from "../../scripts/build-inspector.js"
import { APP_CSS, APP_JS } from "../../src/server/inspector/page/bundle.generated.js"

/** Minified + gzipped script and style together. */
const GZIP_BUDGET_BYTES = 16 * 1024

describe("inspector page bundle", () => {
  it("is up to date (run `npm run build:inspector`)", async () => {
    expect(readFileSync(GENERATED_PATH, "utf8")).toBe(await renderInspectorBundle())
  })

  it("stays within its size budget and names no other origin", () => {
    expect(gzipSync(APP_JS + APP_CSS).length).toBeLessThan(GZIP_BUDGET_BYTES)
    // The only absolute URL is the SVG namespace (an identifier, never fetched).
    expect([...APP_JS.matchAll(/https?:\/\/[^"'`\s]+/g)].map((match) => match[0])).toEqual([
      "http://www.w3.org/2000/svg"
    ])
    expect(APP_JS).not.toContain("innerHTML")
  })
})
