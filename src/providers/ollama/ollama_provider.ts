/**
 * The built-in `llm/v1` provider on Ollama's native HTTP API: `llm/chat`, `llm/generate`
 * (alias `llm/complete`), `llm/vision` and `llm/embed`. Requests always stream internally so
 * the idle timeout can watch the connection and tokens reach `ctx.onProgress` as they come;
 * calls to one host pass a FIFO limit (default 1, as Ollama serves one request per model at
 * a time by default).
 *
 * Errors (code, retryable):
 * - server unreachable: PROVIDER_UNAVAILABLE, yes; hint `is Ollama running at URL? (ollama serve; elsewhere: --ollama-url ...)`
 * - 404 `model 'x' not found`: MODEL_NOT_FOUND, no; hint `ollama pull x`
 * - 503 server busy: PROVIDER_OVERLOADED, yes (the engine's backoff spaces the retries)
 * - 500: PROVIDER_ERROR with the server's message; retryable, because Ollama's 500s are mostly
 *   a crashed or out-of-memory runner that it restarts on the next request, except messages
 *   that fail the same way every time (`option "x" must be of type ...`, `failed to process
 *   inputs`), which are not
 * - 400: TASK_PARAMETER_ERROR, no; 429: RATE_LIMITED, yes
 * - `{"error"}` mid-stream: PROVIDER_ERROR with the server's message, retryable as a 500 is
 *   (a runner that failed mid-answer); a stream without `done`, a document cut short:
 *   NETWORK_ERROR, yes; a malformed line: TASK_EXECUTION_FAILED, no
 * - connection broken mid-answer: NETWORK_ERROR, yes
 * - no first byte within `firstByteTimeoutMs`, or silence beyond `idleTimeoutMs`:
 *   PROVIDER_TIMEOUT, yes (details.phase `first_byte` or `idle`)
 * - `format` set but the answer is not JSON: TASK_RESULT_ERROR, no
 * - image path outside the workflow directory or missing: TASK_PARAMETER_ERROR, no
 * - cancelled (`ctx.signal`): the request is aborted and the call rejects with the signal's reason
 *
 * Params: `temperature`, `max_tokens` (-> `num_predict`), `top_p` and `num_ctx` beside `model`
 * go into Ollama's `options` (keys given in `options` win); `format`, `keep_alive`, `tools`,
 * `system`, `images` are passed as Ollama names them; `stream` and `timeout` are not sent (the
 * provider always streams; `timeout` is the call's own limit in seconds, enforced here, besides
 * the task's `timeout`, which the engine enforces).
 *
 * @module
 */

import { setLongTimeout } from "../../core/clock.ts";
import { timeoutParamSeconds } from "../../core/duration.ts";
import { GleitzeitError } from "../../core/errors.ts";
import type { CallContext, HealthReport, Provider } from "../provider.ts";
import { HostLimiter, type LimiterStats } from "./host_limiter.ts";
import { resolveImages } from "./images.ts";
import { type Chunk, type FetchFn, OllamaClient } from "./ollama_client.ts";

/** Default Ollama address. */
export const DEFAULT_OLLAMA_URL = "http://localhost:11434";

/** Settings of an {@link OllamaProvider}; every field has a default. */
export interface OllamaProviderOptions {
  /** Server address; default `http://localhost:11434`. */
  url?: string;
  /** Concurrent calls to this host; more wait in FIFO order. Default 1. */
  maxConcurrent?: number;
  /** From sending a request to the first byte of the answer (covers model loading). Default 300 s. */
  firstByteTimeoutMs?: number;
  /** Longest silence between two chunks of an answer. Default 60 s. */
  idleTimeoutMs?: number;
  /** Budget of each request of `health()`. Default 5 s. */
  healthTimeoutMs?: number;
  /** Replaces the global `fetch` (tests). */
  fetch?: FetchFn;
}

/** Result of `llm/chat`, `llm/generate`, `llm/complete` and `llm/vision`. */
export interface LlmResult {
  /** The generated text. */
  response: string;
  model: string;
  done_reason: string | null;
  prompt_eval_count: number;
  eval_count: number;
  total_duration_ms: number;
  load_duration_ms: number;
  prompt_eval_duration_ms: number;
  eval_duration_ms: number;
  /** The parsed answer when `format` was given. */
  data?: unknown;
  /** `llm/chat` only: the assistant message (with `tool_calls` when the model called tools). */
  message?: { role: string; content: string; tool_calls?: unknown[] };
}

/** Result of `llm/embed`. */
export interface EmbedResult {
  embeddings: number[][];
  model: string;
  prompt_eval_count: number;
  total_duration_ms: number;
  load_duration_ms: number;
}

/** Top-level shorthands that map into Ollama's `options` (values in `options` win). */
const OPTION_ALIASES: Record<string, string> = {
  temperature: "temperature",
  max_tokens: "num_predict",
  top_p: "top_p",
  num_ctx: "num_ctx",
};

