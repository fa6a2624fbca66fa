/**
 * Hand-written wire vectors for every event and command. `valid` payloads must decode (strict and
 * tolerant); `invalid` ones must be rejected by both. An invalid vector that breaks only a rule the
 * JSON Schema cannot express names that rule in `unexpressible` (the ajv parity test excuses exactly
 * those, and checks the rule is listed in the manifest).
 */
import type { GatewayEventType } from "../../src/protocol/Manifest.js"

export interface InvalidVector {
  readonly payload: unknown
  readonly why: string
  readonly unexpressible?: string
}

export interface Vectors {
  readonly valid: ReadonlyArray<Record<string, unknown>>
  readonly invalid: ReadonlyArray<InvalidVector>
}

export const G = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
export const C = "01ARZ3NDEKTSV4RRFFQ69G5FAW"
export const U = "01ARZ3NDEKTSV4RRFFQ69G5FAX"
export const U2 = "01ARZ3NDEKTSV4RRFFQ69G5FAY"
export const M = "01ARZ3NDEKTSV4RRFFQ69G5FAZ"
export const R = "01ARZ3NDEKTSV4RRFFQ69G5FB0"
export const A = "01ARZ3NDEKTSV4RRFFQ69G5FB1"
export const F = "01ARZ3NDEKTSV4RRFFQ69G5FB2"
export const T = 1_710_000_000

const CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
/** `count` distinct canonical ULIDs. */
export const ulids = (count: number): Array<string> =>
  Array.from({ length: count }, (_, i) => {
    let suffix = ""
    for (let n = i, k = 0; k < 4; k++, n = Math.floor(n / 32)) suffix = CROCKFORD[n % 32]! + suffix
    return `01ARZ3NDEKTSV4RRFFQ69G${suffix}`
  })

const attachment = {
  attachment_id: A,
  guild_id: G,
  channel_id: C,
  owner_id: U,
  filename: "report final.pdf",
  mime_type: "application/pdf",
  size_bytes: 1024,
  sha256_hex: "a".repeat(64)
}

const tokens = [
  { type: "paragraph_start" },
  { type: "heading_start", level: 2 },
  { type: "text", text: "hi" },
  { type: "heading_end" },
  { type: "emphasis_start" },
  { type: "emphasis_end" },
  { type: "strong_start" },
  { type: "strong_end" },
  { type: "list_start", ordered: true },
  { type: "list_item_start" },
  { type: "list_item_end" },
  { type: "list_end" },
  { type: "link_start", href: "https://example.com" },
  { type: "link_end" },
  { type: "code", code: "x" },
  { type: "fenced_code", language: "TypeScript", code: "let x = 1" },
  { type: "fenced_code", language: null, code: "" },
  { type: "soft_break" },
  { type: "hard_break" },
  { type: "paragraph_end" }
]

const message = {
  message_id: M,
  guild_id: G,
  channel_id: C,
  author_id: U,
  content: "hi",
  markdown_tokens: [{ type: "paragraph_start" }, { type: "text", text: "hi" }, { type: "paragraph_end" }],
  attachments: [],
  reactions: [],
  created_at_unix: T
}

const participant = {
  user_id: U,
  identity: `u.${U}.${G}.${C}`,
  joined_at_unix: T,
  updated_at_unix: T + 1,
  is_muted: false,
  is_deafened: false,
  is_speaking: true,
  is_video_enabled: false,
  is_screen_share_enabled: true
}

const role = {
  role_id: R,
  name: "moderator",
  position: 2,
  is_system: false,
  permissions: ["manage_roles", "create_message"],
  color_hex: "#00AAFF"
}

const override = { allow: ["create_message"], deny: ["ban_member"] }

const roleOverride = {
  guild_id: G,
  channel_id: C,
  role: "member",
  updated_fields: override,
  updated_at_unix: T,
  actor_user_id: U
}
const permissionOverride = (target_kind: string, target_id: string) => ({
  guild_id: G,
  channel_id: C,
  target_kind,
  target_id,
  updated_fields: override,
  updated_at_unix: T,
  actor_user_id: U
})

const voiceStream = { guild_id: G, channel_id: C, user_id: U, identity: `u.${U}.${G}.${C}`, stream: "camera" }

const with_ = (base: Record<string, unknown>, patch: Record<string, unknown>) => ({ ...base, ...patch })
const without = (base: Record<string, unknown>, key: string) => {
  const copy = { ...base }
  delete copy[key]
  return copy
}

