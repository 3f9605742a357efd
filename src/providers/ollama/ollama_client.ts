/**
 * A small fetch client for Ollama's native API with timeouts that fit LLMs: a generous
 * time-to-first-byte budget (Ollama sends no header until the model is loaded and the first
 * token exists) and a separate idle budget between chunks. Streaming NDJSON is consumed
 * line by line as it arrives. Every failure becomes a GleitzeitError with a stable code.
 *
 * @module
 */

import { MAX_TIMER_MS } from "../../core/clock.ts";
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

/** Which budget a {@link Watchdog} deadline belongs to. */
type Phase = "first_byte" | "idle";

/**
 * The one abort signal of a request: aborts with a PROVIDER_TIMEOUT error once a deadline
 * passes, or with the reason of any linked caller signal. Re-arming only moves the deadline
 * (one `performance.now()`); the one timer re-checks it when it fires, so a stream of many
 * small chunks costs no timer churn. Linking uses plain listeners (removed by `stop`), which
 * is several times cheaper than `AbortSignal.any`.
 */
class Watchdog {
  readonly #controller = new AbortController();
  readonly #makeError: (phase: Phase, ms: number) => GleitzeitError;
  readonly #linked: readonly AbortSignal[];
  readonly #onLinkedAbort = (e: Event) => {
    this.#controller.abort((e.target as AbortSignal).reason);
  };
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timerAt = Infinity;
  #deadline = Infinity;
  #phase: Phase = "first_byte";
  #ms = 0;
  error: GleitzeitError | undefined;

  constructor(
    linked: readonly AbortSignal[],
    makeError: (phase: Phase, ms: number) => GleitzeitError,
  ) {
    this.#linked = linked;
    this.#makeError = makeError;
    for (const s of linked) s.addEventListener("abort", this.#onLinkedAbort);
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** Sets the deadline of `phase` to `ms` from now. */
  arm(phase: Phase, ms: number): void {
    this.#phase = phase;
    this.#ms = ms;
    this.#deadline = performance.now() + ms;
    if (this.#timer === undefined || this.#timerAt > this.#deadline) this.#schedule(ms);
  }

  /** Clears the timer and unlinks the caller signals. */
  stop(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#deadline = Infinity;
    for (const s of this.#linked) s.removeEventListener("abort", this.#onLinkedAbort);
  }

  #schedule(ms: number): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timerAt = performance.now() + ms;
    // (#fire waits on where the delay is longer than a timer keeps)
    this.#timer = setTimeout(() => this.#fire(), Math.min(ms, MAX_TIMER_MS));
  }

  #fire(): void {
    this.#timer = undefined;
    const left = this.#deadline - performance.now();
    if (left > 0) return this.#schedule(left);
    this.error = this.#makeError(this.#phase, this.#ms);
    this.#controller.abort(this.error);
  }
}

/** Size of the buffers response bodies are read into. */
const READ_BUFFER_BYTES = 64 * 1024;
/** Read buffers kept for the next requests (one per concurrent request is enough). */
const SPARE_BUFFERS = 4;
const spareBuffers: Uint8Array[] = [];

/**
 * Reads a body chunk by chunk. On a byte stream (every `fetch` body) it reads into one buffer
 * (BYOB), reused for every read and then by later requests, sparing the 64 KiB buffer the
 * default reader allocates per chunk, which is most of the cost of a token-per-chunk stream.
 * `onBytes` must not keep the view it gets. Other streams (injected test bodies) are read
 * with the default reader.
 */
class BodyReader {
  readonly #byob: ReadableStreamBYOBReader | undefined;
  readonly #plain: ReadableStreamDefaultReader<Uint8Array> | undefined;
  #buffer: Uint8Array | undefined;

  constructor(body: ReadableStream<Uint8Array>) {
    let byob: ReadableStreamBYOBReader | undefined;
    try {
      byob = body.getReader({ mode: "byob" });
    } catch {
      // not a byte stream
    }
    this.#byob = byob;
    this.#plain = byob ? undefined : body.getReader();
  }

  /** The next chunk, or undefined at the end. Valid until the next `read`. */
  async read(): Promise<Uint8Array | undefined> {
    if (this.#plain) {
      const { value, done } = await this.#plain.read();
      return done ? undefined : value;
    }
    const buffer = this.#buffer ?? spareBuffers.pop() ?? new Uint8Array(READ_BUFFER_BYTES);
    this.#buffer = undefined; // transferred by the read
    const { value, done } = await this.#byob!.read(buffer);
    if (value) this.#buffer = new Uint8Array(value.buffer);
    if (done) {
      this.#recycle();
      return undefined;
    }
    return value;
  }

  cancel(): void {
    (this.#byob ?? this.#plain)!.cancel().catch(() => {});
  }

  #recycle(): void {
    if (this.#buffer && spareBuffers.length < SPARE_BUFFERS) spareBuffers.push(this.#buffer);
    this.#buffer = undefined;
  }
}

const NOT_FOUND = /model ['"]?(.*?)['"]? not found/i;

/** The hint shown when the server cannot be reached. */
export function unreachableHint(url: string): string {
  return `is Ollama running at ${url}? (ollama serve; elsewhere: --ollama-url or GLEITZEIT_OLLAMA_URL)`;
}

/**
 * 500s that fail the same way every time (bad option types, undecodable images) are not
 * retryable; any other 500 (typically `llama runner process has terminated`, an out-of-memory
 * or crashed runner that Ollama restarts on the next request) is.
 */
const DETERMINISTIC_500 = /^option "|failed to process inputs|invalid |unknown format/i;

const NEWLINE = 0x0a;

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

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
   * line rejects with PROVIDER_ERROR (retryable, as a 500), a stream that ends without `done`
   * with NETWORK_ERROR (retryable), a malformed line with TASK_EXECUTION_FAILED.
   *
   * Lines are split on the raw bytes (a newline byte never occurs inside a multi-byte UTF-8
   * character), so each complete line is decoded once, straight from the read buffer; only
   * the bytes of a line that continues in the next read are copied.
   */
  async stream(
    path: string,
    body: Chunk,
    signals: readonly AbortSignal[],
    onChunk: (chunk: Chunk) => void,
  ): Promise<Chunk> {
    let final: Chunk | undefined;
    const decoder = new TextDecoder();
    /** The start of a line that continues in the next read (a copy). */
    let partial: Uint8Array | undefined;
    const handleLine = (bytes: Uint8Array) => {
      const line = decoder.decode(bytes);
      let obj: Chunk;
      try {
        obj = JSON.parse(line);
      } catch {
        if (line.trim() === "") return;
        throw this.#failed(`malformed line in the stream from ${path}: ${line.slice(0, 200)}`);
      }
      if (obj === null || typeof obj !== "object" || Array.isArray(obj)) {
        throw this.#failed(`malformed line in the stream from ${path}: ${line.slice(0, 200)}`);
      }
      if (obj.error !== undefined) {
        // the runner failed mid-answer (crashed, out of memory, as a 500 would say before the
        // answer began): retryable as that is, unless it fails the same way every time
        // (one with a status below 500, as some versions stream an error before any content:
        // what that status would have said, not retryable)
        const message = String(obj.error);
        const status = typeof obj.status === "number" ? obj.status : undefined;
        if (status !== undefined && status < 500) throw this.#httpError(status, message, path);
        throw new GleitzeitError("PROVIDER_ERROR", message, {
          details: { url: this.url, midStream: true },
          retryable: !DETERMINISTIC_500.test(message),
        });
      }
      onChunk(obj);
      if (obj.done === true) final = obj;
    };
    await this.#exchange(path, body, signals, {
      firstByteMs: this.#firstByteMs,
      idleMs: this.#idleMs,
      onBytes: (bytes) => {
        let start = 0;
        let nl = bytes.indexOf(NEWLINE);
        if (partial !== undefined) {
          if (nl < 0) {
            partial = concat(partial, bytes);
            return;
          }
          handleLine(concat(partial, bytes.subarray(0, nl)));
          partial = undefined;
          start = nl + 1;
          nl = bytes.indexOf(NEWLINE, start);
        }
        while (nl >= 0) {
          // JSON.parse ignores the trailing newline: no subarray for a chunk of one whole line
          handleLine(start === 0 && nl === bytes.length - 1 ? bytes : bytes.subarray(start, nl));
          start = nl + 1;
          nl = bytes.indexOf(NEWLINE, start);
        }
        if (start < bytes.length) partial = bytes.slice(start);
      },
    });
    if (partial !== undefined) handleLine(partial);
    if (!final) {
      throw this.#dropped(`the stream from ${path} ended without done (connection dropped?)`, {
        noDone: true,
      });
    }
    return final;
  }

  /**
   * One HTTP exchange under both timeouts. Streams the body's bytes to `onBytes` (if given;
   * the view is only valid during the call) or returns it decoded. Rejections: the caller's
   * signal reason when it aborted, PROVIDER_TIMEOUT when a budget ran out, else a classified
   * GleitzeitError.
   */
  async #exchange(
    path: string,
    body: Chunk | undefined,
    signals: readonly AbortSignal[],
    opts: { firstByteMs: number; idleMs: number; onBytes?: (bytes: Uint8Array) => void },
  ): Promise<string> {
    for (const s of signals) s.throwIfAborted();
    const dog = new Watchdog(signals, (phase, ms) => this.#timeoutError(path, phase, ms));
    dog.arm("first_byte", opts.firstByteMs);
    let reader: BodyReader | undefined;
    try {
      const response = await this.#fetch(`${this.url}${path}`, {
        method: body === undefined ? "GET" : "POST",
        headers: body === undefined ? undefined : { "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: dog.signal,
      });
      if (!response.ok) {
        const text = await response.text();
        dog.stop();
        throw this.#httpError(response.status, text, path, body);
      }
      if (!response.body) {
        dog.stop();
        return "";
      }
      reader = new BodyReader(response.body);
      const onBytes = opts.onBytes;
      const decoder = onBytes ? undefined : new TextDecoder();
      let whole = "";
      let bytes = await reader.read();
      while (bytes !== undefined) {
        if (onBytes) onBytes(bytes);
        else whole += decoder!.decode(bytes, { stream: true });
        // between chunks: the idle budget
        dog.arm("idle", opts.idleMs);
        bytes = await reader.read();
      }
      dog.stop();
      return decoder ? whole + decoder.decode() : "";
    } catch (e) {
      dog.stop();
      reader?.cancel();
      const aborted = signals.find((s) => s.aborted);
      if (aborted) throw aborted.reason;
      if (dog.error) throw dog.error;
      if (e instanceof GleitzeitError) throw e;
      throw this.#transportError(e, reader !== undefined);
    }
  }

  #timeoutError(path: string, phase: Phase, ms: number): GleitzeitError {
    const details = { url: this.url, path, timeoutMs: ms, phase };
    if (phase === "first_byte") {
      return new GleitzeitError(
        "PROVIDER_TIMEOUT",
        `no response from Ollama at ${this.url}${path} within ${ms} ms`,
        { details, hint: "the model may still be loading; raise firstByteTimeoutMs" },
      );
    }
    return new GleitzeitError(
      "PROVIDER_TIMEOUT",
      `Ollama at ${this.url}${path} sent nothing for ${ms} ms mid-response`,
      { details, hint: "the server stalled; raise idleTimeoutMs if the model is very slow" },
    );
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
      // an object cut short: the connection dropped (anything else is not Ollama's answer)
      if (text.trimStart().startsWith("{")) {
        throw this.#dropped(
          `invalid JSON from ${path} (connection dropped?): ${text.slice(0, 200)}`,
        );
      }
    }
    throw this.#failed(`invalid JSON from ${path}: ${text.slice(0, 200)}`);
  }

  /** An answer cut short (the connection dropped, the server went away): retryable. */
  #dropped(message: string, details: Record<string, unknown> = {}): GleitzeitError {
    return new GleitzeitError("NETWORK_ERROR", message, {
      details: { url: this.url, ...details },
      retryable: true,
    });
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
