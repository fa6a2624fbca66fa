/**
 * The gateway server (`filament-gateway/server`), one namespace per module. Node only.
 *
 * The root of src/server holds the cross-cutting services (Config, Metrics, Errors, Auth, Tracing),
 * the composition root (`Composition`), `main` and `Workers`; the folders: core/ (connections,
 * ingress, broadcast, the gateway), registry/ (subscriptions, interest), chat/ (presence, voice,
 * hooks, messages, access), cluster/ (Redis bus, presence, voice), edge/ (HTTP), inspector/.
 */
export * as Access from "./chat/Access.js"
export * as Admission from "./core/Admission.js"
export * as Auth from "./Auth.js"
export * as Broadcast from "./core/Broadcast.js"
export * as Bus from "./core/Bus.js"
export * as ChatFollowUps from "./chat/ChatFollowUps.js"
export * as ClusterPresence from "./cluster/ClusterPresence.js"
export * as ClusterVoice from "./cluster/ClusterVoice.js"
export * as Composition from "./Composition.js"
export * as Config from "./Config.js"
export * as Connection from "./core/Connection.js"
export * as Errors from "./Errors.js"
export * as Fanout from "./core/Fanout.js"
export * as Gateway from "./core/Gateway.js"
export * as History from "./recovery/History.js"
export * as Http from "./edge/Http.js"
export * as Publish from "./edge/Publish.js"
export * as Ingress from "./core/Ingress.js"
export * as Indexes from "./registry/Indexes.js"
export * as Interest from "./registry/Interest.js"
export * as LiveConnections from "./core/LiveConnections.js"
export * as Messages from "./chat/Messages.js"
export * as Metrics from "./Metrics.js"
export * as Outbound from "./core/Outbound.js"
export * as Presence from "./chat/Presence.js"
export * as RedisBus from "./cluster/EventBus.js"
export * as RedisHistory from "./recovery/RedisHistory.js"
export * as Seams from "./core/Seams.js"
export * as Subscriptions from "./registry/Subscriptions.js"
export * as Voice from "./chat/Voice.js"
