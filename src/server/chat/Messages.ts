/**
 * The default MessageHandler (the service is in `core/Seams.ts`): it builds a plain-text message snapshot (new ULID, the sender as author, `created_at_unix` now,
 * markdown tokens for plain text). It refuses attachments: it has no attachment store to resolve
 * ids against. A host app replaces it with its own persistence.
 */
import { Clock, Effect, Layer } from "effect"
import { ulid, type MessageId } from "../../protocol/Ids.js"
import type { MarkdownToken } from "../../protocol/Shapes.js"
import { MessageRejected } from "../Errors.js"
import { MessageHandler, type MessageHandlerShape } from "../core/Seams.js"

/** Markdown tokens of plain text: one paragraph, a soft break per newline. */
export const plainTextTokens = (content: string): ReadonlyArray<MarkdownToken> => {
  const tokens: Array<MarkdownToken> = [{ type: "paragraph_start" }]
  content.split(/\r?\n/).forEach((line, index) => {
    if (index > 0) tokens.push({ type: "soft_break" })
    if (line.length > 0) tokens.push({ type: "text", text: line })
  })
  tokens.push({ type: "paragraph_end" })
  return tokens
}

export const plainText: MessageHandlerShape = {
  create: (principal, command) =>
    Effect.gen(function* () {
      if (command.attachment_ids.length > 0) {
        return yield* new MessageRejected({
          reason: "attachments_unsupported",
          detail: "the default message handler has no attachment store"
        })
      }
      const now = yield* Clock.currentTimeMillis
      return {
        message_id: ulid(now) as MessageId,
        guild_id: command.guild_id,
        channel_id: command.channel_id,
        author_id: principal.userId,
        content: command.content,
        markdown_tokens: plainTextTokens(command.content),
        attachments: [],
        reactions: [],
        created_at_unix: Math.floor(now / 1000)
      }
    })
}

export const layerPlainText: Layer.Layer<MessageHandler> = Layer.succeed(MessageHandler, plainText)
