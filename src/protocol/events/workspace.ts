/** Guild-scoped workspace events: to every connection subscribed in the guild. */
import { Schema } from "effect"
import { defineEvent } from "../EventDefinition.js"
import { ChannelId, GuildId, RoleId, UserId } from "../Ids.js"
import { ruleFilter } from "../Refinements.js"
import {
  atLeastOneOf,
  ChannelSummary,
  ColorHex,
  displayName,
  GuildVisibility,
  IpBanAction,
  MAX_ROLE_NAME_CHARS,
  MAX_ROLE_REORDER_IDS,
  MAX_WORKSPACE_NAME_CHARS,
  MemberRemoveReason,
  NonNegativeCount,
  PermissionOverrideFields,
  Permissions,
  Role,
  UnixSeconds,
  WorkspaceRole
} from "../Shapes.js"

/** Optional on every workspace mutation; our server includes it whenever the actor is known. */
const actor = { actor_user_id: Schema.optionalWith(UserId, { exact: true }) }

export const ChannelCreate = defineEvent({
  type: "channel_create",
  version: 1,
  scope: "guild",
  description: "A channel was created in the guild.",
  payload: Schema.Struct({ guild_id: GuildId, channel: ChannelSummary })
})

export const WorkspaceUpdate = defineEvent({
  type: "workspace_update",
  version: 1,
  scope: "guild",
  description: "The guild's name or visibility changed; only changed fields are present.",
  payload: Schema.Struct({
    guild_id: GuildId,
    updated_fields: Schema.Struct({
      name: Schema.optionalWith(displayName(MAX_WORKSPACE_NAME_CHARS), { exact: true }),
      visibility: Schema.optionalWith(GuildVisibility, { exact: true })
    }).pipe(atLeastOneOf("name", "visibility")),
    updated_at_unix: UnixSeconds,
    ...actor
  })
})

export const WorkspaceMemberAdd = defineEvent({
  type: "workspace_member_add",
  version: 1,
  scope: "guild",
  description: "A user joined the guild (added, or a public join); the original server sends role member.",
  payload: Schema.Struct({
    guild_id: GuildId,
    user_id: UserId,
    role: Role,
    joined_at_unix: UnixSeconds,
    ...actor
  })
})

export const WorkspaceMemberUpdate = defineEvent({
  type: "workspace_member_update",
  version: 1,
  scope: "guild",
  description: "A member's legacy role changed; `updated_fields.role` is always present.",
  payload: Schema.Struct({
    guild_id: GuildId,
    user_id: UserId,
    updated_fields: Schema.Struct({ role: Role }),
    updated_at_unix: UnixSeconds,
    ...actor
  })
})

export const WorkspaceMemberRemove = defineEvent({
  type: "workspace_member_remove",
  version: 1,
  scope: "guild",
  description:
    "A member left the guild (kick, ban or leave). Their connections lose their subscriptions in " +
    "the guild right after this event is delivered.",
  payload: Schema.Struct({
    guild_id: GuildId,
    user_id: UserId,
    reason: MemberRemoveReason,
    removed_at_unix: UnixSeconds,
    ...actor
  })
})

export const WorkspaceMemberBan = defineEvent({
  type: "workspace_member_ban",
  version: 1,
  scope: "guild",
  description:
    "A member was banned; followed by `workspace_member_remove` with reason ban and the same " +
    "timestamp. Their connections lose their subscriptions in the guild.",
  payload: Schema.Struct({ guild_id: GuildId, user_id: UserId, banned_at_unix: UnixSeconds, ...actor })
})

export const WorkspaceRoleCreate = defineEvent({
  type: "workspace_role_create",
  version: 1,
  scope: "guild",
  description:
    "A workspace role was created. `position` may be below 1 (the server allows it for owners; " +
    "the original web client rejected such events).",
  payload: Schema.Struct({ guild_id: GuildId, role: WorkspaceRole, ...actor })
})

export const ROLE_NAME_TRIMMED_RULE = `updated_fields.name trimmed is 1..${MAX_ROLE_NAME_CHARS} characters`

export const WorkspaceRoleUpdate = defineEvent({
  type: "workspace_role_update",
  version: 1,
  scope: "guild",
  description:
    "A workspace role changed; each field is present only if it was changed. `name` is the " +
    "requested value as sent (untrimmed); `color_hex` null means the colour was cleared.",
  payload: Schema.Struct({
    guild_id: GuildId,
    role_id: RoleId,
    updated_fields: Schema.Struct({
      name: Schema.optionalWith(
        Schema.String.pipe(
          Schema.minLength(1),
          ruleFilter("trimmedLength", [MAX_ROLE_NAME_CHARS, ROLE_NAME_TRIMMED_RULE])
        ),
        { exact: true }
      ),
      permissions: Schema.optionalWith(Permissions, { exact: true }),
      color_hex: Schema.optionalWith(Schema.NullOr(ColorHex), { exact: true })
    }).pipe(atLeastOneOf("name", "permissions", "color_hex")),
    updated_at_unix: UnixSeconds,
    ...actor
  }),
  unexpressible: [ROLE_NAME_TRIMMED_RULE]
})

