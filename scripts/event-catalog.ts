/**
 * The human event catalog (`docs/GATEWAY_EVENTS.md`), rendered from the same registry and the same
 * generated JSON Schemas as the JSON manifest, so the prose cannot drift from the contract. Build-time
 * only (`npm run docs`, the docs test): no runtime module or bundle carries it.
 */
import { CLOSE_CODES } from "../src/protocol/CloseCodes.js"
import { COMMANDS } from "../src/protocol/Commands.js"
import { EVENT_TYPE_PATTERN, MAX_EVENT_BYTES, PROTOCOL_VERSION } from "../src/protocol/Envelope.js"
import type { EventDefinition, EventScope } from "../src/protocol/EventDefinition.js"
import { ULID_PATTERN, ULID_PATTERN_ANY_CASE } from "../src/protocol/Ids.js"
import { commandJsonSchema, Manifest, payloadJsonSchema, type Registry } from "../src/protocol/Manifest.js"

type Json = { readonly [key: string]: unknown }

const isJson = (value: unknown): value is Json =>
  typeof value === "object" && value !== null && !Array.isArray(value)

const asJson = (value: unknown): Json => (isJson(value) ? value : {})
const asArray = (value: unknown): ReadonlyArray<unknown> => (Array.isArray(value) ? value : [])
const asStrings = (value: unknown): ReadonlyArray<string> =>
  asArray(value).filter((item): item is string => typeof item === "string")

const code = (text: string) => `\`${text}\``
const cell = (text: string) => text.replace(/\|/g, "\\|").replace(/\n/g, " ")
const anchor = (text: string) =>
  text
    .toLowerCase()
    .replace(/[^a-z0-9 _-]/g, "")
    .replace(/ /g, "-")
const shapeLink = (name: string) => `[${name}](#${anchor(`shape ${name}`)})`
const refName = (ref: string) => ref.slice(ref.lastIndexOf("/") + 1)

const jsonLiteral = (value: unknown) => code(JSON.stringify(value))

// ---------------------------------------------------------------------------------------------------------
// Describing one JSON Schema node: its type and its bounds
// ---------------------------------------------------------------------------------------------------------

const typeOf = (schema: Json): string => {
  if (typeof schema.$ref === "string") return shapeLink(refName(schema.$ref))
  if (Array.isArray(schema.enum)) return schema.enum.map(jsonLiteral).join(" | ")
  if ("const" in schema) return jsonLiteral(schema.const)
  if (Array.isArray(schema.anyOf)) return schema.anyOf.map((member) => typeOf(asJson(member))).join(" | ")
  if (schema.type === "string" && typeof schema.title === "string" && isUlidPattern(schema.pattern)) {
    return `${schema.title} (ULID)`
  }
  if (schema.type === "string" && schema.pattern === ULID_PATTERN_ANY_CASE.source) return "ULID (any case)"
  if (schema.type === "array") return `array of ${typeOf(asJson(schema.items))}`
  if (schema.type === "integer") return "integer"
  if (typeof schema.type === "string") return schema.type
  return "any"
}

const isUlidPattern = (pattern: unknown) => pattern === ULID_PATTERN.source

const range = (min: unknown, max: unknown, unit: string): string | undefined => {
  const lo = typeof min === "number" ? min : undefined
  const hi = typeof max === "number" && max !== Number.MAX_SAFE_INTEGER ? max : undefined
  if (lo !== undefined && hi !== undefined) return lo === hi ? `exactly ${lo}${unit}` : `${lo}..${hi}${unit}`
  if (lo !== undefined) return `≥ ${lo}${unit}`
  if (hi !== undefined) return `≤ ${hi}${unit}`
  return undefined
}

