/**
 * `npm run docs`: writes the generated contract files from the event registry. The docs test
 * compares the committed files with the same renderers, so a stale file fails CI.
 */
import { writeFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { renderEventCatalog } from "../src/protocol/Catalog.js"
import { renderJsonManifest } from "../src/protocol/Manifest.js"

const docs = (name: string) => fileURLToPath(new URL(`../docs/${name}`, import.meta.url))

writeFileSync(docs("gateway-events.manifest.json"), renderJsonManifest())
writeFileSync(docs("GATEWAY_EVENTS.md"), renderEventCatalog())
console.log("wrote docs/gateway-events.manifest.json and docs/GATEWAY_EVENTS.md")
