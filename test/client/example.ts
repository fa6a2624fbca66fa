// The quick start of docs/CLIENT.md, verbatim but for the import path (test/client/Example.test.ts).
import { GatewayClient } from "../../src/client/index.js"
import { WebSocket } from "ws" // Node; in a browser leave this out: the global WebSocket is used

const client = GatewayClient.make({
  url: process.env.GATEWAY_URL ?? "ws://127.0.0.1:8080",
  WebSocket,
  accessToken: () => process.env.GATEWAY_TOKEN ?? "",
  channels: [{ guild_id: process.env.GUILD_ID ?? "", channel_id: process.env.CHANNEL_ID ?? "" }],
  on: {
    ready: ({ user_id }) => console.log("connected as", user_id),
    message_create: (message) => console.log(`${message.author_id}: ${message.content}`)
  },
  onOpenChange: (open) => console.log(open ? "online" : "offline")
})
// end of quick start
export { client }
