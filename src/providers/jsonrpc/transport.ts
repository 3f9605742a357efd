/**
 * The Transport role: moves JSON-RPC payloads to a peer and delivers what comes back.
 * Implementations: {@link StdioTransport} (newline-delimited JSON over a child process's
 * stdin/stdout) and {@link HttpTransport} (one POST per payload).
 *
 * @module
 */

import type { GleitzeitError } from "../../core/errors.ts";
import type { JsonRpcMessage } from "./messages.ts";

/** Carries JSON-RPC payloads (one message or a batch) to a peer. */
export interface Transport {
  /** True when send() resolves only after the answer was delivered (HTTP): unanswered calls then fail. */
  readonly answersInline?: boolean;
  /**
   * Sends a payload. Resolves once it has been handed over; answers arrive through the
   * message handler. Rejects with a GleitzeitError when it cannot be delivered (the
   * client then fails exactly the requests in this payload).
   */
  send(payload: JsonRpcMessage | JsonRpcMessage[], signal?: AbortSignal): Promise<void>;
  /** Sets the receiver of every parsed payload from the peer (a message or a batch). */
  onMessage(handler: (payload: unknown) => void): void;
  /** Sets the receiver of the transport's end (process exit, connection lost). */
  onClose(handler: (reason: GleitzeitError) => void): void;
  /** Ends the transport; pending requests fail. */
  close(): Promise<void>;
}
