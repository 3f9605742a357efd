/**
 * A JSON-RPC 2.0 client over any {@link Transport}: correlates responses to requests by
 * id (in any order, in batches or not), supports notifications and batches, and gives
 * every call a timeout and an AbortSignal. Failures are GleitzeitErrors: remote errors
 * keep their code and retryable flag; a lost peer fails pending calls as
 * PROVIDER_UNAVAILABLE (retryable).
 *
 * @module
 */

import { setLongTimeout } from "../../core/clock.ts";
import { GleitzeitError } from "../../core/errors.ts";
import {
  isFailure,
  isResponse,
  type JsonRpcMessage,
  type JsonRpcParams,
  type JsonRpcResponse,
  notification,
  request,
  responseProblem,
} from "./messages.ts";
import { fromRpcError } from "./rpc_errors.ts";
import type { Transport } from "./transport.ts";

/** Options of one call. */
export interface CallOptions {
  /** Aborts the call; rejects with the signal's reason when it is a GleitzeitError. */
  signal?: AbortSignal;
  /** Fails the call with PROVIDER_TIMEOUT after this long (overrides the client default). */
  timeoutMs?: number;
}

/** One entry of a batch: a call (answered) or a notification (not answered). */
export interface BatchEntry {
  method: string;
  params?: JsonRpcParams;
  notification?: boolean;
}

/** The outcome of one batch entry, in the order given (notifications excluded). */
export type BatchOutcome = { ok: true; result: unknown } | { ok: false; error: GleitzeitError };

/** Options of a {@link JsonRpcClient}. */
export interface JsonRpcClientOptions {
  /** Name used in error messages (a provider id). */
  name?: string;
  /** Default per-call timeout. */
  timeoutMs?: number;
  /** When set, a cancelled call is announced to the peer with this notification `{id}`. */
  cancelMethod?: string;
  /** Receives payloads that answer nothing we sent (for diagnostics). */
  onStray?: (payload: unknown) => void;
  /** Receives requests and notifications from the peer. */
  onPeerMessage?: (payload: unknown) => void;
}

interface Pending {
  resolve: (r: JsonRpcResponse) => void;
  reject: (e: GleitzeitError) => void;
}

/** Correlates JSON-RPC requests and responses over a transport. */
export class JsonRpcClient {
  #transport: Transport;
  #options: JsonRpcClientOptions;
  #pending = new Map<string | number, Pending>();
  #nextId = 1;
  #closedWith?: GleitzeitError;

