/**
 * `npm run docs`: writes the files generated from the event registry: the contract docs and the
 * client's plain decoders. The docs and decoder tests compare the committed files with the same
 * renderers, so a stale file fails CI.
 */
import { mkdirSync, writeFileSync } from "node:fs"
import { dirname } from "node:path"
import { fileURLToPath } from "node:url"
import { renderEventCatalog } from "./event-catalog.js"
import { renderJsonManifest } from "../src/protocol/Manifest.js"
import { GENERATED_DECODERS_PATH, renderClientDecoders } from "./client-decoders.js"

const write = (path: string, contents: string) => {
  const file = fileURLToPath(new URL(`../${path}`, import.meta.url))
  mkdirSync(dirname(file), { recursive: true })
  writeFileSync(file, contents)
  console.log(`wrote ${path}`)
}

write("docs/gateway-events.manifest.json", renderJsonManifest())
write("docs/GATEWAY_EVENTS.md", renderEventCatalog())
write(GENERATED_DECODERS_PATH, renderClientDecoders())
