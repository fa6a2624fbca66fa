import { Redacted } from "effect"

/** The inspector tests' `GATEWAY_ADMIN_KEY`. */
export const ADMIN_KEY = Redacted.make("test-admin-key-0123456789-0123456789-xyz")