const boundsOf = (schema: Json): ReadonlyArray<string> => {
  if (Array.isArray(schema.anyOf)) {
    return schema.anyOf.flatMap((member) => boundsOf(asJson(member)))
  }
  const bounds: Array<string> = []
  const length = range(schema.minLength, schema.maxLength, " chars")
  if (length !== undefined) bounds.push(length)
  if (typeof schema.pattern === "string" && !isUlidPattern(schema.pattern)) {
    if (schema.pattern !== ULID_PATTERN_ANY_CASE.source) bounds.push(`pattern ${code(schema.pattern)}`)
  }
  if (schema.type === "integer") {
    const value = range(schema.minimum, schema.maximum, "")
    if (value !== undefined) bounds.push(value)
  }
  const items = range(schema.minItems, schema.maxItems, " items")
  if (items !== undefined) bounds.push(items)
  if (schema.uniqueItems === true) bounds.push("unique")
  if (schema.type === "array") bounds.push(...boundsOf(asJson(schema.items)).map((bound) => `each ${bound}`))
  return bounds
}

/** Object-level rules: at-least-one-of, key dependencies and commented conditionals. */
const rulesOf = (schema: Json, prefix: string): ReadonlyArray<string> => {
  const rules: Array<string> = []
  for (const part of asArray(schema.allOf)) {
    const alternatives = asArray(asJson(part).anyOf).map((member) => asStrings(asJson(member).required))
    if (alternatives.length > 0 && alternatives.every((keys) => keys.length === 1)) {
      rules.push(
        `${prefix ? code(prefix.slice(0, -1)) : "the payload"} needs at least one of ${alternatives.map((keys) => code(keys[0]!)).join(", ")}`
      )
    }
  }
  const dependencies = asJson(schema.dependencies)
  const pairs = new Set<string>()
  for (const [key, required] of Object.entries(dependencies)) {
    for (const other of asStrings(required)) {
      const reverse = asStrings(dependencies[other]).includes(key)
      if (reverse) {
        const pair = [key, other].sort().join(" and ")
        if (!pairs.has(pair)) {
          pairs.add(pair)
          rules.push(`${code(prefix + key)} and ${code(prefix + other)}: both or neither`)
        }
      } else rules.push(`${code(prefix + key)} requires ${code(prefix + other)}`)
    }
  }
  if (typeof schema.$comment === "string")
    rules.push(prefix ? `${code(prefix.slice(0, -1))}: ${schema.$comment}` : schema.$comment)
  return rules
}

interface FieldRow {
  readonly path: string
  readonly required: boolean
  readonly type: string
  readonly bounds: ReadonlyArray<string>
  readonly note: string | undefined
}

/** Flattens an object schema into rows; nested (unnamed) objects and arrays of them are expanded. */
const fieldRows = (schema: Json, prefix: string, rules: Array<string>): ReadonlyArray<FieldRow> => {
  rules.push(...rulesOf(schema, prefix))
  const required = new Set(asStrings(schema.required))
  const rows: Array<FieldRow> = []
  for (const [name, value] of Object.entries(asJson(schema.properties))) {
    const property = asJson(value)
    const path = prefix + name
    const isUserDescription =
      typeof property.description === "string" &&
      !/^an? /.test(property.description) &&
      property.description !== "canonical uppercase ULID"
    rows.push({
      path,
      required: required.has(name),
      type: property.type === "object" ? "object" : typeOf(property),
      bounds: boundsOf(property),
      note: isUserDescription ? (property.description as string) : undefined
    })
    if (property.type === "object") rows.push(...fieldRows(property, `${path}.`, rules))
    const items = asJson(property.items)
    if (property.type === "array" && items.type === "object")
      rows.push(...fieldRows(items, `${path}[].`, rules))
  }
  return rows
}

const fieldTable = (schema: Json): string => {
  const rules: Array<string> = []
  const rows = fieldRows(schema, "", rules)
  const lines = [
    "| field | required | type | bounds |",
    "|---|---|---|---|",
    ...rows.map(
      (row) =>
        `| ${code(row.path)} | ${row.required ? "yes" : "no"} | ${cell(row.type)} | ${cell(
          [...row.bounds, ...(row.note === undefined ? [] : [row.note])].join("; ") || "—"
        )} |`
    )
  ]
  if (rows.length === 0) lines.splice(0, 2, "No fields.")
  if (rules.length > 0) lines.push("", "Rules:", "", ...rules.map((rule) => `- ${rule}`))
  return lines.join("\n")
}

