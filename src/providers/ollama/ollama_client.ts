/**
 * A small fetch client for Ollama's native API with timeouts that fit LLMs: a generous
 * time-to-first-byte budget (Ollama sends no header until the model is loaded and the first
 * token exists) and a separate idle budget between chunks. Streaming NDJSON is consumed
 * line by line as it arrives. Every failure becomes a GleitzeitError with a stable code.
 *
 * @module
 */

import { GleitzeitError } from "../../core/errors.ts";

/** The `fetch` function the client uses (injectable for tests). */
export type FetchFn = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

/** Settings of an {@link OllamaClient}. */
export interface OllamaClientOptions {
  /** Base URL without trailing slash, e.g. `http://localhost:11434`. */
  url: string;
  /** Budget from sending the request to the first byte of the body. */
  firstByteTimeoutMs: number;
  /** Budget between two chunks of the body. */
  idleTimeoutMs: number;
  fetch?: FetchFn;
}

/** One parsed NDJSON object of a stream. */
export type Chunk = Record<string, unknown>;

/**
 * Aborts its signal with a PROVIDER_TIMEOUT error once a deadline passes. Re-arming only moves
 * the deadline; the one timer re-checks it when it fires, so a stream of many small chunks
 * costs no timer churn.
 */
class Watchdog {
  readonly #controller = new AbortController();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timerAt = Infinity;
  #deadline = Infinity;
  #error: () => GleitzeitError = () => new GleitzeitError("PROVIDER_TIMEOUT", "timeout");
  error: GleitzeitError | undefined;

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** Sets the deadline to `ms` from now; `error` builds the abort reason. */
  arm(ms: number, error: () => GleitzeitError): void {
    this.#error = error;
    this.#deadline = performance.now() + ms;
    if (this.#timer === undefined || this.#timerAt > this.#deadline) this.#schedule(ms);
  }

  stop(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#deadline = Infinity;
  }

  #schedule(ms: number): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timerAt = performance.now() + ms;
    this.#timer = setTimeout(() => this.#fire(), ms);
  }

  #fire(): void {
    this.#timer = undefined;
    const left = this.#deadline - performance.now();
    if (left > 0) return this.#schedule(left);
    this.error = this.#error();
    this.#controller.abort(this.error);
  }
}

