/**
 * The gateway server (`filament-gateway/server`), one namespace per module. Node only.
 */
export * as Access from "./Access.js"
export * as Auth from "./Auth.js"
export * as Config from "./Config.js"
export * as Connection from "./Connection.js"
export * as Errors from "./Errors.js"
export * as Fanout from "./Fanout.js"
export * as FollowUps from "./FollowUps.js"
export * as Gateway from "./Gateway.js"
export * as Http from "./Http.js"
export * as Ingress from "./Ingress.js"
export * as Messages from "./Messages.js"
export * as Metrics from "./Metrics.js"
export * as Outbound from "./Outbound.js"
export * as Registry from "./Registry.js"
