/**
 * The client SDK (isomorphic: browser and Node): frame decoding, the registry-built dispatcher, the
 * reconnecting connection with callbacks (`GatewayClient`) and as an Effect API (`GatewayConnection`).
 */
export * as Decode from "./Decode.js"
export * as Dispatch from "./Dispatch.js"
export * as GatewayClient from "./GatewayClient.js"
export * as GatewayConnection from "./GatewayConnection.js"
