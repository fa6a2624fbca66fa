/**
 * The client and protocol entry points are isomorphic: bundled for the browser they pull in no Node
 * built-in and no server module. Also measures the client bundle (minified + gzipped).
 */
import { describe, expect, it } from "@effect/vitest"
import { build } from "esbuild"
import type { BuildOptions, Metafile } from "esbuild"
import { readdirSync } from "node:fs"
import { builtinModules } from "node:module"
import { join, relative } from "node:path"
import { fileURLToPath } from "node:url"
import { gzipSync } from "node:zlib"

const root = fileURLToPath(new URL("../..", import.meta.url))

/**
 * Budgets, minified + gzipped. Most of it is effect's Schema runtime and the 37 event schemas the
 * decoder is built from; a callback app does not pay for the Stream runtime of `GatewayConnection`.
 */
const GZIP_BUDGET_BYTES = { callbacks: 128 * 1024, effect: 192 * 1024, entry: 192 * 1024 }

/** What an application imports: the whole entry, or just one of the two connection APIs. */
const apps = {
  entry: 'export * from "./src/client/index.ts"',
  callbacks:
    'import { GatewayClient } from "./src/client/index.ts"\n' +
    'export const client = GatewayClient.make({ url: "wss://chat.example", accessToken: () => "t", on: {} })',
  effect:
    'import { GatewayConnection } from "./src/client/index.ts"\n' +
    'export const events = GatewayConnection.events({ url: "wss://chat.example", accessToken: () => null! })'
} as const

// Node built-ins are marked external so the build succeeds and the metafile names every one used.
const options: BuildOptions = {
  bundle: true,
  platform: "browser",
  format: "esm",
  minify: true,
  write: false,
  metafile: true,
  outdir: "out",
  logLevel: "silent",
  absWorkingDir: root,
  external: ["node:*", ...builtinModules]
}

interface Leaks {
  readonly nodeImports: ReadonlyArray<string>
  readonly forbiddenInputs: ReadonlyArray<string>
}

const leaksOf = (metafile: Metafile): Leaks => ({
  nodeImports: Object.values(metafile.outputs).flatMap((output) =>
    output.imports.filter((entry) => entry.external).map((entry) => entry.path)
  ),
  forbiddenInputs: Object.keys(metafile.inputs).filter(
    (input) => /(^|\/)src\/server\//.test(input) || /(^|\/)node_modules\/ws\//.test(input)
  )
})

const sourcesUnder = (dir: string): Array<string> =>
  readdirSync(join(root, dir), { recursive: true, encoding: "utf8" })
    .filter((file) => file.endsWith(".ts"))
    .map((file) => join(dir, file))

describe("browser bundle", () => {
  it.each(Object.keys(apps) as Array<keyof typeof apps>)(
    "client (%s): no node: import, no server file, minified + gzipped size within budget",
    async (app) => {
      const result = await build({
        ...options,
        stdin: { contents: apps[app], resolveDir: root, loader: "ts", sourcefile: `${app}.ts` }
      })
      expect(leaksOf(result.metafile!)).toEqual({ nodeImports: [], forbiddenInputs: [] })
      expect(Object.keys(result.metafile!.inputs)).toContain("src/client/GatewayClient.ts")
      const code = result.outputFiles![0]!.contents
      const gzipped = gzipSync(code, { level: 9 }).byteLength
      console.log(`client bundle [${app}] (browser, minified): ${code.byteLength} B, gzipped ${gzipped} B`)
      expect(gzipped).toBeLessThan(GZIP_BUDGET_BYTES[app])
    }
  )

  it("package root and every protocol module: no node: import, no server file", async () => {
    const entryPoints = ["src/index.ts", ...sourcesUnder("src/protocol")]
    const result = await build({ ...options, entryPoints })
    expect(leaksOf(result.metafile!)).toEqual({ nodeImports: [], forbiddenInputs: [] })
    for (const entry of entryPoints)
      expect(Object.keys(result.metafile!.inputs)).toContain(relative(".", entry))
  })

  it("detects a Node built-in when one is imported (the check can fail)", async () => {
    const result = await build({
      ...options,
      stdin: {
        contents: 'import { createHash } from "node:crypto"; export const hash = createHash',
        resolveDir: root
      }
    })
    expect(leaksOf(result.metafile!).nodeImports).toEqual(["node:crypto"])
  })
})
