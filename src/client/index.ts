/** The client SDK: decoding, table-driven dispatch and the reconnecting connection. */
export * from "./Decode.js"
export * from "./Dispatch.js"
export * as GatewayClient from "./GatewayClient.js"
