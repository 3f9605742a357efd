/**
 * The MCP SDK's Transport role over our {@link StdioTransport}: the server process inherits
 * the full environment (the SDK's own stdio transport passes only a safe list, which under
 * `--ignore-env` is nearly empty), its stderr is kept for diagnosis, and shutdown is
 * graceful (stdin closed, SIGTERM, SIGKILL).
 *
 * @module
 */

import type { GleitzeitError } from "../../core/errors.ts";
import type { JsonRpcMessage } from "../jsonrpc/messages.ts";
import { StdioTransport, type StdioTransportOptions } from "../jsonrpc/stdio_transport.ts";

/** The subset of the SDK's Transport interface that the Client uses. */
export interface SdkTransport {
  start(): Promise<void>;
  send(message: unknown): Promise<void>;
  close(): Promise<void>;
  onclose?: () => void;
  onerror?: (error: Error) => void;
  // deno-lint-ignore no-explicit-any
  onmessage?: (message: any) => void;
}

/** Newline-delimited JSON-RPC to an MCP server process, shaped for the SDK's Client. */
export class McpStdioTransport implements SdkTransport {
  readonly #options: StdioTransportOptions;
  #stdio?: StdioTransport;
  /** Why the process ended, when it ended on its own. */
  lastError?: GleitzeitError;
  onclose?: () => void;
  onerror?: (error: Error) => void;
  // deno-lint-ignore no-explicit-any
  onmessage?: (message: any) => void;

  constructor(options: StdioTransportOptions) {
    this.#options = options;
  }

  /** The running process, once started. */
  get process(): StdioTransport | undefined {
    return this.#stdio;
  }

  start(): Promise<void> {
    const stdio = StdioTransport.spawn(this.#options);
    this.#stdio = stdio;
    stdio.onMessage((payload) => {
      for (const m of Array.isArray(payload) ? payload : [payload]) this.onmessage?.(m);
    });
    stdio.onClose((reason) => {
      this.lastError = reason;
      this.onclose?.();
    });
    return Promise.resolve();
  }

  async send(message: unknown): Promise<void> {
    if (!this.#stdio) throw new Error("transport not started");
    await this.#stdio.send(message as JsonRpcMessage);
  }

  async close(): Promise<void> {
    await this.#stdio?.close();
  }
}
