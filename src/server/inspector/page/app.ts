/**
 * The inspector page, plain TypeScript on the DOM: five views (sign-in, overview, explore, live
 * tail, publish) over the admin API. No framework: the views are small, and building every node with
 * `h` (text only ever through text nodes, never `innerHTML`) renders whatever an event carries inert
 * by construction. Built by `npm run build:inspector` into `bundle.generated.ts`.
 */
import type { TailEvent } from "../Tail.js"

type Child = Node | string | number | null | undefined | false
type Attrs = Record<string, string | number | boolean | EventListener | undefined>

/** An element with attributes and children; strings become text nodes (never parsed as HTML). */
const h = (tag: string, attrs: Attrs = {}, ...children: Array<Child | ReadonlyArray<Child>>): HTMLElement => {
  const element = document.createElement(tag)
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) continue
    if (typeof value === "function") element.addEventListener(name.slice(2), value)
    else if (value === true) element.setAttribute(name, "")
    else element.setAttribute(name, String(value))
  }
  append(element, children)
  return element
}

const append = (parent: Node, children: ReadonlyArray<Child | ReadonlyArray<Child>>) => {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue
    parent.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)))
  }
}

const replace = (parent: Element, ...children: Array<Child | ReadonlyArray<Child>>) => {
  parent.replaceChildren()
  append(parent, children)
}

const SVG = "http://www.w3.org/2000/svg"

