/**
 * The parity property (test/protocol/parity.ts) catches a broken generator: each mutant of the
 * generated source (one kind of check no longer emitted, or one check dropped at one place) is loaded
 * as a module and must disagree with Effect Schema somewhere, within the neighbourhood runs the
 * parity test itself uses.
 */
import { FastCheck as fc } from "effect"
import { build } from "esbuild"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import { renderClientDecoders } from "../../scripts/client-decoders.js"
import { NEIGHBOURHOOD_RUNS, neighbourhood, parity, TARGETS, type GeneratedModule } from "./parity.js"

describe("the parity property catches a mutant of the generator", () => {
  /** Loads generated source (after `mutate`) as a module, bundled with its rule imports. */
  const load = async (source: string): Promise<GeneratedModule> => {
    const result = await build({
      stdin: {
        contents: source,
        loader: "ts",
        resolveDir: fileURLToPath(new URL("../../src/client/generated/", import.meta.url))
      },
      bundle: true,
      format: "iife",
      globalName: "generated",
      write: false,
      logLevel: "silent"
    })
    return new Function(`${result.outputFiles[0]!.text}; return generated`)() as GeneratedModule
  }

  const source = renderClientDecoders()
  const catches = async (mutate: (source: string) => string) => {
    const mutant = mutate(source)
    expect(mutant).not.toBe(source)
    const module = await load(mutant)
    return TARGETS.some(
      (target) => fc.check(neighbourhood(module, target), { numRuns: NEIGHBOURHOOD_RUNS, seed: 17 }).failed
    )
  }

  it("the unmutated source passes (the harness itself is sound)", async () => {
    const module = await load(source)
    for (const target of TARGETS) {
      expect(fc.check(parity(module, target), { numRuns: 50, seed: 1 }).failed).toBe(false)
      expect(fc.check(neighbourhood(module, target), { numRuns: 2, seed: 1 }).failed).toBe(false)
    }
  }, 120_000)

  /**
   * One check dropped at one place: `pattern` replaced only inside the generated function whose body
   * contains `marker` (each function decodes one node of the contract).
   */
  const inFunctionWith = (marker: string, pattern: string, replacement: string) => (s: string) => {
    const functions = s.split("\nfunction ")
    const index = functions.findIndex((chunk) => chunk.includes(marker) && chunk.includes(pattern))
    expect(index, `a function with ${marker} and ${pattern}`).toBeGreaterThan(0)
    functions[index] = functions[index]!.replace(pattern, replacement)
    return functions.join("\nfunction ")
  }

  it.each([
    ["maxLength checks dropped", (s: string) => s.replace(/\(v as string\)\.length <= \d+/g, "true")],
    [
      "maxItems checks dropped",
      (s: string) => s.replace(/\(v as ReadonlyArray<unknown>\)\.length <= \d+/g, "true")
    ],
    ["the uniqueness rule dropped", (s: string) => s.replace(/FILTER_RULES\.uniqueBy\([^)]*\)/g, "true")],
    [
      "the recovery verdict rule dropped",
      (s: string) => s.replace(/FILTER_RULES\.streamVerdict\(v as never\)/g, "(true as const)")
    ],
    [
      "the stream name pattern dropped",
      (s: string) => s.replace(/\/\^\(\?:channel:[^/]+\/\.test\(v as string\)/g, "true")
    ],
    [
      "the epoch pattern dropped",
      (s: string) => s.replace(/\/\^\[0-9A-Za-z_-\]\{1,64\}\$\/\.test\(v as string\)/g, "true")
    ],
    ["the UTF-8 byte rule dropped", (s: string) => s.replace(/FILTER_RULES\.maxUtf8Bytes\([^)]*\)/g, "true")],
    ["the lower-casing dropped", (s: string) => s.replace(/TRANSFORM_RULES\.lowerCase\(w as never\)/g, "w")],
    [
      "the deduplication dropped",
      (s: string) => s.replace(/TRANSFORM_RULES\.firstBy\(w as never, [^)]*\)/g, "w")
    ],
    [
      "optional keys decoded as required",
      (s: string) => s.replace(/if \(Object\.hasOwn\(o, ("[a-z_]+")\)\) \{/g, "{")
    ],
    [
      "the strict unknown-key check dropped",
      (s: string) => s.replace(/for \(const key of Reflect\.ownKeys\(o\)\)/g, "for (const key of [])")
    ],
    [
      "the emoji's 32-character bound dropped (one place)",
      inFunctionWith("/^\\S+$/", "(v as string).length <= 32", "true")
    ],
    [
      "about_markdown's 2048-character bound dropped (one place)",
      inFunctionWith("(v as string).length <= 2048", "(v as string).length <= 2048", "true")
    ],
    [
      "the role reorder cap dropped (one place)",
      inFunctionWith(
        "(v as ReadonlyArray<unknown>).length <= 64",
        "(v as ReadonlyArray<unknown>).length <= 64",
        "true"
      )
    ],
    [
      "the canonical id pattern dropped (one place: the first canonical id decoder)",
      inFunctionWith("/^[0-9A-HJKMNP-TV-Z]{26}$/", "/^[0-9A-HJKMNP-TV-Z]{26}$/.test(v as string)", "true")
    ]
  ])(
    "%s",
    async (_name, mutate) => {
      expect(await catches(mutate)).toBe(true)
    },
    180_000
  )
})
