/**
 * The default AccessPolicy (the service is in `core/Seams.ts`): it reads the
 * token's `guilds` claim (a guild maps to a channel list or `"*"`); a host app provides its own
 * layer backed by its permission model.
 */
import { Effect, Layer } from "effect"
import type { ChannelId, GuildId } from "../../protocol/Ids.js"
import type { Principal } from "../Auth.js"
import { AccessPolicy, type AccessPolicyShape } from "../core/Seams.js"

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
