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
 * Budgets, minified + gzipped. The callback client (`filament-gateway/client`) carries the generated
 * decoders of every event and the reconnecting connection, and no Effect: the original web client's
 * hand-written gateway code is 8.3 KB measured this way, socket.io-client 13.8 KB, centrifuge 23.8 KB.
 * The Effect API (`filament-gateway/client/effect`) is measured as what it adds to an app that
 * already bundles `effect` (all of it, so only the SDK's own code counts).
 */
const GZIP_BUDGET_BYTES = { callbacks: 16 * 1024, entry: 16 * 1024, effectMarginal: 16 * 1024 }

/** What an application imports: the whole callback entry, or the callback client alone. */
const apps = {
  entry: 'export * from "./src/client/index.ts"',
  callbacks:
    'import { GatewayClient } from "./src/client/index.ts"\n' +
    'export const client = GatewayClient.make({ url: "wss://chat.example", accessToken: () => "t", on: {} })'
} as const

/** An app that bundles all of `effect`, without and with the Effect entry of the client. */
const effectApps = {
  baseline: 'export * from "effect"',
  withClient:
    'export * from "effect"\n' +
    'import { GatewayConnection } from "./src/client/effect.ts"\n' +
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

const leaksOf = (metafile: Metafile, forbidden: RegExp = /$^/): Leaks => ({
  nodeImports: Object.values(metafile.outputs).flatMap((output) =>
    output.imports.filter((entry) => entry.external).map((entry) => entry.path)
  ),
  forbiddenInputs: Object.keys(metafile.inputs).filter(
    (input) =>
      /(^|\/)src\/server\//.test(input) || /(^|\/)node_modules\/ws\//.test(input) || forbidden.test(input)
  )
})

const sourcesUnder = (dir: string): Array<string> =>
  readdirSync(join(root, dir), { recursive: true, encoding: "utf8" })
    .filter((file) => file.endsWith(".ts"))
    .map((file) => join(dir, file))

const bundle = async (contents: string, name: string) => {
  const result = await build({
    ...options,
    stdin: { contents, resolveDir: root, loader: "ts", sourcefile: `${name}.ts` }
  })
  const code = result.outputFiles![0]!.contents
  return {
    metafile: result.metafile!,
    minified: code.byteLength,
    gzipped: gzipSync(code, { level: 9 }).byteLength
  }
}

/** Any module of the `effect` package (or its platform packages). */
const EFFECT_INPUT = /(^|\/)node_modules\/(effect|@effect)\//

describe("browser bundle", () => {
  it.each(Object.keys(apps) as Array<keyof typeof apps>)(
    "client (%s): no node: import, no server file, no effect module, minified + gzipped size within budget",
    async (app) => {
      const { metafile, minified, gzipped } = await bundle(apps[app], app)
      expect(leaksOf(metafile, EFFECT_INPUT)).toEqual({ nodeImports: [], forbiddenInputs: [] })
      expect(Object.keys(metafile.inputs)).toContain("src/client/GatewayClient.ts")
      expect(Object.keys(metafile.inputs)).toContain("src/client/generated/decoders.ts")
      console.log(`client bundle [${app}] (browser, minified): ${minified} B, gzipped ${gzipped} B`)
      expect(gzipped).toBeLessThan(GZIP_BUDGET_BYTES[app])
    }
  )

  it("client/effect: what the Effect API adds to an app that already bundles effect, within budget", async () => {
    const baseline = await bundle(effectApps.baseline, "baseline")
    const withClient = await bundle(effectApps.withClient, "withClient")
    expect(leaksOf(withClient.metafile)).toEqual({ nodeImports: [], forbiddenInputs: [] })
    expect(Object.keys(withClient.metafile.inputs)).toContain("src/client/GatewayConnection.ts")
    const marginal = withClient.gzipped - baseline.gzipped
    console.log(
      `client bundle [effect] (browser, minified): all of effect ${baseline.minified} B, gzipped ${baseline.gzipped} B; ` +
        `with client/effect ${withClient.minified} B, gzipped ${withClient.gzipped} B; ` +
        `marginal ${withClient.minified - baseline.minified} B, gzipped ${marginal} B`
    )
    expect(marginal).toBeGreaterThan(0)
    expect(marginal).toBeLessThan(GZIP_BUDGET_BYTES.effectMarginal)
  })

  it("detects an effect module when one is bundled (the no-Effect check can fail)", async () => {
    const { metafile } = await bundle('export { Either } from "effect"', "either")
    expect(leaksOf(metafile, EFFECT_INPUT).forbiddenInputs.length).toBeGreaterThan(0)
  })

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