export const WorkspaceRoleDelete = defineEvent({
  type: "workspace_role_delete",
  version: 1,
  scope: "guild",
  description: "A workspace role was deleted.",
  payload: Schema.Struct({ guild_id: GuildId, role_id: RoleId, deleted_at_unix: UnixSeconds, ...actor })
})

export const WorkspaceRoleReorder = defineEvent({
  type: "workspace_role_reorder",
  version: 1,
  scope: "guild",
  description: `The guild's roles were reordered, highest first (at most ${MAX_ROLE_REORDER_IDS}).`,
  payload: Schema.Struct({
    guild_id: GuildId,
    role_ids: Schema.Array(RoleId).pipe(Schema.maxItems(MAX_ROLE_REORDER_IDS)),
    updated_at_unix: UnixSeconds,
    ...actor
  })
})

export const WorkspaceRoleAssignmentAdd = defineEvent({
  type: "workspace_role_assignment_add",
  version: 1,
  scope: "guild",
  description: "A workspace role was assigned to a member.",
  payload: Schema.Struct({
    guild_id: GuildId,
    user_id: UserId,
    role_id: RoleId,
    assigned_at_unix: UnixSeconds,
    ...actor
  })
})

export const WorkspaceRoleAssignmentRemove = defineEvent({
  type: "workspace_role_assignment_remove",
  version: 1,
  scope: "guild",
  description: "A workspace role was removed from a member.",
  payload: Schema.Struct({
    guild_id: GuildId,
    user_id: UserId,
    role_id: RoleId,
    removed_at_unix: UnixSeconds,
    ...actor
  })
})

const roleOverrideFields = {
  guild_id: GuildId,
  channel_id: ChannelId,
  role: Role,
  updated_fields: PermissionOverrideFields,
  updated_at_unix: UnixSeconds,
  ...actor
}

const overrideTarget = {
  guild_id: GuildId,
  channel_id: ChannelId,
  updated_fields: PermissionOverrideFields,
  updated_at_unix: UnixSeconds,
  ...actor
}

/** Role target: a workspace role ULID, as the server sends (docs/CLIENT.md, Decoding). */
const RoleTargetOverride = Schema.Struct({
  ...overrideTarget,
  target_kind: Schema.Literal("role"),
  target_id: RoleId
})
/** Member target: a user ULID. */
const MemberTargetOverride = Schema.Struct({
  ...overrideTarget,
  target_kind: Schema.Literal("member"),
  target_id: UserId
})
const PermissionOverride = Schema.Union(RoleTargetOverride, MemberTargetOverride)

export const WorkspaceChannelRoleOverrideUpdate = defineEvent({
  type: "workspace_channel_role_override_update",
  version: 1,
  scope: "guild",
  description: "A channel's permission override for a legacy role (owner, moderator, member) changed.",
  payload: Schema.Struct(roleOverrideFields)
})

export const WorkspaceChannelPermissionOverrideUpdate = defineEvent({
  type: "workspace_channel_permission_override_update",
  version: 1,
  scope: "guild",
  description:
    "A channel's permission override for a target changed: a workspace role (`target_id` is a role " +
    "ULID) or a member (`target_id` is a user ULID).",
  payload: PermissionOverride
})

export const WorkspaceIpBanSync = defineEvent({
  type: "workspace_ip_ban_sync",
  version: 1,
  scope: "guild",
  description:
    "The guild's IP bans changed. Redacted by design: a summary only, never addresses. `upsert` " +
    "counts the created entries; `remove` always counts 1.",
  delivery: "Every connection subscribed in the guild, members included (not only moderators).",
  payload: Schema.Struct({
    guild_id: GuildId,
    summary: Schema.Struct({ action: IpBanAction, changed_count: NonNegativeCount }),
    updated_at_unix: UnixSeconds,
    ...actor
  })
})

export const WorkspaceChannelOverrideUpdate = defineEvent({
  type: "workspace_channel_override_update",
  version: 1,
  scope: "guild",
  lifecycle: "deprecated",
  description:
    "Legacy name that carried both override shapes (role shape from the role route, target shape " +
    "from the permission route). Emitted only during a dual-emit migration window (a server switch).",
  migration: {
    note:
      "Use workspace_channel_role_override_update for role payloads and " +
      "workspace_channel_permission_override_update for principal target payloads.",
    replacedBy: ["workspace_channel_role_override_update", "workspace_channel_permission_override_update"]
  },
  payload: Schema.Union(Schema.Struct(roleOverrideFields), PermissionOverride)
})