/** A payload: one table, or one table per alternative for a union of shapes. */
const flattenAnyOf = (schema: Json): ReadonlyArray<Json> =>
  Array.isArray(schema.anyOf) ? schema.anyOf.flatMap((member) => flattenAnyOf(asJson(member))) : [schema]

const payloadSection = (schema: Json): string => {
  const alternatives = Array.isArray(schema.anyOf) ? flattenAnyOf(schema) : []
  if (alternatives.length > 0 && alternatives.every((member) => member.type === "object")) {
    return alternatives
      .map((member, i) => {
        const discriminators = Object.entries(asJson(member.properties))
          .filter(
            ([, property]) => "const" in asJson(property) || asArray(asJson(property).enum).length === 1
          )
          .map(([name, property]) => {
            const p = asJson(property)
            return `${code(name)} = ${jsonLiteral("const" in p ? p.const : asArray(p.enum)[0])}`
          })
        const title = discriminators.length > 0 ? ` (${discriminators.join(", ")})` : ""
        return `Variant ${i + 1}${title}:\n\n${fieldTable(member)}`
      })
      .join("\n\n")
  }
  return fieldTable(schema)
}

// ---------------------------------------------------------------------------------------------------------
// Sections
// ---------------------------------------------------------------------------------------------------------

const SCOPE_RULES: Record<EventScope, string> = {
  connection: "Sent to one connection only (the one that caused it).",
  channel:
    "Delivered to every connection subscribed to the channel (`guild_id`, `channel_id` of the payload).",
  guild: "Delivered to every connection with at least one subscription in the guild (`guild_id`).",
  user: "Delivered to every connection of the recipient users; no subscription needed."
}

