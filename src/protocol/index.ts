/**
 * The wire contract (`filament-gateway/protocol`), one namespace per module. Isomorphic: depends on
 * `effect` only, so it loads in Node and in a browser.
 */
export * as CloseCodes from "./CloseCodes.js"
export * as Commands from "./Commands.js"
export * as Envelope from "./Envelope.js"
export * as EventDefinition from "./EventDefinition.js"
export * as Ids from "./Ids.js"
export * as Manifest from "./Manifest.js"
export * as Recovery from "./Recovery.js"
export * as Shapes from "./Shapes.js"
export * as Streams from "./Streams.js"
export * as ConnectionEvents from "./events/connection.js"
export * as FriendEvents from "./events/friend.js"
export * as MessageEvents from "./events/message.js"
export * as PresenceEvents from "./events/presence.js"
export * as ProfileEvents from "./events/profile.js"
export * as VoiceEvents from "./events/voice.js"
export * as WorkspaceEvents from "./events/workspace.js"
