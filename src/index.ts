/**
 * The isomorphic part of the package: the wire contract and the client SDK, one namespace per
 * module. The server is its own entry point (`filament-gateway/server`), so importing this one never
 * pulls in Node built-ins.
 */
export * from "./protocol/index.js"
export * from "./client/index.js"
export * from "./client/effect.js"
