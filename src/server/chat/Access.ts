/**
 * AccessPolicy: may this principal subscribe to, or post in, a channel? The default reads the
 * token's `guilds` claim (a guild maps to a channel list or `"*"`); a host app provides its own
 * layer backed by its permission model.
 */
import { Context, Effect, Layer } from "effect"
import type { ChannelId, GuildId } from "../../protocol/Ids.js"
import type { Principal } from "../Auth.js"

export interface AccessPolicyShape {
  readonly canSubscribe: (
    principal: Principal,
    guildId: GuildId,
    channelId: ChannelId
  ) => Effect.Effect<boolean>
  readonly canPost: (principal: Principal, guildId: GuildId, channelId: ChannelId) => Effect.Effect<boolean>
}

export class AccessPolicy extends Context.Tag("filament/AccessPolicy")<AccessPolicy, AccessPolicyShape>() {}

/** Whether the token's claims grant the channel. */
export const claimsAllow = (principal: Principal, guildId: GuildId, channelId: ChannelId): boolean => {
  const grant = principal.guilds.get(guildId)
  return grant === "*" || (grant !== undefined && grant.has(channelId))
}

export const fromClaims: AccessPolicyShape = {
  canSubscribe: (principal, guildId, channelId) => Effect.succeed(claimsAllow(principal, guildId, channelId)),
  canPost: (principal, guildId, channelId) => Effect.succeed(claimsAllow(principal, guildId, channelId))
}

export const layerClaims: Layer.Layer<AccessPolicy> = Layer.succeed(AccessPolicy, fromClaims)
