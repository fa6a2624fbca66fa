/**
 * The package as a consumer gets it: built (`tsc -p tsconfig.build.json`), packed with `npm pack`
 * and installed from the tarball with production dependencies only into an empty folder. The build
 * and the pack run in a staging copy (package.json, README and the `files` of package.json), so the
 * repository's own `dist/` — which `npm start` rebuilds — is never written concurrently.
 */
import { execFile } from "node:child_process"
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"

export const root = fileURLToPath(new URL("../..", import.meta.url))

export interface PackageJson {
  readonly main: string
  readonly types: string
  readonly files: ReadonlyArray<string>
  readonly dependencies: Readonly<Record<string, string>>
  readonly devDependencies: Readonly<Record<string, string>>
  readonly exports: Readonly<Record<string, string | { readonly types: string; readonly import: string }>>
}

export const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as PackageJson

const run = promisify(execFile)
export const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc")

export interface Installed {
  /** The folder the tarball was installed into (`node_modules/filament-gateway` inside). */
  readonly consumer: string
  readonly tarball: string
  readonly remove: () => void
}

export const installPacked = async (): Promise<Installed> => {
  const scratch = mkdtempSync(join(tmpdir(), "filament-package-"))
  const stage = join(scratch, "stage")
  const consumer = join(scratch, "consumer")
  for (const entry of ["package.json", "README.md", ...pkg.files.filter((file) => !file.startsWith("!"))]) {
    if (entry !== "dist" && existsSync(join(root, entry)))
      cpSync(join(root, entry), join(stage, entry), { recursive: true })
  }
  await run(
    process.execPath,
    [
      tsc,
      "-p",
      join(root, "tsconfig.build.json"),
      "--outDir",
      join(stage, "dist"),
      "--tsBuildInfoFile",
      join(scratch, "tsbuildinfo")
    ],
    { cwd: root }
  )
  const packed = await run("npm", ["pack", "--ignore-scripts", "--json", "--pack-destination", scratch], {
    cwd: stage
  })
  const tarball = join(scratch, (JSON.parse(packed.stdout) as Array<{ filename: string }>)[0]!.filename)
  mkdirSync(consumer)
  writeFileSync(
    join(consumer, "package.json"),
    JSON.stringify({ name: "consumer", private: true, type: "module" })
  )
  await run("npm", ["install", "--omit=dev", "--no-audit", "--no-fund", "--prefer-offline", tarball], {
    cwd: consumer
  })
  return { consumer, tarball, remove: () => rmSync(scratch, { recursive: true, force: true }) }
}