  constructor(transport: Transport, options: JsonRpcClientOptions = {}) {
    this.#transport = transport;
    this.#options = options;
    transport.onMessage((payload) => this.#receive(payload));
    transport.onClose((reason) => this.#failAll(reason));
  }

  /** Number of calls awaiting a response. */
  get pending(): number {
    return this.#pending.size;
  }

  /** Calls `method` and resolves with its result (which may be `null`). */
  async call(method: string, params?: JsonRpcParams, options: CallOptions = {}): Promise<unknown> {
    const response = await this.#roundTrip([{ method, params }], options).then((r) => r[0]!);
    if (isFailure(response)) throw fromRpcError(response.error, this.#options.name);
    return response.result;
  }

  /** Sends a notification (no response is expected or possible). */
  async notify(method: string, params?: JsonRpcParams, signal?: AbortSignal): Promise<void> {
    this.#throwIfClosed();
    await this.#transport.send(notification(method, params), signal);
  }

  /** Sends several calls and notifications as one batch; outcomes come back in call order. */
  async batch(entries: BatchEntry[], options: CallOptions = {}): Promise<BatchOutcome[]> {
    const responses = await this.#roundTrip(entries, options);
    return responses.map((r) =>
      isFailure(r)
        ? { ok: false, error: fromRpcError(r.error, this.#options.name) }
        : { ok: true, result: r.result }
    );
  }

  /** Closes the transport; pending calls fail. */
  async close(): Promise<void> {
    this.#failAll(new GleitzeitError("PROVIDER_UNAVAILABLE", `${this.#label()} was closed`));
    await this.#transport.close();
  }

  #label(): string {
    return this.#options.name ?? "JSON-RPC peer";
  }

  #throwIfClosed(): void {
    if (this.#closedWith) throw this.#closedWith;
  }

  async #roundTrip(entries: BatchEntry[], options: CallOptions): Promise<JsonRpcResponse[]> {
    this.#throwIfClosed();
    const { signal } = options;
    if (signal?.aborted) throw abortError(signal, this.#label());
    const messages: JsonRpcMessage[] = [];
    const ids: (string | number)[] = [];
    for (const e of entries) {
      if (e.notification) messages.push(notification(e.method, e.params));
      else {
        const id = this.#nextId++;
        ids.push(id);
        messages.push(request(id, e.method, e.params));
      }
    }
    const waits = ids.map((id) =>
      new Promise<JsonRpcResponse>((resolve, reject) => this.#pending.set(id, { resolve, reject }))
    );
    const all = Promise.all(waits);
    all.catch(() => {}); // rejections are observed below; this keeps an early one from counting as unhandled
    const cleanup: (() => void)[] = [];
    // Stops the send too once the calls have failed (timed out, aborted): an HTTP POST that
    // gets no answer, a server that accepts and never replies, would otherwise be waited for
    // as long as it lasts, its calls' timeout long past.
    const stop = new AbortController();
    const fail = (err: GleitzeitError) => {
      for (const id of ids) {
        const p = this.#pending.get(id);
        this.#pending.delete(id);
        p?.reject(err);
      }
      stop.abort(err);
    };
    const timeoutMs = options.timeoutMs ?? this.#options.timeoutMs;
    if (timeoutMs !== undefined && ids.length > 0) {
      const cancelTimer = setLongTimeout(() => {
        fail(
          new GleitzeitError(
            "PROVIDER_TIMEOUT",
            `${this.#label()}: no response to ${entries.map((e) => e.method).join(", ")} ` +
              `within ${timeoutMs} ms`,
            { details: { timeoutMs } },
          ),
        );
        this.#announceCancel(ids);
      }, timeoutMs);
      cleanup.push(cancelTimer);
    }
    if (signal) {
      const onAbort = () => {
        fail(abortError(signal, this.#label()));
        this.#announceCancel(ids);
      };
      signal.addEventListener("abort", onAbort, { once: true });
      cleanup.push(() => signal.removeEventListener("abort", onAbort));
    }
    try {
      const sent = this.#transport.send(
        messages.length === 1 ? messages[0]! : messages,
        signal ? AbortSignal.any([signal, stop.signal]) : stop.signal,
      ).then(() => true, (e) => {
        if (!stop.signal.aborted) {
          fail(
            e instanceof GleitzeitError ? e : new GleitzeitError("PROVIDER_UNAVAILABLE", String(e)),
          );
        }
        return false;
      });
      // (calls that fail meanwhile, a timeout say, end the wait for a send that does not end:
      // a write to a peer that reads nothing)
      const done = ids.length === 0
        ? await sent
        : await Promise.race([sent, all.then(() => false, () => false)]);
      if (done && this.#transport.answersInline && ids.some((id) => this.#pending.has(id))) {
        fail(
          new GleitzeitError("PROVIDER_ERROR", `${this.#label()}: the response lacks an answer`, {
            details: { methods: entries.map((e) => e.method) },
          }),
        );
      }
      return await all;
    } finally {
      for (const c of cleanup) c();
      for (const id of ids) this.#pending.delete(id);
    }
  }

  #announceCancel(ids: (string | number)[]): void {
    const method = this.#options.cancelMethod;
    if (!method || this.#closedWith) return;
    for (const id of ids) this.#transport.send(notification(method, { id })).catch(() => {});
  }

  #receive(payload: unknown): void {
    const items = Array.isArray(payload) ? payload : [payload];
    for (const item of items) {
      if (isResponse(item) && item.id !== null && this.#pending.has(item.id)) {
        const p = this.#pending.get(item.id)!;
        this.#pending.delete(item.id);
        p.resolve(item);
      } else if (
        typeof item === "object" && item !== null && !("method" in item) && "id" in item &&
        (typeof item.id === "string" || typeof item.id === "number") && this.#pending.has(item.id)
      ) {
        // an answer to a call of ours that is not a valid response: that call fails now, with
        // what is wrong (not later, as a timeout that would name another cause)
        const p = this.#pending.get(item.id)!;
        this.#pending.delete(item.id);
        p.reject(
          new GleitzeitError(
            "PROVIDER_ERROR",
            `${this.#label()}: an invalid JSON-RPC response: ${responseProblem(item)}`,
            { retryable: false, details: { response: JSON.stringify(item).slice(0, 500) } },
          ),
        );
      } else if (
        typeof item === "object" && item !== null && "method" in item && this.#options.onPeerMessage
      ) {
        this.#options.onPeerMessage(item);
      } else {
        this.#options.onStray?.(item);
      }
    }
  }

  #failAll(reason: GleitzeitError): void {
    this.#closedWith ??= reason;
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) p.reject(reason);
  }
}

function abortError(signal: AbortSignal, label: string): GleitzeitError {
  const reason = signal.reason;
  if (reason instanceof GleitzeitError) return reason;
  return new GleitzeitError("TASK_CANCELLED", `${label}: call cancelled`, { cause: reason });
}
