/**
 * A clean package: `npm pack`, installed from the tarball with production dependencies only into an
 * empty folder (no dev tooling arrives), every subpath of package.json `exports` imports in Node
 * ESM, and a consumer importing every subpath type-checks with `skipLibCheck: false` (the public
 * declarations only name types the package's dependencies bring).
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { execFile } from "node:child_process"
import { existsSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { promisify } from "node:util"
import { installPacked, pkg, tsc, type Installed } from "./packed.js"

const run = promisify(execFile)

/** Every subpath, as a consumer writes it: `filament-gateway`, `filament-gateway/client`, … */
const specifiers = Object.keys(pkg.exports).map((subpath) => `filament-gateway${subpath.slice(1)}`)
const isJson = (specifier: string) => specifier.endsWith(".json")

describe("the packed package, installed with production dependencies only", () => {
  let installed: Installed
  beforeAll(async () => {
    installed = await installPacked()
  }, 180_000)
  afterAll(() => installed?.remove())

  const installedPath = (...parts: Array<string>) => join(installed.consumer, "node_modules", ...parts)

  it("main and types point at the root entry; every entry has declarations and ESM JavaScript in the tarball", () => {
    const rootEntry = pkg.exports["."]
    expect(typeof rootEntry === "object" && [rootEntry.import, rootEntry.types]).toEqual([
      pkg.main,
      pkg.types
    ])
    for (const target of Object.values(pkg.exports)) {
      for (const file of typeof target === "string" ? [target] : [target.import, target.types]) {
        expect(existsSync(installedPath("filament-gateway", file)), file).toBe(true)
      }
    }
  })

  it("brings no dev tooling: tsx, esbuild, typescript and vitest are not installed", () => {
    expect(pkg.dependencies).not.toHaveProperty("tsx")
    for (const tool of ["tsx", "esbuild", "typescript", "vitest"]) {
      expect(existsSync(installedPath(tool)), tool).toBe(false)
    }
    // Nor the build's incremental state.
    expect(existsSync(installedPath("filament-gateway", "dist", ".tsbuildinfo"))).toBe(false)
  })

  it("every subpath of exports imports in Node ESM", async () => {
    const script = join(installed.consumer, "import-all.mjs")
    writeFileSync(
      script,
      [
        "const names = {}",
        ...specifiers.map(
          (specifier) =>
            `names[${JSON.stringify(specifier)}] = Object.keys(await import(${JSON.stringify(specifier)}${isJson(specifier) ? ', { with: { type: "json" } }' : ""}))`
        ),
        "console.log(JSON.stringify(names))"
      ].join("\n")
    )
    const { stdout } = await run(process.execPath, [script], { cwd: installed.consumer })
    const names = JSON.parse(stdout) as Record<string, Array<string>>
    expect(Object.keys(names)).toEqual(specifiers)
    for (const specifier of specifiers) expect(names[specifier]!.length, specifier).toBeGreaterThan(0)
  })

  it("a consumer importing every subpath type-checks with skipLibCheck: false", async () => {
    const code = specifiers
      .filter((specifier) => !isJson(specifier))
      .map((specifier, i) => `import * as entry${i} from ${JSON.stringify(specifier)}\nexport { entry${i} }`)
    writeFileSync(join(installed.consumer, "consumer.ts"), code.join("\n") + "\n")
    writeFileSync(
      join(installed.consumer, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          target: "ES2022",
          // effect's own platform declarations name DOM types (Transferable, ImageData).
          lib: ["ES2022", "DOM"],
          module: "NodeNext",
          moduleResolution: "NodeNext",
          strict: true,
          exactOptionalPropertyTypes: true,
          skipLibCheck: false,
          noEmit: true
        },
        files: ["consumer.ts"]
      })
    )
    const checked = await run(process.execPath, [tsc, "-p", installed.consumer], {
      cwd: installed.consumer
    }).then(
      () => "",
      (error: { stdout: string }) => error.stdout
    )
    expect(checked).toBe("")
  }, 120_000)
})
