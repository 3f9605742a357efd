/**
 * The methods the JSON-RPC 2.0 specification's examples call (`subtract`, `sum`, `update`,
 * `notify_hello`, `notify_sum`, `get_data`), plus helpers for client tests. `foobar` and
 * `foo.get` are deliberately missing, as in the specification.
 */

import { GleitzeitError } from "../../../src/core/errors.ts";
import { JsonRpcDispatcher } from "../../../src/providers/jsonrpc/dispatcher.ts";
import type { JsonRpcMessage } from "../../../src/providers/jsonrpc/messages.ts";
import type { Transport } from "../../../src/providers/jsonrpc/transport.ts";

/** What the notification methods saw, in order. */
export const notified: { method: string; params: unknown }[] = [];

/** A dispatcher implementing the specification's example methods. */
export function specDispatcher(): JsonRpcDispatcher {
  const d = new JsonRpcDispatcher({
    subtract: (p) => {
      if (Array.isArray(p)) return (p[0] as number) - (p[1] as number);
      const o = p as { minuend: number; subtrahend: number };
      return o.minuend - o.subtrahend;
    },
    sum: (p) => (p as number[]).reduce((a, b) => a + b, 0),
    update: (p) => void notified.push({ method: "update", params: p }),
    notify_hello: (p) => void notified.push({ method: "notify_hello", params: p }),
    notify_sum: (p) => void notified.push({ method: "notify_sum", params: p }),
    get_data: () => ["hello", 5],
    // helpers for the client tests
    nothing: () => null,
    sleep: async (p) => {
      const { ms, value } = p as { ms: number; value: unknown };
      await new Promise((r) => setTimeout(r, ms));
      return value;
    },
    fail: (p) => {
      const { code, retryable, message } = p as {
        code: "PROVIDER_OVERLOADED" | "TASK_EXECUTION_FAILED";
        retryable?: boolean;
        message: string;
      };
      throw new GleitzeitError(code, message, { retryable, details: { why: "asked" } });
    },
  });
  return d;
}

/** An in-memory transport to a dispatcher: answers asynchronously, like a real peer. */
export class LoopbackTransport implements Transport {
  #onMessage: (p: unknown) => void = () => {};
  sent: unknown[] = [];
  constructor(private dispatcher: JsonRpcDispatcher) {}
  onMessage(h: (p: unknown) => void): void {
    this.#onMessage = h;
  }
  onClose(): void {}
  send(payload: JsonRpcMessage | JsonRpcMessage[]): Promise<void> {
    this.sent.push(payload);
    this.dispatcher.handleText(JSON.stringify(payload)).then((answer) => {
      if (answer !== undefined) this.#onMessage(JSON.parse(answer));
    });
    return Promise.resolve();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

/**
 * A TCP server on 127.0.0.1 that takes connections, reads nothing and never answers (a hung
 * HTTP peer); `close` ends it and every connection it took.
 */
export function silentServer(): { port: number; close: () => Promise<void> } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    try {
      for await (const c of listener) held.push(c);
    } catch { /* closed */ }
  })();
  return {
    port: listener.addr.port,
    close: async () => {
      listener.close();
      for (const c of held) c.close();
      await accepting;
    },
  };
}
