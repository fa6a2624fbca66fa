/**
 * The client SDK (isomorphic: browser and Node), with no Effect runtime: frame decoding by the
 * generated decoders, the registry-built dispatcher and the reconnecting connection with callbacks
 * (`GatewayClient`). The Effect API (`GatewayConnection`) is its own entry, `./effect.ts`.
 */
export * as Decode from "./Decode.js"
export * as Dispatch from "./Dispatch.js"
export * as GatewayClient from "./GatewayClient.js"