export const EVENT_VECTORS: Record<GatewayEventType, Vectors> = {
  ready: {
    valid: [{ user_id: U }],
    invalid: [
      { payload: { user_id: U.toLowerCase() }, why: "lowercase id (outbound ids are canonical)" },
      { payload: { user_id: 42 }, why: "wrong type" }
    ]
  },
  subscribed: {
    valid: [{ guild_id: G, channel_id: C }],
    invalid: [
      { payload: { guild_id: G, channel_id: "01ARZ3NDEKTSV4RRFFQ69G5FAI" }, why: "I is not Crockford" }
    ]
  },
  unsubscribed: {
    valid: [{ guild_id: G, channel_id: C }],
    invalid: [{ payload: { guild_id: G, channel_id: `${C}0` }, why: "27 characters" }]
  },
  recovery: {
    valid: [
      { streams: [{ stream: `user:${U}`, epoch: "e1", offset: 0 }] },
      {
        guild_id: G,
        channel_id: C,
        streams: [
          { stream: `channel:${G}:${C}`, epoch: "01J0Z", offset: 57, recovered: true, replayed: 15 },
          { stream: `guild:${G}`, epoch: "a-b_c", offset: 9, recovered: false, reason: "position_trimmed" }
        ]
      },
      {
        guild_id: G,
        channel_id: C,
        streams: [
          {
            stream: `guild:${G}`,
            epoch: "e".repeat(64),
            offset: Number.MAX_SAFE_INTEGER,
            recovered: true,
            replayed: 0,
            reason: "already_live"
          }
        ]
      },
      { guild_id: G, channel_id: C, streams: [] }
    ],
    invalid: [
      { payload: { guild_id: G, streams: [] }, why: "guild_id without channel_id" },
      { payload: { channel_id: C, streams: [] }, why: "channel_id without guild_id" },
      {
        payload: { streams: [{ stream: `user:${U.toLowerCase()}`, epoch: "e", offset: 1 }] },
        why: "stream with a lowercase id"
      },
      { payload: { streams: [{ stream: `room:${U}`, epoch: "e", offset: 1 }] }, why: "unknown stream scope" },
      { payload: { streams: [{ stream: `user:${U}`, epoch: "", offset: 1 }] }, why: "empty epoch" },
      { payload: { streams: [{ stream: `user:${U}`, epoch: "a:b", offset: 1 }] }, why: "epoch with a colon" },
      {
        payload: { streams: [{ stream: `user:${U}`, epoch: "e".repeat(65), offset: 1 }] },
        why: "65-char epoch"
      },
      { payload: { streams: [{ stream: `user:${U}`, epoch: "e", offset: -1 }] }, why: "negative offset" },
      { payload: { streams: [{ stream: `user:${U}`, epoch: "e", offset: 1.5 }] }, why: "fractional offset" },
      { payload: { streams: [{ stream: `user:${U}`, epoch: "e", offset: 2 ** 53 }] }, why: "unsafe offset" },
      {
        payload: { streams: [{ stream: `user:${U}`, epoch: "e", offset: 1, recovered: true }] },
        why: "recovered without replayed"
      },
      {
        payload: { streams: [{ stream: `user:${U}`, epoch: "e", offset: 1, recovered: false }] },
        why: "not recovered without a reason"
      },
      {
        payload: {
          streams: [{ stream: `user:${U}`, epoch: "e", offset: 1, recovered: false, reason: "already_live" }]
        },
        why: "already_live is not a failure"
      },
      {
        payload: {
          streams: [
            {
              stream: `user:${U}`,
              epoch: "e",
              offset: 1,
              recovered: false,
              reason: "epoch_changed",
              replayed: 0
            }
          ]
        },
        why: "not recovered with replayed"
      },
      {
        payload: {
          streams: [
            {
              stream: `user:${U}`,
              epoch: "e",
              offset: 1,
              recovered: true,
              replayed: 1,
              reason: "epoch_changed"
            }
          ]
        },
        why: "recovered with a failure reason"
      },
      {
        payload: { streams: [{ stream: `user:${U}`, epoch: "e", offset: 1, replayed: 3 }] },
        why: "replayed without recovered"
      },
      {
        payload: {
          streams: [{ stream: `user:${U}`, epoch: "e", offset: 1, recovered: false, reason: "lost" }]
        },
        why: "unknown reason"
      },
      {
        payload: {
          streams: [
            { stream: `user:${U}`, epoch: "e", offset: 1 },
            { stream: `user:${U2}`, epoch: "e", offset: 1 },
            { stream: `guild:${G}`, epoch: "e", offset: 1 }
          ]
        },
        why: "3 streams"
      },
      { payload: { guild_id: G, channel_id: C }, why: "missing streams" }
    ]
  },
  message_create: {
    valid: [
      message,
      with_(message, { markdown_tokens: tokens }),
      with_(message, { content: "", markdown_tokens: [], attachments: [attachment] }),
      with_(message, {
        reactions: [
          { emoji: "👍", count: 2, reacted_by_me: true, reactor_user_ids: [U, U2] },
          { emoji: "🎉", count: 0 }
        ]
      }),
      without(without(message, "attachments"), "reactions"),
      with_(message, { content: "é".repeat(1000) })
    ],
    invalid: [
      { payload: with_(message, { content: "" }), why: "empty content without attachments" },
      { payload: with_(message, { content: "x".repeat(2001) }), why: "content over 2000 chars" },
      {
        payload: with_(message, { content: "é".repeat(1001) }),
        why: "content over 2000 UTF-8 bytes",
        unexpressible: "content is at most 2000 UTF-8 bytes"
      },
      { payload: with_(message, { attachments: Array(6).fill(attachment) }), why: "6 attachments" },
      { payload: with_(message, { attachments: {} }), why: "attachments not an array" },
      { payload: with_(message, { reactions: null }), why: "reactions null" },
      { payload: with_(message, { created_at_unix: 0 }), why: "timestamp 0" },
      { payload: with_(message, { created_at_unix: 1.5 }), why: "fractional timestamp" },
      { payload: with_(message, { created_at_unix: 2 ** 53 }), why: "timestamp over the safe range" },
      { payload: with_(message, { markdown_tokens: [{ type: "blink" }] }), why: "unknown token type" },
      {
        payload: with_(message, { markdown_tokens: [{ type: "heading_start", level: 7 }] }),
        why: "heading level 7"
      },
      {
        payload: with_(message, { markdown_tokens: [{ type: "text", text: "x".repeat(4097) }] }),
        why: "inline text over 4096"
      },
      {
        payload: with_(message, {
          markdown_tokens: [{ type: "fenced_code", language: "c#", code: "" }]
        }),
        why: "language outside [A-Za-z0-9_.+-]"
      },
      {
        payload: with_(message, {
          markdown_tokens: [{ type: "fenced_code", language: "a".repeat(33), code: "" }]
        }),
        why: "language over 32 chars"
      },
      {
        payload: with_(message, {
          markdown_tokens: [{ type: "fenced_code", language: null, code: "x".repeat(16385) }]
        }),
        why: "fenced code over 16384"
      },
      {
        payload: with_(message, {
          markdown_tokens: Array(65).fill({ type: "fenced_code", language: null, code: "" })
        }),
        why: "65 fenced code blocks",
        unexpressible: "markdown_tokens: at most 64 fenced_code tokens per token list"
      },
      {
        payload: with_(message, { markdown_tokens: Array(4097).fill({ type: "soft_break" }) }),
        why: "4097 tokens"
      },
      {
        payload: with_(message, { attachments: [with_(attachment, { filename: "a/b" })] }),
        why: "slash in filename"
      },
      {
        payload: with_(message, { attachments: [with_(attachment, { filename: "   " })] }),
        why: "blank filename"
      },
      {
        payload: with_(message, { attachments: [with_(attachment, { sha256_hex: "a".repeat(63) })] }),
        why: "short sha256"
      },
      { payload: with_(message, { attachments: [with_(attachment, { size_bytes: 0 })] }), why: "size 0" },
      {
        payload: with_(message, { attachments: [with_(attachment, { mime_type: "x".repeat(129) })] }),
        why: "mime type over 128"
      },
      {
        payload: with_(message, { reactions: [{ emoji: "👍", count: 0, reacted_by_me: true }] }),
        why: "reacted_by_me with count 0"
      },
      {
        payload: with_(message, { reactions: [{ emoji: "👍", count: 1, reactor_user_ids: [U, U2] }] }),
        why: "more reactors than count",
        unexpressible: "reactions[].reactor_user_ids has at most `count` entries"
      },
      {
        payload: with_(message, { reactions: [{ emoji: "👍", count: 5, reactor_user_ids: [U, U] }] }),
        why: "duplicate reactor ids"
      },
      { payload: with_(message, { reactions: [{ emoji: "a b", count: 1 }] }), why: "whitespace in emoji" },
      { payload: with_(message, { reactions: [{ emoji: "", count: 1 }] }), why: "empty emoji" },
      { payload: with_(message, { reactions: [{ emoji: "x".repeat(33), count: 1 }] }), why: "emoji over 32" },
      {
        payload: with_(message, { reactions: Array(65).fill({ emoji: "👍", count: 1 }) }),
        why: "65 reactions"
      }
    ]
  },
  message_update: {
    valid: [
      {
        guild_id: G,
        channel_id: C,
        message_id: M,
        updated_fields: { content: "edited", markdown_tokens: [{ type: "text", text: "edited" }] },
        updated_at_unix: T
      },
      {
        guild_id: G,
        channel_id: C,
        message_id: M,
        updated_fields: { markdown_tokens: [] },
        updated_at_unix: T
      }
    ],
    invalid: [
      {
        payload: { guild_id: G, channel_id: C, message_id: M, updated_fields: {}, updated_at_unix: T },
        why: "no updated field"
      },
      {
        payload: {
          guild_id: G,
          channel_id: C,
          message_id: M,
          updated_fields: { content: "x".repeat(2001) },
          updated_at_unix: T
        },
        why: "content over 2000"
      },
      {
        payload: {
          guild_id: G,
          channel_id: C,
          message_id: M,
          updated_fields: { content: "€".repeat(700) },
          updated_at_unix: T
        },
        why: "content over 2000 UTF-8 bytes",
        unexpressible: "updated_fields.content is at most 2000 UTF-8 bytes"
      },
      {
        payload: {
          guild_id: G,
          channel_id: C,
          message_id: M,
          updated_fields: {
            markdown_tokens: Array(65).fill({ type: "fenced_code", language: "rust", code: "" })
          },
          updated_at_unix: T
        },
        why: "65 fenced code blocks",
        unexpressible: "updated_fields.markdown_tokens: at most 64 fenced_code tokens per token list"
      }
    ]
  },
  message_delete: {
    valid: [{ guild_id: G, channel_id: C, message_id: M, deleted_at_unix: T }],
    invalid: [
      { payload: { guild_id: G, channel_id: C, message_id: M, deleted_at_unix: -1 }, why: "negative" }
    ]
  },
  message_reaction: {
    valid: [
      {
        guild_id: G,
        channel_id: C,
        message_id: M,
        emoji: "👍",
        count: 1,
        operation: "add",
        actor_user_id: U
      },
      {
        guild_id: G,
        channel_id: C,
        message_id: M,
        emoji: "👍",
        count: 0,
        operation: "remove",
        actor_user_id: U
      },
      { guild_id: G, channel_id: C, message_id: M, emoji: "🎉", count: 4 }
    ],
    invalid: [
      {
        payload: { guild_id: G, channel_id: C, message_id: M, emoji: "👍", count: 1, operation: "add" },
        why: "operation without actor"
      },
      {
        payload: { guild_id: G, channel_id: C, message_id: M, emoji: "👍", count: 1, actor_user_id: U },
        why: "actor without operation"
      },
      {
        payload: {
          guild_id: G,
          channel_id: C,
          message_id: M,
          emoji: "👍",
          count: 1,
          operation: "toggle",
          actor_user_id: U
        },
        why: "unknown operation"
      },
      {
        payload: { guild_id: G, channel_id: C, message_id: M, emoji: "👍", count: -1 },
        why: "negative count"
      },
      {
        payload: { guild_id: G, channel_id: C, message_id: M, emoji: " ", count: 1 },
        why: "whitespace emoji"
      }
    ]
  },
  channel_create: {
    valid: [
      { guild_id: G, channel: { channel_id: C, name: "general", kind: "text" } },
      { guild_id: G, channel: { channel_id: C, name: "x".repeat(64), kind: "voice" } }
    ],
    invalid: [
      {
        payload: { guild_id: G, channel: { channel_id: C, name: "x".repeat(65), kind: "text" } },
        why: "name over 64"
      },
      {
        payload: { guild_id: G, channel: { channel_id: C, name: "a\u0007b", kind: "text" } },
        why: "control char"
      },
      { payload: { guild_id: G, channel: { channel_id: C, name: "  ", kind: "text" } }, why: "blank name" },
      {
        payload: { guild_id: G, channel: { channel_id: C, name: "general", kind: "stage" } },
        why: "unknown kind"
      }
    ]
  },
  presence_sync: {
    valid: [
      { guild_id: G, user_ids: [] },
      { guild_id: G, user_ids: [U, U2, U] },
      { guild_id: G, user_ids: ulids(1024) }
    ],
    invalid: [
      { payload: { guild_id: G, user_ids: ulids(1025) }, why: "1025 ids" },
      { payload: { guild_id: G, user_ids: [U, "bad"] }, why: "one invalid id" },
      { payload: { guild_id: G, user_ids: "" }, why: "not an array" }
    ]
  },
  presence_update: {
    valid: [
      { guild_id: G, user_id: U, status: "online" },
      { guild_id: G, user_id: U, status: "offline" }
    ],
    invalid: [{ payload: { guild_id: G, user_id: U, status: "away" }, why: "unknown status" }]
  },
  voice_participant_sync: {
    valid: [
      { guild_id: G, channel_id: C, participants: [], synced_at_unix: T },
      {
        guild_id: G,
        channel_id: C,
        participants: [
          participant,
          with_(participant, { is_muted: true }),
          with_(participant, { identity: "other" })
        ],
        synced_at_unix: T
      }
    ],
    invalid: [
      {
        payload: {
          guild_id: G,
          channel_id: C,
          participants: Array.from({ length: 513 }, (_, i) => with_(participant, { identity: `i${i}` })),
          synced_at_unix: T
        },
        why: "513 participants"
      },
      {
        payload: {
          guild_id: G,
          channel_id: C,
          participants: [with_(participant, { identity: "" })],
          synced_at_unix: T
        },
        why: "empty identity"
      },
      {
        payload: {
          guild_id: G,
          channel_id: C,
          participants: [with_(participant, { identity: "x".repeat(513) })],
          synced_at_unix: T
        },
        why: "identity over 512"
      },
      {
        payload: {
          guild_id: G,
          channel_id: C,
          participants: [without(participant, "is_muted")],
          synced_at_unix: T
        },
        why: "participant missing a flag"
      }
    ]
  },
  voice_participant_join: {
    valid: [{ guild_id: G, channel_id: C, participant }],
    invalid: [
      {
        payload: { guild_id: G, channel_id: C, participant: with_(participant, { is_muted: "no" }) },
        why: "flag type"
      }
    ]
  },
  voice_participant_leave: {
    valid: [{ guild_id: G, channel_id: C, user_id: U, identity: "user.identity", left_at_unix: T }],
    invalid: [
      {
        payload: { guild_id: G, channel_id: C, user_id: U, identity: "user.identity", left_at_unix: 0 },
        why: "0"
      }
    ]
  },
  voice_participant_update: {
    valid: [
      {
        guild_id: G,
        channel_id: C,
        user_id: U,
        identity: "user.identity",
        updated_fields: { is_speaking: false, is_video_enabled: true, is_screen_share_enabled: false },
        updated_at_unix: T
      },
      {
        guild_id: G,
        channel_id: C,
        user_id: U,
        identity: "user.identity",
        updated_fields: { is_muted: true, is_deafened: true },
        updated_at_unix: T
      }
    ],
    invalid: [
      {
        payload: {
          guild_id: G,
          channel_id: C,
          user_id: U,
          identity: "i",
          updated_fields: {},
          updated_at_unix: T
        },
        why: "no flag"
      },
      {
        payload: {
          guild_id: G,
          channel_id: C,
          user_id: U,
          identity: "i",
          updated_fields: { is_muted: 1 },
          updated_at_unix: T
        },
        why: "flag not boolean"
      }
    ]
  },
  voice_stream_publish: {
    valid: [
      with_(voiceStream, { published_at_unix: T }),
      with_(voiceStream, { stream: "screen_share", published_at_unix: T })
    ],
    invalid: [
      { payload: with_(voiceStream, { stream: "video", published_at_unix: T }), why: "unknown stream" }
    ]
  },
  voice_stream_unpublish: {
    valid: [with_(voiceStream, { stream: "microphone", unpublished_at_unix: T })],
    invalid: [{ payload: with_(voiceStream, { published_at_unix: T }), why: "publish shape" }]
  },
  workspace_update: {
    valid: [
      { guild_id: G, updated_fields: { name: "Ops" }, updated_at_unix: T, actor_user_id: U },
      { guild_id: G, updated_fields: { visibility: "private" }, updated_at_unix: T }
    ],
    invalid: [
      { payload: { guild_id: G, updated_fields: {}, updated_at_unix: T }, why: "no field" },
      {
        payload: { guild_id: G, updated_fields: { visibility: "secret" }, updated_at_unix: T },
        why: "visibility"
      },
      {
        payload: { guild_id: G, updated_fields: { name: "x".repeat(65) }, updated_at_unix: T },
        why: "name over 64"
      }
    ]
  },
  workspace_member_add: {
    valid: [{ guild_id: G, user_id: U, role: "member", joined_at_unix: T, actor_user_id: U2 }],
    invalid: [{ payload: { guild_id: G, user_id: U, role: "admin", joined_at_unix: T }, why: "unknown role" }]
  },
  workspace_member_update: {
    valid: [
      { guild_id: G, user_id: U, updated_fields: { role: "owner" }, updated_at_unix: T, actor_user_id: U2 }
    ],
    invalid: [
      { payload: { guild_id: G, user_id: U, updated_fields: {}, updated_at_unix: T }, why: "role absent" }
    ]
  },
  workspace_member_remove: {
    valid: [
      { guild_id: G, user_id: U, reason: "ban", removed_at_unix: T, actor_user_id: U2 },
      { guild_id: G, user_id: U, reason: "leave", removed_at_unix: T }
    ],
    invalid: [{ payload: { guild_id: G, user_id: U, reason: "timeout", removed_at_unix: T }, why: "reason" }]
  },
  workspace_member_ban: {
    valid: [{ guild_id: G, user_id: U, banned_at_unix: T, actor_user_id: U2 }],
    invalid: [
      { payload: { guild_id: G, user_id: U, banned_at_unix: T, actor_user_id: "x" }, why: "bad actor" }
    ]
  },
  workspace_role_create: {
    valid: [
      { guild_id: G, role, actor_user_id: U },
      { guild_id: G, role: without(role, "color_hex") },
      { guild_id: G, role: with_(role, { color_hex: null, position: 0 }) },
      { guild_id: G, role: with_(role, { position: -5, permissions: [] }) }
    ],
    invalid: [
      { payload: { guild_id: G, role: with_(role, { color_hex: "#12Z45G" }) }, why: "bad colour" },
      { payload: { guild_id: G, role: with_(role, { color_hex: "00AAFF" }) }, why: "colour without #" },
      { payload: { guild_id: G, role: with_(role, { name: "x".repeat(33) }) }, why: "name over 32" },
      { payload: { guild_id: G, role: with_(role, { position: 2 ** 31 }) }, why: "position over i32" },
      { payload: { guild_id: G, role: with_(role, { permissions: ["fly"] }) }, why: "unknown permission" }
    ]
  },
  workspace_role_update: {
    valid: [
      { guild_id: G, role_id: R, updated_fields: { name: "  mods  " }, updated_at_unix: T, actor_user_id: U },
      { guild_id: G, role_id: R, updated_fields: { permissions: [] }, updated_at_unix: T },
      { guild_id: G, role_id: R, updated_fields: { color_hex: null }, updated_at_unix: T },
      { guild_id: G, role_id: R, updated_fields: { color_hex: "#abcdef" }, updated_at_unix: T }
    ],
    invalid: [
      { payload: { guild_id: G, role_id: R, updated_fields: {}, updated_at_unix: T }, why: "no field" },
      {
        payload: { guild_id: G, role_id: R, updated_fields: { name: "   " }, updated_at_unix: T },
        why: "blank name",
        unexpressible: "updated_fields.name trimmed is 1..32 characters"
      },
      {
        payload: {
          guild_id: G,
          role_id: R,
          updated_fields: { name: ` ${"x".repeat(33)} ` },
          updated_at_unix: T
        },
        why: "trimmed name over 32",
        unexpressible: "updated_fields.name trimmed is 1..32 characters"
      },
      {
        payload: { guild_id: G, role_id: R, updated_fields: { name: "" }, updated_at_unix: T },
        why: "empty name"
      }
    ]
  },
  workspace_role_delete: {
    valid: [{ guild_id: G, role_id: R, deleted_at_unix: T }],
    invalid: [{ payload: { guild_id: G, role_id: "member", deleted_at_unix: T }, why: "role name, not id" }]
  },
  workspace_role_reorder: {
    valid: [
      { guild_id: G, role_ids: [R, M], updated_at_unix: T, actor_user_id: U },
      { guild_id: G, role_ids: ulids(64), updated_at_unix: T }
    ],
    invalid: [{ payload: { guild_id: G, role_ids: ulids(65), updated_at_unix: T }, why: "65 ids" }]
  },
  workspace_role_assignment_add: {
    valid: [{ guild_id: G, user_id: U, role_id: R, assigned_at_unix: T, actor_user_id: U2 }],
    invalid: [{ payload: { guild_id: G, user_id: U, role_id: R, removed_at_unix: T }, why: "remove shape" }]
  },
  workspace_role_assignment_remove: {
    valid: [{ guild_id: G, user_id: U, role_id: R, removed_at_unix: T }],
    invalid: [{ payload: { guild_id: G, user_id: U, role_id: R, assigned_at_unix: T }, why: "add shape" }]
  },
  workspace_channel_role_override_update: {
    valid: [roleOverride, with_(roleOverride, { role: "owner", updated_fields: { allow: [], deny: [] } })],
    invalid: [
      { payload: permissionOverride("member", U), why: "target shape under the role name" },
      {
        payload: with_(roleOverride, { updated_fields: { allow: ["fly"], deny: [] } }),
        why: "unknown permission"
      }
    ]
  },
  workspace_channel_permission_override_update: {
    valid: [permissionOverride("role", R), permissionOverride("member", U)],
    invalid: [
      {
        payload: permissionOverride("role", "member"),
        why: "legacy role name as role target (reference §11.1)"
      },
      { payload: permissionOverride("member", "moderator"), why: "role name as member target" },
      { payload: permissionOverride("channel", R), why: "unknown target kind" },
      { payload: roleOverride, why: "role shape under the permission name" }
    ]
  },
  workspace_ip_ban_sync: {
    valid: [
      { guild_id: G, summary: { action: "remove", changed_count: 1 }, updated_at_unix: T, actor_user_id: U },
      { guild_id: G, summary: { action: "upsert", changed_count: 0 }, updated_at_unix: T }
    ],
    invalid: [
      { payload: { guild_id: G, summary: { action: "upsert" }, updated_at_unix: T }, why: "no count" },
      {
        payload: { guild_id: G, summary: { action: "upsert", changed_count: 1.5 }, updated_at_unix: T },
        why: "1.5"
      }
    ]
  },
  profile_update: {
    valid: [
      {
        user_id: U,
        updated_fields: { username: "alice", about_markdown: "**hi**", about_markdown_tokens: tokens },
        updated_at_unix: T
      },
      { user_id: U, updated_fields: { about_markdown: "" }, updated_at_unix: T },
      { user_id: U, updated_fields: { username: "x".repeat(64) }, updated_at_unix: T }
    ],
    invalid: [
      {
        payload: { user_id: U, updated_fields: { username: "" }, updated_at_unix: T },
        why: "empty username"
      },
      {
        payload: { user_id: U, updated_fields: { username: "x".repeat(65) }, updated_at_unix: T },
        why: "65"
      },
      {
        payload: { user_id: U, updated_fields: { about_markdown: "a\u0000b" }, updated_at_unix: T },
        why: "NUL"
      },
      {
        payload: { user_id: U, updated_fields: { about_markdown: "x".repeat(2049) }, updated_at_unix: T },
        why: "about over 2048"
      },
      {
        payload: { user_id: U, updated_fields: { about_markdown_tokens: [] }, updated_at_unix: T },
        why: "tokens only"
      },
      {
        payload: {
          user_id: U,
          updated_fields: {
            about_markdown: "x",
            about_markdown_tokens: Array(65).fill({ type: "fenced_code", language: "js", code: "" })
          },
          updated_at_unix: T
        },
        why: "65 fenced code blocks",
        unexpressible: "updated_fields.about_markdown_tokens: at most 64 fenced_code tokens per token list"
      }
    ]
  },
  profile_avatar_update: {
    valid: [{ user_id: U, avatar_version: 0, updated_at_unix: T }],
    invalid: [{ payload: { user_id: U, avatar_version: "1", updated_at_unix: T }, why: "string version" }]
  },
  profile_banner_update: {
    valid: [{ user_id: U, banner_version: T, updated_at_unix: T }],
    invalid: [{ payload: { user_id: U, banner_version: -1, updated_at_unix: T }, why: "negative version" }]
  },
  friend_request_create: {
    valid: [
      {
        request_id: F,
        sender_user_id: U,
        sender_username: "alice",
        recipient_user_id: U2,
        recipient_username: "bob",
        created_at_unix: T
      }
    ],
    invalid: [
      {
        payload: {
          request_id: F,
          sender_user_id: U,
          sender_username: "alice",
          recipient_user_id: U2,
          recipient_username: "x".repeat(65),
          created_at_unix: T
        },
        why: "username over 64"
      }
    ]
  },
  friend_request_update: {
    valid: [
      {
        request_id: F,
        state: "accepted",
        user_id: U,
        friend_user_id: U2,
        friend_username: "bob",
        friendship_created_at_unix: T,
        updated_at_unix: T,
        actor_user_id: U
      }
    ],
    invalid: [
      {
        payload: {
          request_id: F,
          state: "declined",
          user_id: U,
          friend_user_id: U2,
          friend_username: "bob",
          friendship_created_at_unix: T,
          updated_at_unix: T
        },
        why: "state other than accepted"
      }
    ]
  },
  friend_request_delete: {
    valid: [{ request_id: F, deleted_at_unix: T, actor_user_id: U }],
    invalid: [{ payload: { request_id: F.toLowerCase(), deleted_at_unix: T }, why: "lowercase id" }]
  },
  friend_remove: {
    valid: [{ user_id: U, friend_user_id: U2, removed_at_unix: T, actor_user_id: U }],
    invalid: [{ payload: { user_id: U, friend_user_id: U2, removed_at_unix: "now" }, why: "timestamp type" }]
  },
  workspace_channel_override_update: {
    valid: [roleOverride, permissionOverride("role", R), permissionOverride("member", U)],
    invalid: [
      { payload: permissionOverride("role", "member"), why: "legacy role name as role target" },
      { payload: with_(roleOverride, { role: "admin" }), why: "unknown role" }
    ]
  }
}

