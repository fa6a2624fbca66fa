/**
 * Packaging: `npm run build` (tsc -p tsconfig.build.json) emits ESM JavaScript and `.d.ts` for every
 * entry point of package.json `exports`, and the built entries load in Node.
 * Built into a scratch directory under node_modules/.cache (so `effect` still resolves), not dist/.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { createRequire } from "node:module"
import { join } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"

const root = fileURLToPath(new URL("../..", import.meta.url))
const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as {
  readonly main: string
  readonly types: string
  readonly exports: Record<string, string | { readonly types: string; readonly import: string }>
}
const entries = Object.entries(pkg.exports).flatMap(([name, target]) =>
  typeof target === "string" ? [] : [{ name, ...target }]
)

/** The source file tsc compiles to a `./dist/...js` target. */
const sourceOf = (target: string) => join(root, target.replace(/^\.\/dist\//, "src/").replace(/\.js$/, ".ts"))

describe("package entry points", () => {
  let outDir: string
  beforeAll(() => {
    const cache = join(root, "node_modules", ".cache")
    mkdirSync(cache, { recursive: true })
    outDir = mkdtempSync(join(cache, "filament-build-"))
    const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc")
    execFileSync(process.execPath, [tsc, "-p", join(root, "tsconfig.build.json"), "--outDir", outDir], {
      cwd: root,
      stdio: "pipe"
    })
  }, 120_000)
  afterAll(() => rmSync(outDir, { recursive: true, force: true }))

  const built = (target: string) => join(outDir, target.replace(/^\.\/dist\//, ""))

  it("exports ., ./protocol, ./server, ./client and ./client/effect with types, and main/types point at the root entry", () => {
    expect(entries.map((entry) => entry.name)).toEqual([
      ".",
      "./protocol",
      "./server",
      "./client",
      "./client/effect"
    ])
    const rootEntry = entries.find((entry) => entry.name === ".")!
    expect([pkg.main, pkg.types]).toEqual([rootEntry.import, rootEntry.types])
  })

  // `./protocol` and `./server` need src/protocol/index.ts and src/server/index.ts from their owners;
  // until those exist these cases report as skipped, not passed.
  describe.each(entries)("$name", ({ import: js, types }) => {
    it.skipIf(!existsSync(sourceOf(js)))(
      "builds to ESM JavaScript and declarations that load in Node",
      async () => {
        expect(existsSync(built(js))).toBe(true)
        expect(existsSync(built(types))).toBe(true)
        const module = (await import(pathToFileURL(built(js)).href)) as Record<string, unknown>
        expect(Object.keys(module).length).toBeGreaterThan(0)
      }
    )
  })

  it("the client entry exposes the SDK modules", async () => {
    const client = (await import(pathToFileURL(built("./dist/client/index.js")).href)) as Record<
      string,
      unknown
    >
    expect(Object.keys(client).sort()).toEqual(["Decode", "Dispatch", "GatewayClient"])
    const effect = (await import(pathToFileURL(built("./dist/client/effect.js")).href)) as Record<
      string,
      unknown
    >
    expect(Object.keys(effect)).toEqual(["GatewayConnection"])
  })
})