const NOT_FOUND = /model ['"]?(.*?)['"]? not found/i;

/** The hint shown when the server cannot be reached. */
export function unreachableHint(url: string): string {
  return `is Ollama running at ${url}? (ollama serve)`;
}

/**
 * 500s that fail the same way every time (bad option types, undecodable images) are not
 * retryable; any other 500 (typically `llama runner process has terminated`, an out-of-memory
 * or crashed runner that Ollama restarts on the next request) is.
 */
const DETERMINISTIC_500 = /^option "|failed to process inputs|invalid |unknown format/i;

/** Talks to one Ollama server. */
export class OllamaClient {
  readonly url: string;
  readonly #fetch: FetchFn;
  readonly #firstByteMs: number;
  readonly #idleMs: number;

  constructor(options: OllamaClientOptions) {
    this.url = options.url.replace(/\/+$/, "");
    this.#fetch = options.fetch ?? fetch;
    this.#firstByteMs = options.firstByteTimeoutMs;
    this.#idleMs = options.idleTimeoutMs;
  }

  /** GET a JSON document (`/api/version`, `/api/tags`) within `timeoutMs`. */
  async getJson(path: string, signal: AbortSignal | undefined, timeoutMs: number): Promise<Chunk> {
    const text = await this.#exchange(path, undefined, signal ? [signal] : [], {
      firstByteMs: timeoutMs,
      idleMs: timeoutMs,
    });
    return this.#parseDocument(path, text);
  }

  /** POST a request whose answer is one JSON document (`/api/embed`). */
  async postJson(path: string, body: Chunk, signals: readonly AbortSignal[]): Promise<Chunk> {
    const text = await this.#exchange(path, body, signals, {
      firstByteMs: this.#firstByteMs,
      idleMs: this.#idleMs,
    });
    return this.#parseDocument(path, text);
  }

  /**
   * POST a streaming request (`/api/chat`, `/api/generate`); calls `onChunk` for every NDJSON
   * object as it arrives and resolves with the final (`done: true`) object. An `{"error"}`
   * line, or a stream that ends without `done`, rejects with TASK_EXECUTION_FAILED.
   */
  async stream(
    path: string,
    body: Chunk,
    signals: readonly AbortSignal[],
    onChunk: (chunk: Chunk) => void,
  ): Promise<Chunk> {
    let final: Chunk | undefined;
    let buffer = "";
    const handleLine = (line: string) => {
      if (line.trim() === "") return;
      let obj: Chunk;
      try {
        obj = JSON.parse(line);
      } catch {
        throw this.#failed(`malformed line in the stream from ${path}: ${line.slice(0, 200)}`);
      }
      if (typeof obj.error === "string" || obj.error !== undefined) {
        throw this.#failed(String(obj.error), { midStream: true });
      }
      onChunk(obj);
      if (obj.done === true) final = obj;
    };
    await this.#exchange(path, body, signals, {
      firstByteMs: this.#firstByteMs,
      idleMs: this.#idleMs,
      onText: (text) => {
        buffer += text;
        let nl: number;
        while ((nl = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, nl);
          buffer = buffer.slice(nl + 1);
          handleLine(line);
        }
      },
    });
    handleLine(buffer);
    if (!final) {
      throw this.#failed(`the stream from ${path} ended without done (connection dropped?)`, {
        noDone: true,
      });
    }
    return final;
  }

  /**
   * One HTTP exchange under both timeouts. Streams the decoded body to `onText` (if given) or
   * returns it whole. Rejections: the caller's signal reason when it aborted, PROVIDER_TIMEOUT
   * when a budget ran out, else a classified GleitzeitError.
   */
  async #exchange(
    path: string,
    body: Chunk | undefined,
    signals: readonly AbortSignal[],
    opts: { firstByteMs: number; idleMs: number; onText?: (text: string) => void },
  ): Promise<string> {
    for (const s of signals) s.throwIfAborted();
    const dog = new Watchdog();
    const combined = AbortSignal.any([...signals, dog.signal]);
    const endpoint = `${this.url}${path}`;
    dog.arm(opts.firstByteMs, () =>
      new GleitzeitError(
        "PROVIDER_TIMEOUT",
        `no response from Ollama at ${this.url}${path} within ${opts.firstByteMs} ms`,
        {
          details: { url: this.url, path, timeoutMs: opts.firstByteMs, phase: "first_byte" },
          hint: "the model may still be loading; raise firstByteTimeoutMs",
        },
      ));
    let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
    try {
      const response = await this.#fetch(endpoint, {
        method: body === undefined ? "GET" : "POST",
        headers: body === undefined ? undefined : { "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: combined,
      });
      if (!response.ok) {
        const text = await response.text();
        dog.stop();
        throw this.#httpError(response.status, text, path, body);
      }
      if (!response.body) return "";
      reader = response.body.getReader();
      const decoder = new TextDecoder();
      let whole = "";
      let first = true;
      while (true) {
        if (!first) {
          // between chunks: the idle budget
          dog.arm(opts.idleMs, () =>
            new GleitzeitError(
              "PROVIDER_TIMEOUT",
              `Ollama at ${this.url}${path} sent nothing for ${opts.idleMs} ms mid-response`,
              {
                details: { url: this.url, path, timeoutMs: opts.idleMs, phase: "idle" },
                hint: "the server stalled; raise idleTimeoutMs if the model is very slow",
              },
            ));
        }
        const { value, done } = await reader.read();
        if (done) break;
        first = false;
        const text = decoder.decode(value, { stream: true });
        if (opts.onText) opts.onText(text);
        else whole += text;
      }
      dog.stop();
      const rest = decoder.decode();
      if (opts.onText) opts.onText(rest);
      return whole + (opts.onText ? "" : rest);
    } catch (e) {
      dog.stop();
      reader?.cancel().catch(() => {});
      const aborted = signals.find((s) => s.aborted);
      if (aborted) throw aborted.reason;
      if (dog.error) throw dog.error;
      if (e instanceof GleitzeitError) throw e;
      throw this.#transportError(e, reader !== undefined);
    }
  }

  #parseDocument(path: string, text: string): Chunk {
    try {
      const doc = JSON.parse(text);
      if (doc && typeof doc === "object" && !Array.isArray(doc)) {
        if (typeof doc.error === "string") throw this.#failed(doc.error);
        return doc;
      }
    } catch (e) {
      if (e instanceof GleitzeitError) throw e;
    }
    throw this.#failed(`invalid JSON from ${path} (connection dropped?): ${text.slice(0, 200)}`);
  }

  #failed(message: string, details: Record<string, unknown> = {}): GleitzeitError {
    return new GleitzeitError("TASK_EXECUTION_FAILED", message, {
      details: { url: this.url, ...details },
    });
  }

  #httpError(status: number, text: string, path: string, body?: Chunk): GleitzeitError {
    let message = text.trim();
    try {
      const parsed = JSON.parse(text);
      if (parsed && typeof parsed.error === "string") message = parsed.error;
    } catch { /* plain text body */ }
    const model = typeof body?.model === "string" ? body.model : undefined;
    const details = { url: this.url, path, status, serverMessage: message, model };
    if (status === 404 && NOT_FOUND.test(message)) {
      const name = model ?? NOT_FOUND.exec(message)?.[1] ?? "MODEL";
      return new GleitzeitError("MODEL_NOT_FOUND", `model '${name}' not found on ${this.url}`, {
        details,
        hint: `ollama pull ${name}`,
      });
    }
    if (status === 503) {
      return new GleitzeitError("PROVIDER_OVERLOADED", `Ollama is busy: ${message}`, {
        details,
        hint: "retry later, or lower maxConcurrent / raise OLLAMA_MAX_QUEUE on the server",
      });
    }
    if (status === 429) {
      return new GleitzeitError("RATE_LIMITED", `Ollama: ${message}`, { details });
    }
    if (status === 400) {
      return new GleitzeitError("TASK_PARAMETER_ERROR", `Ollama rejected the request: ${message}`, {
        details,
      });
    }
    if (status === 404) {
      return new GleitzeitError(
        "PROVIDER_ERROR",
        `${this.url}${path} answered 404 (${message}); is this an Ollama server?`,
        { details },
      );
    }
    return new GleitzeitError("PROVIDER_ERROR", `Ollama error (HTTP ${status}): ${message}`, {
      details,
      retryable: status >= 500 && !DETERMINISTIC_500.test(message),
    });
  }

  #transportError(e: unknown, midBody: boolean): GleitzeitError {
    const reason = e instanceof Error ? e.message : String(e);
    if (midBody) {
      return new GleitzeitError("NETWORK_ERROR", `connection to ${this.url} broke: ${reason}`, {
        details: { url: this.url },
        cause: e,
      });
    }
    return new GleitzeitError(
      "PROVIDER_UNAVAILABLE",
      `cannot reach Ollama at ${this.url}: ${reason}`,
      { details: { url: this.url }, hint: unreachableHint(this.url), cause: e },
    );
  }
}