/** A sparkline of `values` (oldest first) scaled to its own maximum. */
const sparkline = (values: ReadonlyArray<number>, label: string): Element => {
  const width = 240
  const height = 40
  const svg = document.createElementNS(SVG, "svg")
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`)
  svg.setAttribute("class", "spark")
  svg.setAttribute("preserveAspectRatio", "none")
  svg.setAttribute("role", "img")
  svg.setAttribute("aria-label", label)
  const max = Math.max(1, ...values)
  const step = values.length > 1 ? width / (values.length - 1) : width
  const line = document.createElementNS(SVG, "polyline")
  line.setAttribute(
    "points",
    values
      .map((value, i) => `${(i * step).toFixed(1)},${(height - 2 - (value / max) * (height - 4)).toFixed(1)}`)
      .join(" ")
  )
  svg.appendChild(line)
  return svg
}

// ---------------------------------------------------------------------------------------------------
// API

class Unauthorized extends Error {}

interface Answer {
  readonly status: number
  readonly body: Record<string, unknown>
}

const api = async (path: string, init: { method?: string; body?: unknown } = {}): Promise<Answer> => {
  const response = await fetch(`/admin/api/${path}`, {
    method: init.method ?? "GET",
    credentials: "same-origin",
    headers: init.body === undefined ? {} : { "content-type": "application/json" },
    body: init.body === undefined ? null : JSON.stringify(init.body)
  })
  const body = (await response.json().catch(() => ({}))) as Record<string, unknown>
  if (response.status === 401 && path !== "session") throw new Unauthorized()
  return { status: response.status, body }
}

// ---------------------------------------------------------------------------------------------------
// Shell

const root = document.getElementById("app")!
const views = ["overview", "explore", "tail", "publish"] as const
type View = (typeof views)[number]
const titles: Record<View, string> = {
  overview: "Overview",
  explore: "Explore",
  tail: "Live tail",
  publish: "Publish"
}
let stopView: (() => void) | undefined

const failed = (error: unknown) => {
  if (error instanceof Unauthorized) return signIn()
  status(`error: ${error instanceof Error ? error.message : String(error)}`)
}

const statusLine = h("p", { class: "status", "data-testid": "status", role: "status" })
const status = (text: string) => replace(statusLine, text)

const show = (view: View) => {
  stopView?.()
  stopView = undefined
  const content = h("section", { class: "view", "data-view": view })
  const nav = h(
    "nav",
    {},
    views.map((name) =>
      h(
        "button",
        {
          type: "button",
          class: name === view ? "tab active" : "tab",
          "data-tab": name,
          onclick: () => show(name)
        },
        titles[name]
      )
    ),
    h(
      "button",
      {
        type: "button",
        class: "tab signout",
        onclick: () => {
          stopView?.()
          void api("session", { method: "DELETE" }).finally(signIn)
        }
      },
      "Sign out"
    )
  )
  replace(root, h("header", {}, h("h1", {}, "filament-gateway"), nav), statusLine, content)
  status("")
  stopView = renderers[view](content)
}

const signIn = () => {
  stopView?.()
  stopView = undefined
  const key = h("input", {
    type: "password",
    id: "admin-key",
    autocomplete: "current-password",
    required: true,
    placeholder: "GATEWAY_ADMIN_KEY"
  }) as HTMLInputElement
  const error = h("p", { class: "error", "data-testid": "login-error" })
  const form = h(
    "form",
    {
      class: "login",
      onsubmit: (event: Event) => {
        event.preventDefault()
        void api("session", { method: "POST", body: { key: key.value } }).then((answer) => {
          key.value = ""
          if (answer.status === 200) show("overview")
          else replace(error, answer.status === 429 ? "Too many attempts; wait a minute." : "Wrong key.")
        }, failed)
      }
    },
    h("h1", {}, "filament-gateway inspector"),
    h("label", { for: "admin-key" }, "Admin key"),
    key,
    h("button", { type: "submit" }, "Sign in"),
    error
  )
  replace(root, form)
  key.focus()
}

// ---------------------------------------------------------------------------------------------------
// Overview

interface Sample {
  readonly at: number
  readonly connections: number
  readonly subscriptions: number
  readonly deliveries: Record<string, number>
  readonly publishes: Record<string, number>
}

interface Totals {
  readonly connections: number
  readonly usersOnline: number
  readonly subscriptions: number
  readonly drops: Record<string, number>
  readonly slowConsumerEvictions: number
  readonly ingressRejections: Record<string, number>
  readonly busHealthy: boolean
  readonly busOutageSeconds: number
}

const HISTORY = 300
const POLL_MS = 2000
const SERIES_SHOWN = 6

const stat = (name: string, label: string, value: string | number) =>
  h("div", { class: "card" }, h("span", { class: "label" }, label), h("b", { "data-stat": name }, value))

const sum = (record: Record<string, number>) => Object.values(record).reduce((a, b) => a + b, 0)

/** Rates per event type at one time: this node's samples and the cluster's points alike. */
interface Rates {
  readonly deliveries: Record<string, number>
  readonly publishes: Record<string, number>
}

/** Per event type: its values over the samples, busiest types first. */
const seriesByType = <S extends Rates>(
  samples: ReadonlyArray<S>,
  pick: (sample: S) => Record<string, number>
) => {
  const types = new Map<string, number>()
  for (const sample of samples)
    for (const [type, rate] of Object.entries(pick(sample))) types.set(type, (types.get(type) ?? 0) + rate)
  return [...types.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, SERIES_SHOWN)
    .map(([type]) => ({ type, values: samples.map((sample) => pick(sample)[type] ?? 0) }))
}

const rateChart = <S extends Rates>(
  title: string,
  samples: ReadonlyArray<S>,
  pick: (sample: S) => Record<string, number>,
  testid: string
) => {
  const total = samples.map((sample) => sum(pick(sample)))
  const last = total.at(-1) ?? 0
  return h(
    "div",
    { class: "panel", "data-testid": testid },
    h("h2", {}, title, " ", h("span", { class: "muted" }, `${last.toFixed(1)}/s now`)),
    sparkline(total, `${title}, all types`),
    h(
      "ul",
      { class: "series" },
      seriesByType(samples, pick).map(({ type, values }) =>
        h(
          "li",
          {},
          h("code", {}, type),
          h("span", { class: "muted" }, ` ${(values.at(-1) ?? 0).toFixed(1)}/s`),
          sparkline(values, type)
        )
      )
    )
  )
}

const countTable = (title: string, counts: Record<string, number>, testid: string) => {
  const rows = Object.entries(counts).filter(([, count]) => count > 0)
  return h(
    "div",
    { class: "panel", "data-testid": testid },
    h("h2", {}, title),
    rows.length === 0
      ? h("p", { class: "muted" }, "none")
      : h(
          "table",
          {},
          h(
            "tbody",
            {},
            rows.map(([reason, count]) =>
              h("tr", {}, h("td", {}, h("code", {}, reason)), h("td", { class: "num" }, count))
            )
          )
        )
  )
}

interface Peer {
  readonly node: string
  readonly at: number
  readonly totals: Totals
}

/** The cluster-wide rates (with Redis): one point per period, summed over the nodes that report. */
interface ClusterView {
  readonly periodSeconds: number
  readonly samples: ReadonlyArray<Rates & { readonly at: number; readonly nodes: number }>
}

/** Every node's totals: this one, then its peers (written to Redis every few seconds). */
const clusterTable = (node: string, now: number, totals: Totals, peers: ReadonlyArray<Peer>) => {
  const rows = [{ node: `${node} (this node)`, at: now, totals }, ...peers]
  const sumOf = (pick: (totals: Totals) => number) => rows.reduce((total, row) => total + pick(row.totals), 0)
  const drops = (t: Totals) => sum(t.drops)
  const rejections = (t: Totals) => sum(t.ingressRejections)
  return h(
    "div",
    { class: "panel", "data-testid": "cluster" },
    h(
      "h2",
      {},
      "Cluster ",
      h(
        "span",
        { class: "muted", "data-testid": "cluster-summary" },
        `${rows.length} node${rows.length === 1 ? "" : "s"} · ${sumOf((t) => t.connections)} connections · ${sumOf((t) => t.usersOnline)} users online · ${sumOf(drops)} drops · ${sumOf((t) => t.slowConsumerEvictions)} evictions · ${sumOf(rejections)} ingress rejections`
      )
    ),
    peers.length === 0
      ? h("p", { class: "muted" }, "no other node reports (one node, or no GATEWAY_REDIS_URL)")
      : null,
    h(
      "div",
      { class: "scroll" },
      h(
        "table",
        { class: "nodes" },
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            [
              "node",
              "connections",
              "users",
              "subscriptions",
              "drops",
              "evictions",
              "rejections",
              "bus",
              "as of"
            ].map((name, i) => h("th", { class: i === 0 || i === 7 ? undefined : "num" }, name))
          )
        ),
        h(
          "tbody",
          {},
          rows.map((row) =>
            h(
              "tr",
              { "data-node": row.node },
              h("td", {}, h("code", {}, row.node)),
              h("td", { class: "num" }, row.totals.connections),
              h("td", { class: "num" }, row.totals.usersOnline),
              h("td", { class: "num" }, row.totals.subscriptions),
              h("td", { class: "num" }, drops(row.totals)),
              h("td", { class: "num" }, row.totals.slowConsumerEvictions),
              h("td", { class: "num" }, rejections(row.totals)),
              h("td", {}, row.totals.busHealthy ? "healthy" : "DOWN"),
              h("td", { class: "num" }, `${Math.max(0, Math.round((now - row.at) / 1000))} s ago`)
            )
          )
        )
      )
    )
  )
}

const renderOverview = (content: HTMLElement) => {
  let samples: Array<Sample> = []
  let since = 0
  let node = ""
  const poll = async () => {
    const answer = await api(`overview?since=${since}`)
    const totals = answer.body["totals"] as Totals
    node = String(answer.body["node"])
    samples = samples.concat(answer.body["samples"] as Array<Sample>).slice(-HISTORY)
    since = samples.at(-1)?.at ?? since
    const cluster = answer.body["cluster"] as ClusterView | null
    replace(
      content,
      h(
        "p",
        { class: "muted" },
        `node ${node} · sampled every ${String(answer.body["periodSeconds"])} s · last ${samples.length} samples`
      ),
      h(
        "div",
        { class: "cards" },
        stat("connections", "Connections", totals.connections),
        stat("users-online", "Users online", totals.usersOnline),
        stat("subscriptions", "Subscriptions", totals.subscriptions),
        stat("evictions", "Slow-consumer evictions", totals.slowConsumerEvictions),
        stat("bus", "Bus", totals.busHealthy ? "healthy" : "DOWN"),
        stat("outage", "Bus outage", `${totals.busOutageSeconds.toFixed(1)} s`)
      ),
      h(
        "div",
        { class: "panels" },
        rateChart("Deliveries (this node)", samples, (sample) => sample.deliveries, "deliveries"),
        rateChart("Publishes (this node)", samples, (sample) => sample.publishes, "publishes"),
        cluster === null
          ? null
          : [
              rateChart(
                "Deliveries (cluster)",
                cluster.samples,
                (point) => point.deliveries,
                "cluster-deliveries"
              ),
              rateChart(
                "Publishes (cluster)",
                cluster.samples,
                (point) => point.publishes,
                "cluster-publishes"
              )
            ],
        countTable("Drops by reason", totals.drops, "drops"),
        countTable("Ingress rejections by reason", totals.ingressRejections, "ingress")
      ),
      clusterTable(node, Number(answer.body["now"]), totals, answer.body["peers"] as Array<Peer>)
    )
  }
  const tick = () => void poll().catch(failed)
  tick()
  const timer = setInterval(tick, POLL_MS)
  return () => clearInterval(timer)
}

// ---------------------------------------------------------------------------------------------------
// Explore

interface Ranked {
  readonly id: string
  readonly subscribers: number
}

interface ConnectionView {
  readonly id: number
  readonly node: string
  readonly ageSeconds: number
  readonly subscriptions: ReadonlyArray<{ readonly guild_id: string; readonly channel_id: string }>
  readonly outboxDepth: number
  readonly bufferedBytes: number
}

const ranked = (title: string, rows: ReadonlyArray<Ranked>, testid: string) =>
  h(
    "div",
    { class: "panel", "data-testid": testid },
    h("h2", {}, title),
    rows.length === 0
      ? h("p", { class: "muted" }, "none")
      : h(
          "table",
          {},
          h(
            "tbody",
            {},
            rows.map((row) =>
              h("tr", {}, h("td", {}, h("code", {}, row.id)), h("td", { class: "num" }, row.subscribers))
            )
          )
        )
  )

/** One connection of a looked-up user, with its actions: drop a subscription, close it. */
const connectionRow = (
  connection: ConnectionView,
  act: (path: string, body: unknown, done: string) => unknown
) =>
  h(
    "tr",
    { "data-connection": connection.id },
    h("td", {}, connection.id),
    h("td", {}, connection.node),
    h("td", { class: "num" }, `${connection.ageSeconds} s`),
    h(
      "td",
      {},
      connection.subscriptions.length === 0
        ? h("span", { class: "muted" }, "none")
        : h(
            "ul",
            { class: "subs" },
            connection.subscriptions.map((sub) =>
              h(
                "li",
                {},
                h("code", {}, `${sub.guild_id} / ${sub.channel_id}`),
                " ",
                h(
                  "button",
                  {
                    type: "button",
                    class: "small",
                    "data-action": "drop",
                    onclick: () =>
                      void act(
                        `connections/${connection.id}/unsubscribe`,
                        sub,
                        `dropped ${sub.channel_id} from connection ${connection.id}`
                      )
                  },
                  "drop"
                )
              )
            )
          )
    ),
    h("td", { class: "num" }, connection.outboxDepth),
    h("td", { class: "num" }, connection.bufferedBytes),
    h(
      "td",
      {},
      h(
        "button",
        {
          type: "button",
          class: "danger",
          "data-action": "close",
          onclick: () => {
            if (confirm(`Close connection ${connection.id} (4014 closed_by_admin)?`))
              void act(`connections/${connection.id}/close`, {}, `closed connection ${connection.id} (4014)`)
          }
        },
        "close"
      )
    )
  )

const renderExplore = (content: HTMLElement) => {
  const top = h("div", { class: "panels" })
  const userId = h("input", {
    id: "user-id",
    placeholder: "user ULID",
    spellcheck: "false"
  }) as HTMLInputElement
  const result = h("div", { "data-testid": "user-connections" })

  const loadTop = () =>
    api("top?limit=10").then((answer) => {
      replace(
        top,
        ranked("Top guilds by subscribers", answer.body["guilds"] as Array<Ranked>, "top-guilds"),
        ranked("Top channels by subscribers", answer.body["channels"] as Array<Ranked>, "top-channels")
      )
    }, failed)

  const act = (path: string, body: unknown, done: string) =>
    api(path, { method: "POST", body }).then((answer) => {
      status(answer.status < 300 ? done : `refused: ${String(answer.body["error"])}`)
      return lookup()
    }, failed)

  const lookup = async (): Promise<void> => {
    const id = userId.value.trim()
    if (id === "") return
    const answer = await api(`users/${encodeURIComponent(id)}`).catch(failed)
    if (answer === undefined) return
    if (answer.status !== 200)
      return replace(result, h("p", { class: "error" }, `refused: ${String(answer.body["error"])}`))
    const connections = answer.body["connections"] as Array<ConnectionView>
    replace(
      result,
      connections.length === 0
        ? h("p", { class: "muted" }, "no connection on this node")
        : h(
            "div",
            { class: "scroll" },
            h(
              "table",
              { class: "connections" },
              h(
                "thead",
                {},
                h(
                  "tr",
                  {},
                  ["id", "node", "age", "subscriptions", "outbox", "buffered", ""].map((name) =>
                    h("th", { class: ["age", "outbox", "buffered"].includes(name) ? "num" : undefined }, name)
                  )
                )
              ),
              h(
                "tbody",
                {},
                connections.map((connection) => connectionRow(connection, act))
              )
            )
          )
    )
  }

  replace(
    content,
    h("div", { class: "toolbar" }, h("button", { type: "button", onclick: () => void loadTop() }, "Refresh")),
    top,
    h(
      "form",
      {
        class: "panel lookup",
        onsubmit: (event: Event) => {
          event.preventDefault()
          void lookup()
        }
      },
      h("h2", {}, "Look up a user"),
      h("div", { class: "row" }, userId, h("button", { type: "submit" }, "Look up"))
    ),
    result
  )
  void loadTop()
  return undefined
}

// ---------------------------------------------------------------------------------------------------
// Live tail

/** Events the page keeps; older ones are removed as new ones arrive. */
const TAIL_KEPT = 200

const renderTail = (content: HTMLElement) => {
  const kind = h(
    "select",
    { id: "tail-kind" },
    h("option", { value: "channel" }, "channel"),
    h("option", { value: "guild" }, "guild"),
    h("option", { value: "user" }, "user")
  ) as HTMLSelectElement
  const first = h("input", {
    id: "tail-first",
    placeholder: "guild ULID",
    spellcheck: "false"
  }) as HTMLInputElement
  const second = h("input", {
    id: "tail-second",
    placeholder: "channel ULID",
    spellcheck: "false"
  }) as HTMLInputElement
  const pause = h(
    "button",
    { type: "button", id: "tail-pause", disabled: true },
    "Pause"
  ) as HTMLButtonElement
  const counters = h("p", { class: "muted", "data-testid": "tail-counters" })
  const list = h("ol", { class: "tail", "data-testid": "tail-events", reversed: true })
  let source: EventSource | undefined
  let paused = false
  let held: Array<TailEvent> = []

  kind.addEventListener("change", () => {
    first.placeholder = kind.value === "user" ? "user ULID" : "guild ULID"
    second.hidden = kind.value !== "channel"
  })

  const render = (event: TailEvent) => {
    const item = h(
      "li",
      { class: event.valid ? "event" : "event invalid", "data-type": event.t },
      h(
        "div",
        { class: "meta" },
        h("code", {}, event.t),
        ` ${event.scope} · ${event.bytes} B · ${event.recipients} recipients · ${event.origin} · ${new Date(event.at).toISOString().slice(11, 23)} · `,
        event.valid
          ? h("span", { class: "ok" }, "valid")
          : h("span", { class: "error" }, `invalid: ${event.error ?? ""}`)
      ),
      h("pre", { class: "payload" }, JSON.stringify(event.payload, null, 2))
    )
    list.prepend(item)
    while (list.childElementCount > TAIL_KEPT) list.lastElementChild!.remove()
    replace(counters, `skipped by sampling: ${event.skipped} · dropped (queue full): ${event.dropped}`)
  }

  const stop = () => {
    source?.close()
    source = undefined
    pause.disabled = true
  }

  const start = (event: Event) => {
    event.preventDefault()
    stop()
    const query =
      kind.value === "user"
        ? `user=${encodeURIComponent(first.value.trim())}`
        : `guild=${encodeURIComponent(first.value.trim())}` +
          (kind.value === "channel" ? `&channel=${encodeURIComponent(second.value.trim())}` : "")
    list.replaceChildren()
    held = []
    paused = false
    replace(pause, "Pause")
    pause.disabled = false
    const stream = new EventSource(`/admin/api/tail?${query}`)
    source = stream
    stream.addEventListener("ready", () => status("watching"))
    stream.addEventListener("tail", (message) => {
      const tailed = JSON.parse((message as MessageEvent<string>).data) as TailEvent
      if (!paused) return render(tailed)
      held.push(tailed)
      if (held.length > TAIL_KEPT) held.shift()
      replace(pause, `Resume (${held.length} held)`)
    })
    stream.addEventListener("error", () => {
      // The server refused (bad filter, too many viewers, signed out) or the stream ended.
      if (stream.readyState === EventSource.CLOSED) {
        status("tail stopped: refused or ended (check the ids, the viewer limit, the session)")
        stop()
      }
    })
  }

  pause.addEventListener("click", () => {
    paused = !paused
    if (paused) return replace(pause, "Resume")
    for (const event of held) render(event)
    held = []
    replace(pause, "Pause")
  })

  replace(
    content,
    h(
      "form",
      { class: "panel", onsubmit: start },
      h("h2", {}, "Watch"),
      h(
        "div",
        { class: "row" },
        kind,
        first,
        second,
        h("button", { type: "submit", id: "tail-start" }, "Watch"),
        pause
      )
    ),
    counters,
    list
  )
  return stop
}

// ---------------------------------------------------------------------------------------------------
// Publish console: a form generated from the event's JSON Schema

interface JsonSchema {
  readonly type?: string | ReadonlyArray<string>
  readonly properties?: Record<string, JsonSchema>
  readonly required?: ReadonlyArray<string>
  readonly enum?: ReadonlyArray<unknown>
  readonly const?: unknown
  readonly anyOf?: ReadonlyArray<JsonSchema>
  readonly items?: JsonSchema
  readonly $ref?: string
  readonly $defs?: Record<string, JsonSchema>
  readonly description?: string
  readonly title?: string
}

interface ManifestEvent {
  readonly event_type: string
  readonly scope: string
  readonly description: string
  readonly payload_schema: JsonSchema
}

/** A generated control: its element and how to read its value (`undefined`: left out). */
interface Control {
  readonly node: HTMLElement
  readonly read: () => unknown
}

const INVALID_JSON = Symbol("invalid JSON")

const field = (path: string, label: string, control: HTMLElement, hint?: string) =>
  h(
    "div",
    { class: "field", "data-path": path },
    h("label", {}, label, hint === undefined ? null : h("span", { class: "muted" }, ` ${hint}`)),
    control,
    h("span", { class: "field-error", "data-error-for": path })
  )

const resolve = (schema: JsonSchema, defs: Record<string, JsonSchema>): JsonSchema =>
  schema.$ref?.startsWith("#/$defs/") === true
    ? resolve(defs[schema.$ref.slice("#/$defs/".length)] ?? {}, defs)
    : schema

/** Literal choices of a schema (an enum, a const, or a union of them), if it is only that. */
const choices = (
  schema: JsonSchema,
  defs: Record<string, JsonSchema>
): ReadonlyArray<unknown> | undefined => {
  const resolved = resolve(schema, defs)
  if (resolved.enum !== undefined) return resolved.enum
  if ("const" in resolved) return [resolved.const]
  if (resolved.anyOf === undefined) return undefined
  const all: Array<unknown> = []
  for (const member of resolved.anyOf) {
    const literal = choices(member, defs)
    if (literal === undefined) return undefined
    all.push(...literal)
  }
  return all
}

const build = (
  schema: JsonSchema,
  path: string,
  label: string,
  required: boolean,
  defs: Record<string, JsonSchema>
): Control => {
  const resolved = resolve(schema, defs)
  const hint = [resolved.title, required ? undefined : "optional"]
    .filter((part) => part !== undefined)
    .join(", ")
  const literal = choices(resolved, defs)
  if (literal !== undefined) {
    const select = h(
      "select",
      { name: path },
      required ? null : h("option", { value: "" }, "—"),
      literal.map((value, i) => h("option", { value: String(i) }, JSON.stringify(value)))
    ) as HTMLSelectElement
    return {
      node: field(path, label, select, hint),
      read: () => (select.value === "" ? undefined : literal[Number(select.value)])
    }
  }
  if (resolved.type === "object" && resolved.properties !== undefined) {
    const children = Object.entries(resolved.properties).map(([name, child]) => ({
      name,
      control: build(
        child,
        path === "" ? name : `${path}.${name}`,
        name,
        resolved.required?.includes(name) ?? false,
        defs
      )
    }))
    const node = h(
      "fieldset",
      { class: "field", "data-path": path },
      path === ""
        ? null
        : h("legend", {}, label, hint === "" ? null : h("span", { class: "muted" }, ` ${hint}`)),
      children.map((child) => child.control.node),
      h("span", { class: "field-error", "data-error-for": path })
    )
    return {
      node,
      read: () => {
        const value: Record<string, unknown> = {}
        for (const child of children) {
          const read = child.control.read()
          if (read === INVALID_JSON) return INVALID_JSON
          if (read !== undefined) value[child.name] = read
        }
        return !required && Object.keys(value).length === 0 ? undefined : value
      }
    }
  }
  if (resolved.type === "string") {
    const input = h("input", {
      name: path,
      spellcheck: "false",
      title: resolved.description
    }) as HTMLInputElement
    return {
      node: field(path, label, input, hint),
      read: () => (input.value === "" && !required ? undefined : input.value)
    }
  }
  if (resolved.type === "integer" || resolved.type === "number") {
    const input = h("input", {
      name: path,
      type: "number",
      step: resolved.type === "integer" ? "1" : "any"
    }) as HTMLInputElement
    return {
      node: field(path, label, input, hint),
      read: () => (input.value === "" ? undefined : Number(input.value))
    }
  }
  if (resolved.type === "boolean") {
    const input = h(
      "select",
      { name: path },
      required ? null : h("option", { value: "" }, "—"),
      h("option", { value: "true" }, "true"),
      h("option", { value: "false" }, "false")
    ) as HTMLSelectElement
    return {
      node: field(path, label, input, hint),
      read: () => (input.value === "" ? undefined : input.value === "true")
    }
  }
  // Arrays, unions and anything else: JSON text.
  const area = h("textarea", {
    name: path,
    rows: 3,
    spellcheck: "false",
    placeholder: resolved.type === "array" ? "[]" : "JSON"
  }) as HTMLTextAreaElement
  const node = field(path, label, area, [hint, "JSON"].filter((part) => part !== "").join(", "))
  return {
    node,
    read: () => {
      if (area.value.trim() === "") return undefined
      try {
        return JSON.parse(area.value) as unknown
      } catch {
        replace(node.querySelector(".field-error")!, "not valid JSON")
        return INVALID_JSON
      }
    }
  }
}

const renderPublish = (content: HTMLElement) => {
  const select = h("select", { id: "publish-type" }) as HTMLSelectElement
  const description = h("p", { class: "muted" })
  const formSlot = h("div")
  const outcome = h("p", { "data-testid": "publish-outcome" })
  let events: ReadonlyArray<ManifestEvent> = []
  let current: { event: ManifestEvent; control: Control; users?: HTMLTextAreaElement } | undefined

  const choose = () => {
    const event = events.find((candidate) => candidate.event_type === select.value)
    if (event === undefined) return
    const control = build(event.payload_schema, "", event.event_type, true, event.payload_schema.$defs ?? {})
    const users =
      event.scope === "user"
        ? (h("textarea", {
            name: "users",
            rows: 2,
            placeholder: "user ULIDs, one per line"
          }) as HTMLTextAreaElement)
        : undefined
    current = { event, control, ...(users === undefined ? {} : { users }) }
    replace(description, `${event.scope}-scoped · ${event.description}`)
    replace(formSlot, control.node, users === undefined ? null : field("users", "users", users, "recipients"))
    replace(outcome)
  }

  const send = (submitted: Event) => {
    submitted.preventDefault()
    if (current === undefined) return
    formSlot.querySelectorAll(".field-error").forEach((error) => error.replaceChildren())
    const d = current.control.read()
    if (d === INVALID_JSON)
      return replace(outcome, h("span", { class: "error" }, "fix the fields marked above"))
    const users = current.users?.value.split(/\s+/).filter((user) => user !== "")
    void api("publish", {
      method: "POST",
      body: { t: current.event.event_type, d: d ?? {}, ...(users === undefined ? {} : { users }) }
    }).then((answer) => {
      if (answer.status === 202)
        return replace(
          outcome,
          h(
            "span",
            { class: "ok" },
            `published: delivered to ${String(answer.body["recipients"])} connections on this node`
          )
        )
      const fields = (answer.body["fields"] as Array<{ path: string; message: string }> | undefined) ?? []
      const unplaced: Array<string> = []
      for (const issue of fields) {
        // The closest generated field on the issue's path (an array element shows at its array).
        let path = issue.path
        let slot: Element | null = null
        for (;;) {
          slot = formSlot.querySelector(`[data-error-for="${CSS.escape(path)}"]`)
          if (slot !== null || path === "") break
          path = path.includes(".") ? path.slice(0, path.lastIndexOf(".")) : ""
        }
        if (slot === null) unplaced.push(`${issue.path}: ${issue.message}`)
        else append(slot, [slot.childNodes.length > 0 ? "; " : "", issue.message])
      }
      replace(
        outcome,
        h(
          "span",
          { class: "error" },
          `refused (${answer.status}): ${String(answer.body["error"])}`,
          fields.length === 0 ? ` — ${String(answer.body["detail"] ?? "")}` : "",
          unplaced.length === 0 ? "" : ` — ${unplaced.join("; ")}`
        )
      )
    }, failed)
  }

  replace(
    content,
    h(
      "form",
      { class: "panel publish", onsubmit: send, novalidate: true },
      h("h2", {}, "Publish an event"),
      h("div", { class: "row" }, h("label", { for: "publish-type" }, "Event"), select),
      description,
      formSlot,
      h("button", { type: "submit", id: "publish-send" }, "Publish"),
      outcome
    )
  )
  select.addEventListener("change", choose)
  void api("manifest").then((answer) => {
    events = answer.body["events"] as Array<ManifestEvent>
    replace(
      select,
      events.map((event) => h("option", { value: event.event_type }, event.event_type))
    )
    choose()
  }, failed)
  return undefined
}

const renderers: Record<View, (content: HTMLElement) => (() => void) | undefined> = {
  overview: renderOverview,
  explore: renderExplore,
  tail: renderTail,
  publish: renderPublish
}

// Signed in already (a live session cookie) or not: the overview answers 401 when not.
void api("top?limit=1").then(
  () => show("overview"),
  (error: unknown) => (error instanceof Unauthorized ? signIn() : failed(error))
)