const eventSection = (event: EventDefinition): string => {
  const schema = asJson(payloadJsonSchema(event))
  const lines = [
    `### ${code(event.type)}`,
    "",
    `| schema_version | scope | lifecycle | origin |`,
    `|---|---|---|---|`,
    `| ${event.version} | ${event.scope} | ${event.lifecycle} | ${event.origin} |`,
    "",
    event.description,
    "",
    `Delivery: ${event.delivery ?? SCOPE_RULES[event.scope]}`
  ]
  if (event.migration !== undefined) {
    lines.push(
      "",
      `Migration: ${event.migration.note}`,
      "",
      `Replaced by: ${event.migration.replacedBy.map((type) => `[${code(type)}](#${anchor(type)})`).join(", ")}`
    )
  }
  lines.push("", payloadSection(schema))
  if (event.unexpressible.length > 0) {
    lines.push(
      "",
      "Enforced by the decoders but not expressible in the JSON Schema:",
      "",
      ...event.unexpressible.map((rule) => `- ${rule}`)
    )
  }
  return lines.join("\n")
}

const collectDefinitions = (registry: Registry<EventDefinition>): ReadonlyMap<string, Json> => {
  const definitions = new Map<string, Json>()
  for (const event of registry.events) {
    for (const [name, schema] of Object.entries(asJson(payloadJsonSchema(event).$defs))) {
      if (!definitions.has(name)) definitions.set(name, asJson(schema))
    }
  }
  return new Map([...definitions].sort(([a], [b]) => a.localeCompare(b)))
}

const shapeSection = (name: string, schema: Json): string => {
  const lines = [`### Shape ${name}`, ""]
  if (typeof schema.description === "string" && !/^an? /.test(schema.description)) {
    lines.push(schema.description, "")
  }
  const members = asArray(schema.anyOf).map(asJson)
  if (members.length > 0 && members.every((member) => member.type === "object")) {
    lines.push("One of (tagged by `type`):", "", "| `type` | fields |", "|---|---|")
    for (const member of members) {
      const properties = Object.entries(asJson(member.properties))
      const tag = properties.find(([key]) => key === "type")
      const tagSchema = asJson(tag?.[1])
      const tagValue = "const" in tagSchema ? tagSchema.const : asArray(tagSchema.enum)[0]
      const fields = properties
        .filter(([key]) => key !== "type")
        .map(([key, value]) => {
          const property = asJson(value)
          const bounds = boundsOf(property)
          return `${code(key)}: ${typeOf(property)}${bounds.length > 0 ? ` (${bounds.join("; ")})` : ""}`
        })
      lines.push(`| ${jsonLiteral(tagValue)} | ${cell(fields.join(", ") || "—")} |`)
    }
    return lines.join("\n")
  }
  if (schema.type === "object") {
    lines.push(fieldTable(schema))
    return lines.join("\n")
  }
  lines.push(`${cell(typeOf(schema))}`)
  return lines.join("\n")
}

const commandSection = (command: (typeof COMMANDS)[number]): string =>
  [
    `### Command ${command.type}`,
    "",
    command.description,
    "",
    `Bad payload: close ${CLOSE_CODES.find((entry) => entry.reason === command.rejection)?.code} ` +
      `${code(command.rejection)}. Unknown keys are rejected; ids are accepted in any case and ` +
      "canonicalized to uppercase.",
    "",
    fieldTable(asJson(commandJsonSchema(command))),
    ...(command.unexpressible.length > 0
      ? [
          "",
          "Enforced by the decoder but not expressible in the JSON Schema:",
          "",
          ...command.unexpressible.map((rule) => `- ${rule}`)
        ]
      : [])
  ].join("\n")

const ENVELOPE = `Every frame, both directions, is one JSON text:

\`\`\`json
{ "v": ${PROTOCOL_VERSION}, "t": "<event_type>", "d": { } }
\`\`\`

| key | rule |
|---|---|
| \`v\` | protocol version, exactly \`${PROTOCOL_VERSION}\` |
| \`t\` | event or command name, ${code(`${EVENT_TYPE_PATTERN.source}`)} |
| \`d\` | payload, a JSON object |
| \`pos\` | server → client, only on a connection that opted in to recovery (\`recovery=1\`), on recoverable events: \`{ "stream", "epoch", "offset" }\` (\`event_position_schema\` in the manifest; PROTOCOL.md, "Missed-event recovery (ours)") |

- A frame is at most ${MAX_EVENT_BYTES} bytes (UTF-8), in both directions. Inbound frames over the cap are
  refused by the WebSocket layer (close 1009); outbound events over the cap are dropped before any
  recipient sees them.
- Ingress (client → server) is strict: exactly the keys \`v\`, \`t\`, \`d\`, and unknown keys inside \`d\`
  are rejected.
- Clients are tolerant: unknown top-level keys and additive unknown keys inside \`d\` are ignored, an
  unknown \`t\` is ignored, a known \`t\` with an invalid \`d\` is dropped without closing the connection.
- Server-emitted ids are canonical uppercase ULIDs; optional fields are omitted when absent (\`null\` only
  where it means something, e.g. a cleared colour).`

const COMPATIBILITY = `- Changes are additive only: a new optional field, a new event type, a new command. A field is never
  removed, renamed or retyped within a \`schema_version\`; a breaking change is a new \`schema_version\` or a
  new event name.
- Clients ignore what they do not know (unknown event types, unknown fields), so additive changes need no
  coordinated client release.
- \`lifecycle\` is \`active\` or \`deprecated\`. A deprecated event carries a migration note and the events
  that replace it; an active one never carries a note.
- Sunset rule: a deprecated event is removed only after its legacy-emit counters stayed flat for one full
  release window while the replacement counters kept growing, and clients showed no legacy decodes over
  the same window. The removal deletes the emitter, the decoder and the manifest entry in one change.
- Events of origin \`extension\` are ours, beyond the original Filament protocol; original clients ignore
  them.`

const VISIBILITY = `| scope | delivered to |
|---|---|
${(Object.keys(SCOPE_RULES) as ReadonlyArray<EventScope>).map((scope) => `| ${scope} | ${SCOPE_RULES[scope]} |`).join("\n")}

- \`presence_sync\` (scope guild) and \`voice_participant_sync\` (scope channel) are snapshots sent only to the
  subscribing connection, right after an authorized \`subscribe\`.
- A forbidden \`subscribe\` is ignored: no subscription, no event, the connection stays open.
- \`actor_user_id\` is optional; it is included on workspace and friend mutations when the actor is known,
  never on message (except \`message_reaction\`), channel, presence, voice or profile events.
- \`workspace_ip_ban_sync\` goes to every connection subscribed in the guild; it is redacted by design
  (a summary, never addresses).
- After \`workspace_member_remove\` or \`workspace_member_ban\` for a user, that user's connections lose
  their subscriptions in the guild right after the event is delivered.
- User-scoped events reach every open connection of each recipient user.`

/** The text of `docs/GATEWAY_EVENTS.md`. */
export const renderEventCatalog = (registry: Registry<EventDefinition> = Manifest): string => {
  const active = registry.byLifecycle("active")
  const deprecated = registry.byLifecycle("deprecated")
  const original = active.filter((event) => event.origin === "original").length
  const extension = active.length - original
  const index = registry.events.map(
    (event) =>
      `| [${code(event.type)}](#${anchor(event.type)}) | ${event.version} | ${event.scope} | ${event.lifecycle} | ${event.origin} |`
  )
  const definitions = collectDefinitions(registry)
  const sections = [
    "# Gateway events",
    "",
    "<!-- Generated by `npm run docs` from src/protocol (the event registry). Do not edit by hand. -->",
    "",
    `Protocol version ${PROTOCOL_VERSION}: ${active.length} active events (${original} original, ${extension} ` +
      `extension), ${deprecated.length} deprecated, ${COMMANDS.length} ingress commands. The same contract ` +
      "as JSON Schema is in `gateway-events.manifest.json`; connection, auth and limits are in `PROTOCOL.md`.",
    "",
    "## Envelope",
    "",
    ENVELOPE,
    "",
    "## Compatibility rules",
    "",
    COMPATIBILITY,
    "",
    "## Scopes and visibility",
    "",
    VISIBILITY,
    "",
    "## Event index",
    "",
    "| event | schema_version | scope | lifecycle | origin |",
    "|---|---|---|---|---|",
    ...index,
    "",
    "## Events",
    "",
    "Types: ids are canonical uppercase ULIDs (`^[0-9A-HJKMNP-TV-Z]{26}$`); lengths count JavaScript " +
      "characters (UTF-16 code units); integers are JSON integers within ±(2^53 − 1); timestamps are " +
      "unix seconds.",
    "",
    active.map(eventSection).join("\n\n"),
    "",
    "## Deprecated events",
    "",
    deprecated.length === 0 ? "None." : deprecated.map(eventSection).join("\n\n"),
    "",
    "## Shared shapes",
    "",
    [...definitions].map(([name, schema]) => shapeSection(name, schema)).join("\n\n"),
    "",
    "## Ingress commands",
    "",
    COMMANDS.map(commandSection).join("\n\n"),
    "",
    "## Close codes",
    "",
    "| code | reason | meaning | reconnect |",
    "|---|---|---|---|",
    ...CLOSE_CODES.map(
      (entry) =>
        `| ${entry.code} | ${code(entry.reason)} | ${entry.description} | ${
          entry.reconnect ? ("refreshToken" in entry ? "yes, with a fresh token" : "yes") : "no"
        } |`
    ),
    ""
  ]
  return sections.join("\n")
}
