/**
 * The rules of the contract that are code rather than data: cross-field refinements, checks the
 * built-in schema filters do not have, and the client's normalizations. Plain functions with no
 * dependency, so the Effect schemas (through `Refinements.ts`) and the generated client decoders
 * (`src/client/generated/`) run the very same code. A schema names its rule and the rule's JSON
 * arguments in a `RuleAnnotationId` annotation; the decoder generator compiles that to a call.
 */

/** The annotation naming the rule (and its arguments) a filter, transformation or declaration runs. */
export const RuleAnnotationId: unique symbol = Symbol.for("filament-gateway/protocol/Rule")

export interface RuleAnnotation {
  readonly rule: string
  readonly args: ReadonlyArray<unknown>
}

/** UTF-8 byte length of a string, without allocating (isomorphic: no Buffer). */
export const utf8ByteLength = (text: string): number => {
  let bytes = 0
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i)
    if (unit < 0x80) bytes += 1
    else if (unit < 0x800) bytes += 2
    else if (unit >= 0xd800 && unit <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1)
      if (next >= 0xdc00 && next <= 0xdfff) {
        bytes += 4
        i++
      } else bytes += 3
    } else bytes += 3
  }
  return bytes
}

const keyOf = (item: unknown, keyField: string | null): unknown =>
  keyField === null ? item : (item as Readonly<Record<string, unknown>>)[keyField]

/** Declarations: a predicate on the input, which is passed through unchanged. */
export const DECLARATION_RULES = {
  /** A JSON object: not an array, not null. */
  isJsonObject: (input: unknown): input is { readonly [key: string]: unknown } =>
    typeof input === "object" && input !== null && !Array.isArray(input)
}

/** Filters: `true`, or the message of the failure. */
export const FILTER_RULES = {
  maxUtf8Bytes: (text: string, max: number): true | string =>
    utf8ByteLength(text) <= max || `content is over ${max} UTF-8 bytes`,

  /** Unique by `keyField` (the item itself when `null`). */
  uniqueBy: (items: ReadonlyArray<unknown>, keyField: string | null, message: string): true | string =>
    new Set(items.map((item) => keyOf(item, keyField))).size === items.length || message,

  /** At most `max` `fenced_code` tokens. */
  maxFencedCode: (tokens: ReadonlyArray<{ readonly type: string }>, max: number, message: string) =>
    tokens.filter((token) => token.type === "fenced_code").length <= max || message,

  reactionCounts: (
    reaction: {
      readonly count: number
      readonly reacted_by_me?: boolean
      readonly reactor_user_ids?: ReadonlyArray<unknown>
    },
    reactorsMessage: string
  ): true | string => {
    if (reaction.reacted_by_me === true && reaction.count === 0) return "reacted_by_me requires count >= 1"
    if ((reaction.reactor_user_ids?.length ?? 0) > reaction.count) return reactorsMessage
    return true
  },

  /** A message snapshot's content may be empty only when it has attachments. */
  contentOrAttachments: (message: {
    readonly content: string
    readonly attachments?: ReadonlyArray<unknown>
  }): true | string =>
    message.content.length > 0 ||
    (message.attachments ?? []).length > 0 ||
    "content may be empty only when the message has attachments",

  /** The `message_create` command's content rule (reference §3.2), wire and decoded form alike. */
  messageCreateContent: (
    command: { readonly content: string; readonly attachment_ids?: ReadonlyArray<unknown> | null },
    maxBytes: number
  ): true | string => {
    const bytes = utf8ByteLength(command.content)
    if (bytes > maxBytes) return `content is ${bytes} UTF-8 bytes, over ${maxBytes}`
    if (bytes === 0 && (command.attachment_ids?.length ?? 0) === 0)
      return "content may be empty only when attachment_ids is non-empty"
    return true
  },

  /** `updated_fields` objects: at least one of `keys` present. */
  atLeastOneOf: (fields: Readonly<Record<string, unknown>>, keys: ReadonlyArray<string>): true | string =>
    keys.some((key) => fields[key] !== undefined) || `needs at least one of ${keys.join(", ")}`,

  togetherOrNeither: (
    fields: Readonly<Record<string, unknown>>,
    a: string,
    b: string,
    message: string
  ): true | string => (fields[a] === undefined) === (fields[b] === undefined) || message,

  /** `key` may be present only together with `required`. */
  requires: (
    fields: Readonly<Record<string, unknown>>,
    key: string,
    required: string,
    message: string
  ): true | string => fields[key] === undefined || fields[required] !== undefined || message,

  /**
   * A `recovery` stream entry: `recovered: true` carries `replayed` (and no reason but
   * `already_live`), `recovered: false` carries a `reason` (not `already_live`) and no `replayed`;
   * without `recovered` there is neither.
   */
  streamVerdict: (entry: {
    readonly recovered?: boolean
    readonly replayed?: number
    readonly reason?: string
  }): true | string => {
    if (entry.recovered === undefined)
      return (
        (entry.replayed === undefined && entry.reason === undefined) || "replayed and reason need recovered"
      )
    if (entry.recovered)
      return (
        (entry.replayed !== undefined && (entry.reason === undefined || entry.reason === "already_live")) ||
        "recovered: true needs replayed, and no reason but already_live"
      )
    return (
      (entry.reason !== undefined && entry.reason !== "already_live" && entry.replayed === undefined) ||
      "recovered: false needs a reason other than already_live, and no replayed"
    )
  },

  /** 1..`max` characters once trimmed. */
  trimmedLength: (text: string, max: number, message: string): true | string => {
    const length = text.trim().length
    return (length >= 1 && length <= max) || message
  }
}

/** Transformations (decode direction; every encode is the identity). */
export const TRANSFORM_RULES = {
  upperCase: (text: string): string => text.toUpperCase(),
  lowerCase: (text: string): string => text.toLowerCase(),

  /** Duplicates by `keyField` (the item itself when `null`) removed, first occurrence kept, in order. */
  firstBy: <T>(items: ReadonlyArray<T>, keyField: string | null): ReadonlyArray<T> => {
    const seen = new Set<unknown>()
    const out: Array<T> = []
    for (const item of items) {
      const key = keyOf(item, keyField)
      if (!seen.has(key)) {
        seen.add(key)
        out.push(item)
      }
    }
    return out
  },

  /** Absent `keys` become empty lists. */
  defaultEmptyLists: <T extends object>(value: T, keys: ReadonlyArray<string>): T => {
    const out: Record<string, unknown> = { ...(value as Readonly<Record<string, unknown>>) }
    for (const key of keys) out[key] ??= []
    return out as T
  },

  /** `message_create`: null or absent `attachment_ids` become `[]`, duplicates removed in order. */
  messageCreateCommand: (wire: {
    readonly guild_id: string
    readonly channel_id: string
    readonly content: string
    readonly attachment_ids?: ReadonlyArray<string> | null
  }) => ({
    guild_id: wire.guild_id,
    channel_id: wire.channel_id,
    content: wire.content,
    attachment_ids: [...new Set(wire.attachment_ids ?? [])]
  })
}

// `never` parameters: any rule function is assignable, whatever its own parameter types.
type Rule = (value: never, ...args: Array<never>) => unknown

/** The arguments of a rule after its value. */
export type RuleArgs<F extends Rule> = F extends (value: never, ...args: infer P) => unknown ? P : never

export type DeclarationRuleName = keyof typeof DECLARATION_RULES
export type FilterRuleName = keyof typeof FILTER_RULES
export type TransformRuleName = keyof typeof TRANSFORM_RULES