// -------------------------------------------------------------------------------------------------------
// Commands (wire `d` of ingress frames)
// -------------------------------------------------------------------------------------------------------

export const COMMAND_VECTORS: Record<"subscribe" | "unsubscribe" | "message_create", Vectors> = {
  subscribe: {
    valid: [
      { guild_id: G, channel_id: C },
      { guild_id: G.toLowerCase(), channel_id: C },
      { guild_id: G, channel_id: C, since: {} },
      { guild_id: G, channel_id: C, since: { channel: { epoch: "e1", offset: 0 } } },
      {
        guild_id: G,
        channel_id: C,
        since: {
          channel: { epoch: "01J0Z-x_y", offset: 57 },
          guild: { epoch: "e".repeat(64), offset: Number.MAX_SAFE_INTEGER }
        }
      }
    ],
    invalid: [
      { payload: { guild_id: G }, why: "missing channel_id" },
      { payload: { guild_id: G, channel_id: C, since: null }, why: "null since" },
      {
        payload: { guild_id: G, channel_id: C, since: { user: { epoch: "e", offset: 1 } } },
        why: "since.user"
      },
      {
        payload: { guild_id: G, channel_id: C, since: { channel: { epoch: "e" } } },
        why: "position without offset"
      },
      {
        payload: { guild_id: G, channel_id: C, since: { channel: { epoch: "e", offset: 1, stream: "x" } } },
        why: "unknown key in a position"
      },
      {
        payload: { guild_id: G, channel_id: C, since: { guild: { epoch: "", offset: 1 } } },
        why: "empty epoch"
      },
      {
        payload: { guild_id: G, channel_id: C, since: { guild: { epoch: "e".repeat(65), offset: 1 } } },
        why: "65-char epoch"
      },
      {
        payload: { guild_id: G, channel_id: C, since: { guild: { epoch: "a:b", offset: 1 } } },
        why: "epoch with :"
      },
      {
        payload: { guild_id: G, channel_id: C, since: { channel: { epoch: "e", offset: -1 } } },
        why: "negative"
      },
      {
        payload: { guild_id: G, channel_id: C, since: { channel: { epoch: "e", offset: 0.5 } } },
        why: "fraction"
      },
      {
        payload: { guild_id: G, channel_id: C, since: { channel: { epoch: "e", offset: 2 ** 53 } } },
        why: "offset beyond the safe integers"
      },
      {
        payload: { guild_id: G, channel_id: C, since: { channel: { epoch: "e", offset: "1" } } },
        why: "string offset"
      },
      { payload: { guild_id: G, channel_id: 1 }, why: "wrong type" },
      { payload: { guild_id: G, channel_id: C, extra: true }, why: "unknown key" },
      { payload: { guild_id: "01ARZ3NDEKTSV4RRFFQ69G5FAU", channel_id: C }, why: "U is not Crockford" }
    ]
  },
  unsubscribe: {
    valid: [{ guild_id: G, channel_id: C.toLowerCase() }],
    invalid: [
      { payload: { channel_id: C }, why: "missing guild_id" },
      { payload: { guild_id: G, channel_id: null }, why: "null id" },
      { payload: { guild_id: G, channel_id: C, v: 1 }, why: "unknown key" }
    ]
  },
  message_create: {
    valid: [
      { guild_id: G, channel_id: C, content: "hello" },
      { guild_id: G, channel_id: C, content: "hello", attachment_ids: null },
      { guild_id: G, channel_id: C, content: "", attachment_ids: [A] },
      { guild_id: G, channel_id: C, content: "x".repeat(2000), attachment_ids: [] },
      { guild_id: G, channel_id: C, content: "é".repeat(1000) },
      { guild_id: G, channel_id: C, content: "a", attachment_ids: [A, A.toLowerCase(), M] }
    ],
    invalid: [
      { payload: { guild_id: G, channel_id: C }, why: "missing content" },
      { payload: { guild_id: G, channel_id: C, content: 5 }, why: "content not a string" },
      { payload: { guild_id: G, channel_id: C, content: "" }, why: "empty without attachments" },
      { payload: { guild_id: G, channel_id: C, content: "", attachment_ids: [] }, why: "empty, empty list" },
      { payload: { guild_id: G, channel_id: C, content: "", attachment_ids: null }, why: "empty, null list" },
      { payload: { guild_id: G, channel_id: C, content: "x".repeat(2001) }, why: "2001 bytes" },
      {
        payload: { guild_id: G, channel_id: C, content: "é".repeat(1001) },
        why: "2002 UTF-8 bytes in 1001 chars",
        unexpressible: "content is at most 2000 UTF-8 bytes"
      },
      {
        payload: { guild_id: G, channel_id: C, content: "a", attachment_ids: [A, M, R, U, U2, F] },
        why: "6 attachment ids"
      },
      {
        payload: { guild_id: G, channel_id: C, content: "a", attachment_ids: ["nope"] },
        why: "bad attachment id"
      },
      { payload: { guild_id: G, channel_id: C, content: "a", attachment_ids: A }, why: "ids not an array" },
      { payload: { guild_id: G, channel_id: C, content: "a", nonce: "1" }, why: "unknown key" }
    ]
  }
}
