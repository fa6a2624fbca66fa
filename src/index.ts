/**
 * The isomorphic part of the package: the wire contract and the client SDK, one namespace per
 * module. The server is its own entry point (`filament-gateway/server`), so importing this one never
 * pulls in Node built-ins.
 */
export * as CloseCodes from "./protocol/CloseCodes.js"
export * as Commands from "./protocol/Commands.js"
export * as Envelope from "./protocol/Envelope.js"
export * as EventDefinition from "./protocol/EventDefinition.js"
export * as Ids from "./protocol/Ids.js"
export * as Manifest from "./protocol/Manifest.js"
export * as Shapes from "./protocol/Shapes.js"
export * as Decode from "./client/Decode.js"
export * as Dispatch from "./client/Dispatch.js"
export * as GatewayClient from "./client/GatewayClient.js"
export * as GatewayConnection from "./client/GatewayConnection.js"
