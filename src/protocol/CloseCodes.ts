/**
 * WebSocket close codes the gateway sends. The reason string is also the
 * `filament_ws_disconnects_total{reason}` label value.
 */
export interface CloseCode {
  readonly code: number
  readonly reason: CloseReason
  readonly description: string
  /** Whether a client should reconnect after this close. */
  readonly reconnect: boolean
  /** Reconnecting needs a fresh access token first. */
  readonly refreshToken?: boolean
}

export const CLOSE_CODES = [
  { code: 1000, reason: "normal", description: "orderly close by the server", reconnect: false },
  { code: 1000, reason: "client_close", description: "orderly close by the client", reconnect: false },
  { code: 1001, reason: "going_away", description: "server shutting down (drain)", reconnect: true },
  {
    code: 1002,
    reason: "protocol_error",
    description: "a frame that breaks RFC 6455 (opcode, mask, RSV bits, control frame size, close code)",
    reconnect: true
  },
  { code: 1008, reason: "slow_consumer", description: "outbound queue full", reconnect: true },
  {
    code: 1008,
    reason: "too_many_fragments",
    description: "a message in more than 16 384 fragments",
    reconnect: true
  },
  { code: 1009, reason: "event_too_large", description: "inbound frame over the cap", reconnect: true },
  {
    code: 1011,
    reason: "internal_error",
    description: "unexpected defect, or a command's ack the server cannot build",
    reconnect: true
  },
  { code: 4001, reason: "invalid_envelope", description: "not JSON or bad envelope", reconnect: true },
  {
    code: 4002,
    reason: "invalid_subscribe_payload",
    description: "subscribe with a bad payload",
    reconnect: true
  },
  {
    code: 4002,
    reason: "invalid_unsubscribe_payload",
    description: "unsubscribe with a bad payload",
    reconnect: true
  },
  {
    code: 4002,
    reason: "invalid_message_create_payload",
    description: "message_create with a bad payload",
    reconnect: true
  },
  { code: 4003, reason: "unknown_event", description: "unknown command name", reconnect: true },
  {
    code: 4008,
    reason: "ingress_rate_limited",
    description: "over the ingress rate window",
    reconnect: true
  },
  { code: 4009, reason: "heartbeat_timeout", description: "no pong within the timeout", reconnect: true },
  {
    code: 4010,
    reason: "token_expired",
    description: "the access token expired while connected",
    reconnect: true,
    refreshToken: true
  },
  {
    code: 4011,
    reason: "message_rejected",
    description: "the message handler refused message_create",
    reconnect: true
  },
  {
    code: 4012,
    reason: "command_timeout",
    description: "a command did not finish within the command timeout",
    reconnect: true
  },
  {
    code: 4013,
    reason: "command_queue_full",
    description: "too many commands waiting behind a running one",
    reconnect: true
  },
  {
    code: 4014,
    reason: "closed_by_admin",
    description: "an operator closed the connection from the inspector",
    reconnect: true
  }
] as const satisfies ReadonlyArray<Omit<CloseCode, "reason"> & { reason: string }>

export type CloseReason = (typeof CLOSE_CODES)[number]["reason"]

const byReason = new Map<string, CloseCode>(CLOSE_CODES.map((entry) => [entry.reason, entry]))

/** The close code entry for a reason. */
export const closeCodeFor = (reason: CloseReason): CloseCode => byReason.get(reason)!

/** Whether a client should reconnect after receiving `code` (unknown codes: yes, as the web client). */
export const shouldReconnect = (code: number): boolean => {
  if (code === 1000) return false
  return CLOSE_CODES.find((entry) => entry.code === code)?.reconnect ?? true
}

/** Whether reconnecting after `code` needs a fresh token (4010). */
export const needsFreshToken = (code: number): boolean =>
  CLOSE_CODES.some((entry) => entry.code === code && "refreshToken" in entry && entry.refreshToken)
