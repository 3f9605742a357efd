/**
 * JSON-RPC over HTTP POST: each payload (a message or a batch) is one POST whose body is
 * the JSON text; the response body carries the answer (a 204 or empty body means none,
 * as for notifications). A server that cannot be reached fails the payload's calls as
 * PROVIDER_UNAVAILABLE (retryable); a non-JSON-RPC error status fails them as
 * PROVIDER_ERROR, retryable for 429 and 5xx.
 *
 * @module
 */

import { GleitzeitError } from "../../core/errors.ts";
import type { JsonRpcMessage } from "./messages.ts";
import type { Transport } from "./transport.ts";

/** Where and how to POST. */
export interface HttpTransportOptions {
  url: string;
  headers?: Record<string, string>;
  /** Name used in error messages (a provider id). */
  name?: string;
}

/** JSON-RPC 2.0 over HTTP POST. */
export class HttpTransport implements Transport {
  readonly answersInline = true;
  readonly #options: HttpTransportOptions;
  readonly #controller = new AbortController();
  #onMessage: (payload: unknown) => void = () => {};
  #closed = false;

  constructor(options: HttpTransportOptions) {
    this.#options = options;
  }

  onMessage(handler: (payload: unknown) => void): void {
    this.#onMessage = handler;
  }

  onClose(_handler: (reason: GleitzeitError) => void): void {
    // an HTTP endpoint has no connection to lose; each POST reports its own failure
  }

  async send(payload: JsonRpcMessage | JsonRpcMessage[], signal?: AbortSignal): Promise<void> {
    const name = this.#options.name ?? this.#options.url;
    if (this.#closed) throw new GleitzeitError("PROVIDER_UNAVAILABLE", `${name} is closed`);
    const signals = [this.#controller.signal, ...(signal ? [signal] : [])];
    let res: Response;
    try {
      res = await fetch(this.#options.url, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          accept: "application/json",
          ...this.#options.headers,
        },
        body: JSON.stringify(payload),
        signal: AbortSignal.any(signals),
      });
    } catch (e) {
      if (signal?.aborted) return; // the client reports the cancellation itself
      throw new GleitzeitError(
        "PROVIDER_UNAVAILABLE",
        `${name}: cannot reach ${this.#options.url}: ${e instanceof Error ? e.message : e}`,
        { cause: e, details: { url: this.#options.url } },
      );
    }
    let text: string;
    try {
      text = await res.text();
    } catch (e) {
      if (signal?.aborted) return;
      throw new GleitzeitError("PROVIDER_UNAVAILABLE", `${name}: response body lost`, { cause: e });
    }
    let body: unknown = undefined;
    if (text.trim() !== "") {
      try {
        body = JSON.parse(text);
      } catch {
        body = undefined;
      }
    }
    if (body !== undefined && (typeof body === "object" && body !== null)) {
      // JSON-RPC over HTTP may carry an error response with a 4xx/5xx status; the body decides
      this.#onMessage(body);
      return;
    }
    if (res.ok && text.trim() === "") return;
    throw new GleitzeitError(
      "PROVIDER_ERROR",
      `${name}: HTTP ${res.status} ${res.statusText}${text ? `: ${text.slice(0, 200)}` : ""}`,
      {
        retryable: res.status === 429 || res.status >= 500,
        details: { url: this.#options.url, status: res.status },
      },
    );
  }

  close(): Promise<void> {
    this.#closed = true;
    this.#controller.abort();
    return Promise.resolve();
  }
}
