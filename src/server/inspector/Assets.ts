/**
 * The page: one HTML shell, the bundled script and the style sheet, all served by the gateway (the
 * CSP allows nothing else). The script and style are `page/bundle.generated.ts`, built from
 * `page/app.ts` and `page/style.css` by `npm run build:inspector` and committed, so `npm start` and
 * a fresh clone need no build step; a test fails when it is stale.
 */
import { HttpServerResponse } from "@effect/platform"
import { APP_CSS, APP_JS } from "./page/bundle.generated.js"

const HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>filament-gateway inspector</title>
<link rel="stylesheet" href="/admin/app.css">
<script type="module" src="/admin/app.js"></script>
</head>
<body><main id="app"></main></body>
</html>
`

export const page = HttpServerResponse.text(HTML, { contentType: "text/html; charset=utf-8" })
export const script = HttpServerResponse.text(APP_JS, { contentType: "text/javascript; charset=utf-8" })
export const style = HttpServerResponse.text(APP_CSS, { contentType: "text/css; charset=utf-8" })