const ms = (ns: unknown): number => typeof ns === "number" ? Math.round(ns / 1e3) / 1e3 : 0;
const count = (n: unknown): number => typeof n === "number" ? n : 0;

function optionsOf(params: Record<string, unknown>): Record<string, unknown> | undefined {
  const options: Record<string, unknown> = {};
  for (const [param, option] of Object.entries(OPTION_ALIASES)) {
    if (params[param] !== undefined) options[option] = params[param];
  }
  if (params.options && typeof params.options === "object") {
    Object.assign(options, params.options);
  }
  return Object.keys(options).length > 0 ? options : undefined;
}

/** Copies the listed params that are present. */
function pick(params: Record<string, unknown>, keys: string[]): Chunk {
  const out: Chunk = {};
  for (const k of keys) if (params[k] !== undefined) out[k] = params[k];
  return out;
}

/** `llm/v1` on one Ollama server. */
export class OllamaProvider implements Provider {
  readonly id: string;
  readonly protocol = "llm/v1";
  readonly url: string;
  readonly #client: OllamaClient;
  readonly #limiter: HostLimiter;
  readonly #healthTimeoutMs: number;
  readonly #closed = new AbortController();

  constructor(options: OllamaProviderOptions = {}) {
    this.url = (options.url ?? DEFAULT_OLLAMA_URL).replace(/\/+$/, "");
    this.id = `ollama@${this.url}`;
    this.#limiter = new HostLimiter(options.maxConcurrent ?? 1);
    this.#healthTimeoutMs = options.healthTimeoutMs ?? 5_000;
    this.#client = new OllamaClient({
      url: this.url,
      firstByteTimeoutMs: options.firstByteTimeoutMs ?? 300_000,
      idleTimeoutMs: options.idleTimeoutMs ?? 60_000,
      fetch: options.fetch,
    });
  }

  /** Calls running and waiting for the per-host limit. */
  get concurrency(): LimiterStats {
    return this.#limiter.stats;
  }

  async call(method: string, params: Record<string, unknown>, ctx: CallContext): Promise<unknown> {
    const build = this.#builders[method];
    if (!build) {
      throw new GleitzeitError("METHOD_NOT_SUPPORTED", `llm/v1 has no method ${method}`, {
        details: { method },
      });
    }
    // Images are read before waiting for a slot: a bad path fails at once.
    const request = await build(params, ctx);
    this.#closed.signal.throwIfAborted();
    ctx.signal.throwIfAborted();
    // (a wait for the host's free place: not the attempt's time, see CallContext.onWaiting)
    let release = this.#limiter.tryAcquire();
    if (!release) {
      ctx.onWaiting?.(true);
      try {
        release = await this.#limiter.acquire(ctx.signal);
      } finally {
        ctx.onWaiting?.(false);
      }
    }
    // params.timeout (seconds): this call's own limit, from when it has its place (as the
    // task's `timeout` counts: see CallContext.onWaiting)
    const seconds = timeoutParamSeconds(params.timeout);
    const own = seconds === undefined ? undefined : new AbortController();
    // (setLongTimeout: a plain timer past ~24.8 days fires at once)
    const cancelTimer = own &&
      setLongTimeout(() =>
        own.abort(
          new GleitzeitError("TASK_TIMEOUT", `${method} exceeded its timeout of ${seconds}s`, {
            details: { timeout_seconds: seconds, limit: "timeout" },
            hint: "set by the task's params.timeout: raise it there",
          }),
        ), seconds! * 1000);
    try {
      return await request.run(
        own ? [ctx.signal, this.#closed.signal, own.signal] : [ctx.signal, this.#closed.signal],
      );
    } catch (e) {
      if (ctx.signal.aborted) throw ctx.signal.reason;
      if (own?.signal.aborted) throw own.signal.reason;
      throw e;
    } finally {
      cancelTimer?.();
      release();
    }
  }

  /** Version and model names of the server. */
  async health(signal?: AbortSignal): Promise<HealthReport> {
    const started = performance.now();
    try {
      const version = await this.#client.getJson("/api/version", signal, this.#healthTimeoutMs);
      const tags = await this.#client.getJson("/api/tags", signal, this.#healthTimeoutMs);
      const models = Array.isArray(tags.models)
        ? tags.models.map((m: { name?: string; model?: string }) => m.name ?? m.model ?? "")
        : [];
      return {
        healthy: true,
        latencyMs: Math.round(performance.now() - started),
        message: `Ollama ${version.version} at ${this.url}, ${models.length} models`,
        details: { url: this.url, version: version.version, models },
      };
    } catch (e) {
      if (signal?.aborted) throw signal.reason;
      const err = e instanceof GleitzeitError ? e : undefined;
      return {
        healthy: false,
        latencyMs: Math.round(performance.now() - started),
        message: err ? `${err.message}${err.hint ? ` — ${err.hint}` : ""}` : String(e),
        details: { url: this.url, code: err?.code ?? "PROVIDER_UNAVAILABLE" },
      };
    }
  }

  /** Aborts running calls and rejects waiting ones. */
  close(): Promise<void> {
    const reason = new GleitzeitError("PROVIDER_UNAVAILABLE", `${this.id} was closed`);
    this.#limiter.rejectAll(reason);
    this.#closed.abort(reason);
    return Promise.resolve();
  }

  /** Per method: prepare the request (read images), then a function that runs it. */
  readonly #builders: Record<
    string,
    (p: Record<string, unknown>, ctx: CallContext) => Promise<{
      run: (signals: readonly AbortSignal[]) => Promise<unknown>;
    }>
  > = {
    "llm/chat": async (p, ctx) => {
      let messages = p.messages as Chunk[];
      if (messages.some((m) => Array.isArray(m.images))) {
        messages = await Promise.all(
          messages.map(async (m) =>
            Array.isArray(m.images)
              ? { ...m, images: await resolveImages(m.images as string[], ctx.baseDir) }
              : m
          ),
        );
      }
      const body = { ...this.#common(p), messages, ...pick(p, ["tools"]) };
      return { run: (signals) => this.#generate("/api/chat", body, p, ctx, signals) };
    },
    "llm/generate": (p, ctx) => this.#prepareGenerate(p, ctx),
    "llm/complete": (p, ctx) => this.#prepareGenerate(p, ctx),
    "llm/vision": (p, ctx) => {
      if (!Array.isArray(p.images) || p.images.length === 0) {
        throw new GleitzeitError("TASK_PARAMETER_ERROR", "llm/vision needs at least one image", {
          hint: "images: [path relative to the workflow, or base64]",
        });
      }
      return this.#prepareGenerate(p, ctx);
    },
    "llm/embed": (p) => {
      const body = pick(p, ["model", "input", "truncate", "dimensions", "keep_alive", "options"]);
      return Promise.resolve({
        run: async (signals: readonly AbortSignal[]): Promise<EmbedResult> => {
          const r = await this.#client.postJson("/api/embed", body, signals);
          return {
            embeddings: (r.embeddings ?? []) as number[][],
            model: String(r.model ?? p.model),
            prompt_eval_count: count(r.prompt_eval_count),
            total_duration_ms: ms(r.total_duration),
            load_duration_ms: ms(r.load_duration),
          };
        },
      });
    },
  };

  async #prepareGenerate(p: Record<string, unknown>, ctx: CallContext) {
    const body: Chunk = { ...this.#common(p), ...pick(p, ["prompt", "system"]) };
    if (Array.isArray(p.images)) body.images = await resolveImages(p.images, ctx.baseDir);
    return {
      run: (signals: readonly AbortSignal[]) =>
        this.#generate("/api/generate", body, p, ctx, signals),
    };
  }

  /** Fields shared by chat and generate. `stream` is always on (see the module doc). */
  #common(p: Record<string, unknown>): Chunk {
    const body: Chunk = { model: p.model, stream: true, ...pick(p, ["format", "keep_alive"]) };
    const options = optionsOf(p);
    if (options) body.options = options;
    return body;
  }

  async #generate(
    path: string,
    body: Chunk,
    params: Record<string, unknown>,
    ctx: CallContext,
    signals: readonly AbortSignal[],
  ): Promise<LlmResult> {
    let text = "";
    let role = "assistant";
    const toolCalls: unknown[] = [];
    const final = await this.#client.stream(path, body, signals, (chunk) => {
      const message = chunk.message as Chunk | undefined;
      const piece = message ? message.content : chunk.response;
      if (message) {
        if (typeof message.role === "string") role = message.role;
        if (Array.isArray(message.tool_calls)) toolCalls.push(...message.tool_calls);
      }
      if (typeof piece === "string" && piece !== "") {
        text += piece;
        try {
          ctx.onProgress?.(piece);
        } catch { /* a failing watcher must not fail the task */ }
      }
    });
    const result: LlmResult = {
      response: text,
      model: String(final.model ?? params.model),
      done_reason: typeof final.done_reason === "string" ? final.done_reason : null,
      prompt_eval_count: count(final.prompt_eval_count),
      eval_count: count(final.eval_count),
      total_duration_ms: ms(final.total_duration),
      load_duration_ms: ms(final.load_duration),
      prompt_eval_duration_ms: ms(final.prompt_eval_duration),
      eval_duration_ms: ms(final.eval_duration),
    };
    if (params.format !== undefined) result.data = this.#parseFormatted(text, result);
    if (path === "/api/chat") {
      result.message = { role, content: text };
      if (toolCalls.length > 0) result.message.tool_calls = toolCalls;
    }
    return result;
  }

  #parseFormatted(text: string, result: LlmResult): unknown {
    try {
      return JSON.parse(text);
    } catch (e) {
      throw new GleitzeitError(
        "TASK_RESULT_ERROR",
        `the model's answer is not valid JSON although format was set: ${(e as Error).message}`,
        {
          details: { response: text.slice(0, 2000), done_reason: result.done_reason },
          hint: result.done_reason === "length"
            ? "the answer was cut at max_tokens/num_predict; raise it"
            : undefined,
        },
      );
    }
  }
}
