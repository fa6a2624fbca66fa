/**
 * `filament-gateway/client/effect`: the gateway connection as an Effect API (a scoped connection
 * with a `Stream` of decoded events), over the callback client of `filament-gateway/client`.
 */
export * as GatewayConnection from "./GatewayConnection.js"
