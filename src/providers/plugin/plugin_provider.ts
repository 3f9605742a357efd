/**
 * An external provider: an executable speaking newline-delimited JSON-RPC 2.0 over
 * stdin/stdout (one instance = one process), or a service speaking JSON-RPC over HTTP POST.
 * The process starts on first use, is restarted with exponential backoff when it dies
 * (calls in flight then fail as PROVIDER_UNAVAILABLE, retryable, so a retry lands on the
 * restarted process), keeps its last stderr lines for diagnosis, and is shut down
 * cleanly (stdin closed, SIGTERM, SIGKILL).
 *
 * @module
 */

import { sleep, systemClock } from "../../core/clock.ts";
import { GleitzeitError } from "../../core/errors.ts";
import type { JsonSchema } from "../../core/json_schema.ts";
import { JsonRpcClient } from "../jsonrpc/client.ts";
import { HttpTransport } from "../jsonrpc/http_transport.ts";
import { StdioTransport } from "../jsonrpc/stdio_transport.ts";
import type { CallContext, HealthReport, MethodSpec, Provider } from "../provider.ts";
import type { ProviderExtras, ProviderLimits } from "../registry.ts";

/** How to reach one instance of an external provider. */
export interface PluginProviderOptions {
  /** Unique provider id (`calc`, `calc#2`). */
  id: string;
  protocol: string;
  /** Executable for stdio providers (exactly one of command and url). */
  command?: string;
  args?: string[];
  /** Added to the inherited environment. */
  env?: Record<string, string>;
  cwd?: string;
  /** Endpoint for HTTP providers. */
  url?: string;
  headers?: Record<string, string>;
  /**
   * Method probed by health(); its result may be `{healthy: false, ...}`. Absent: a stdio
   * provider is healthy while its process lives, an HTTP one while it answers `ping` with
   * any JSON-RPC response.
   */
  healthMethod?: string;
  /** Default timeout of one call (the task's own timeout still applies through its signal). */
  timeoutMs?: number;
  /** Stderr lines kept (default 200). */
  stderrLines?: number;
  /** Restart backoff: base doubles per consecutive crash up to max (defaults 200 ms, 30 s). */
  restartBaseDelayMs?: number;
  restartMaxDelayMs?: number;
  /** Grace periods of a clean shutdown (default 2000 ms each). */
  killGraceMs?: number;
  /** Sent to the process for a call that was cancelled or timed out (default `$/cancelRequest`). */
  cancelMethod?: string | null;
  /** Applied by the registry. */
  limits?: ProviderLimits;
}

interface Running {
  client: JsonRpcClient;
  transport: StdioTransport | HttpTransport;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Methods as a `describe` call returns them: `{methods: [{name, description?, params}]}`. */
export function parseDescribeResult(result: unknown, source: string): {
  methods: MethodSpec[];
  description?: string;
  protocol?: string;
} {
  const fail = (why: string) =>
    new GleitzeitError("PROVIDER_ERROR", `${source}: describe returned ${why}`, {
      hint: "describe must return {methods: [{name, description?, params: <JSON Schema>}]}",
    });
  if (!isObject(result) || !Array.isArray(result.methods)) throw fail("no `methods` array");
  const methods = result.methods.map((m, i): MethodSpec => {
    if (!isObject(m) || typeof m.name !== "string" || m.name === "") {
      throw fail(`a method without a name at methods[${i}]`);
    }
    const params = m.params ?? { type: "object" };
    if (!isObject(params)) throw fail(`params of ${m.name} that are not a JSON Schema object`);
    const spec: MethodSpec = { name: m.name, params: params as JsonSchema };
    if (typeof m.description === "string") spec.description = m.description;
    return spec;
  });
  const out: { methods: MethodSpec[]; description?: string; protocol?: string } = { methods };
  if (typeof result.description === "string") out.description = result.description;
  if (typeof result.protocol === "string") out.protocol = result.protocol;
  return out;
}

/** One instance of an external JSON-RPC provider. */
/** How long a health probe gives a stdio process it has just started to fail (ms). */
const START_GRACE_MS = 300;

export class PluginProvider implements Provider, ProviderExtras {
  readonly id: string;
  readonly protocol: string;
  readonly limits?: ProviderLimits;
  readonly #options: PluginProviderOptions;
  #running?: Running;
  #starting?: Promise<Running>;
  #crashes = 0;
  #lastExitAt = 0;
  #starts = 0;
  #restartTimer?: ReturnType<typeof setTimeout>;
  #closed = false;
  #stderr: string[] = [];
  #lastExit?: string;

  constructor(options: PluginProviderOptions) {
    if ((options.command === undefined) === (options.url === undefined)) {
      throw new GleitzeitError(
        "CONFIG_ERROR",
        `provider ${options.id}: give exactly one of command and url`,
      );
    }
    this.id = options.id;
    this.protocol = options.protocol;
    this.#options = options;
    if (options.limits) this.limits = options.limits;
  }

  /** The running process's id (stdio providers). */
  get pid(): number | undefined {
    const t = this.#running?.transport;
    return t instanceof StdioTransport ? t.pid : undefined;
  }

  /** How many times a process was started. */
  get starts(): number {
    return this.#starts;
  }

  /** The last stderr lines across restarts (exits are marked). */
  stderrTail(): string[] {
    return [...this.#stderr];
  }

  async call(method: string, params: Record<string, unknown>, ctx: CallContext): Promise<unknown> {
    const { client } = await this.#ready(ctx.signal);
    const opts: { signal: AbortSignal; timeoutMs?: number } = { signal: ctx.signal };
    if (this.#options.timeoutMs !== undefined) opts.timeoutMs = this.#options.timeoutMs;
    const seen = this.#remembered;
    try {
      const result = await client.call(method, params, opts);
      this.#crashes = 0;
      return result;
    } catch (e) {
      throw this.#withStrays(e, seen);
    }
  }

  /** Calls a control method (describe, health) outside any task. */
  async request(method: string, params?: Record<string, unknown>, signal?: AbortSignal) {
    const { client } = await this.#ready(signal);
    const seen = this.#remembered;
    try {
      return await client.call(method, params, {
        signal,
        timeoutMs: this.#options.timeoutMs ?? 30_000,
      });
    } catch (e) {
      throw this.#withStrays(e, seen);
    }
  }

  /** Asks the provider for its methods (`describe` unless named otherwise). */
  async describe(method = "describe", signal?: AbortSignal) {
    return parseDescribeResult(await this.request(method, undefined, signal), this.id);
  }

  async health(signal?: AbortSignal): Promise<HealthReport> {
    const started = performance.now();
    let running: Running;
    try {
      running = await this.#ready(signal);
    } catch (e) {
      return {
        healthy: false,
        message: e instanceof Error ? e.message : String(e),
        details: this.info(),
      };
    }
    const method = this.#options.healthMethod;
    if (method === undefined && running.transport instanceof StdioTransport) {
      // Healthy while the process lives: one just started is given a moment to fail (a
      // command that is not there, a script that exits at once), or it would pass for healthy.
      const transport = running.transport;
      const age = Date.now() - (this.#startedAt.get(transport) ?? 0);
      if (transport.alive && age < START_GRACE_MS) {
        await Promise.race([transport.ended, sleep(systemClock, START_GRACE_MS - age)]);
      }
      if (!transport.alive) {
        return {
          healthy: false,
          message: `${this.id} ${
            transport.exitInfo?.signal
              ? `was killed by ${transport.exitInfo.signal}`
              : `exited with code ${transport.exitInfo?.code}`
          } at its start`,
          details: this.info(),
        };
      }
      return { healthy: true, details: this.info() };
    }
    try {
      const result = await running.client.call(method ?? "ping", undefined, {
        signal,
        timeoutMs: this.#options.timeoutMs ?? 10_000,
      });
      const healthy = !(isObject(result) && result.healthy === false);
      const report: HealthReport = {
        healthy,
        latencyMs: performance.now() - started,
        details: { ...this.info(), ...(isObject(result) ? { response: result } : {}) },
      };
      if (!healthy && isObject(result) && typeof result.message === "string") {
        report.message = result.message;
      }
      return report;
    } catch (e) {
      // an HTTP service without a health method is alive if it answers at all
      if (
        method === undefined && e instanceof GleitzeitError && typeof e.details.rpcCode === "number"
      ) {
        return { healthy: true, latencyMs: performance.now() - started, details: this.info() };
      }
      return {
        healthy: false,
        message: e instanceof Error ? e.message : String(e),
        details: this.info(),
      };
    }
  }

  /** Facts for `provider list`. */
  info(): Record<string, unknown> {
    const o = this.#options;
    const info: Record<string, unknown> = o.url !== undefined
      ? { transport: "http", url: o.url }
      : { transport: "stdio", command: [o.command!, ...(o.args ?? [])].join(" ") };
    if (this.pid !== undefined) info.pid = this.pid;
    info.running = this.#running !== undefined;
    if (o.command !== undefined) info.restarts = Math.max(0, this.#starts - 1);
    if (this.#lastExit !== undefined) info.lastExit = this.#lastExit;
    if (this.#stderr.length > 0) info.stderrTail = this.#stderr.slice(-5);
    return info;
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#restartTimer !== undefined) clearTimeout(this.#restartTimer);
    const running = this.#running ?? await this.#starting?.catch(() => undefined);
    this.#running = undefined;
    if (running) await running.client.close();
  }

  #ready(signal?: AbortSignal): Promise<Running> {
    if (this.#closed) {
      return Promise.reject(
        new GleitzeitError("PROVIDER_UNAVAILABLE", `${this.id} is closed`, { retryable: false }),
      );
    }
    if (this.#running) return Promise.resolve(this.#running);
    if (!this.#starting) {
      this.#starting = this.#start().finally(() => (this.#starting = undefined));
    }
    if (!signal) return this.#starting;
    // a caller may give up waiting; the start goes on for the next one
    return new Promise<Running>((resolve, reject) => {
      const onAbort = () => reject(signal.reason);
      if (signal.aborted) return onAbort();
      signal.addEventListener("abort", onAbort, { once: true });
      this.#starting!.then(resolve, reject).finally(() =>
        signal.removeEventListener("abort", onAbort)
      );
    });
  }

  async #start(): Promise<Running> {
    const o = this.#options;
    if (o.url !== undefined) {
      const transport = new HttpTransport({ url: o.url, headers: o.headers, name: this.id });
      const client = new JsonRpcClient(transport, { name: this.id });
      this.#running = { client, transport };
      return this.#running;
    }
    if (this.#crashes > 0) {
      const base = o.restartBaseDelayMs ?? 200;
      const backoff = Math.min(base * 2 ** (this.#crashes - 1), o.restartMaxDelayMs ?? 30_000);
      const wait = backoff - (Date.now() - this.#lastExitAt);
      if (wait > 0) await sleep(systemClock, wait);
    }
    if (this.#closed) {
      throw new GleitzeitError("PROVIDER_UNAVAILABLE", `${this.id} is closed`, {
        retryable: false,
      });
    }
    const transport = StdioTransport.spawn({
      command: o.command!,
      args: o.args,
      env: o.env,
      cwd: o.cwd,
      name: this.id,
      stderrLines: o.stderrLines,
      killGraceMs: o.killGraceMs,
      onStderrLine: (line) => this.#remember(line),
    });
    this.#starts++;
    const cancelMethod = o.cancelMethod === undefined ? "$/cancelRequest" : o.cancelMethod;
    const client = new JsonRpcClient(transport, {
      name: this.id,
      ...(cancelMethod ? { cancelMethod } : {}),
      onStray: (payload) => this.#remember(`stray message: ${JSON.stringify(payload)}`),
    });
    const running: Running = { client, transport };
    this.#running = running;
    this.#startedAt.set(transport, Date.now());
    transport.ended.then((exit) => this.#exited(running, exit));
    return running;
  }

  #exited(running: Running, exit: { code: number; signal: string | null }): void {
    if (this.#running === running) this.#running = undefined;
    this.#lastExit = exit.signal ? `killed by ${exit.signal}` : `exit code ${exit.code}`;
    this.#lastExitAt = Date.now();
    if (this.#closed) return;
    this.#crashes++;
    this.#remember(`--- ${this.id} process ${this.#lastExit}; restarting ---`);
    // restart eagerly (after backoff) so the next call or probe finds it ready; unref'd so an
    // idle provider never keeps the CLI alive
    const base = this.#options.restartBaseDelayMs ?? 200;
    const delay = Math.min(
      base * 2 ** (this.#crashes - 1),
      this.#options.restartMaxDelayMs ?? 30_000,
    );
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = undefined;
      if (!this.#closed && !this.#running) this.#ready().catch(() => {});
    }, delay);
    Deno.unrefTimer(this.#restartTimer as unknown as number);
  }

  /** When each process was started (see health). */
  readonly #startedAt = new WeakMap<StdioTransport, number>();

  /** Lines remembered so far (see #remember), in all. */
  #remembered = 0;

  /**
   * A call that timed out while the provider wrote what answers nothing (a line on stdout that
   * is not JSON, a message that is no answer): its error says so, with the last of them, as
   * that is the likely cause (an answer written wrong, or a log line on stdout).
   */
  #withStrays(e: unknown, since: number): unknown {
    if (!(e instanceof GleitzeitError) || e.code !== "PROVIDER_TIMEOUT") return e;
    const n = Math.min(this.#remembered - since, this.#stderr.length);
    const fresh = (n > 0 ? this.#stderr.slice(-n) : [])
      .filter((l) => l.startsWith("stdout: ") || l.startsWith("stray message: "));
    if (fresh.length === 0) return e;
    const last = fresh[fresh.length - 1]!.slice(0, 300);
    return new GleitzeitError(
      e.code,
      `${e.message} (meanwhile it wrote ${fresh.length} line(s) that answer nothing, the last: ${last})`,
      {
        cause: e,
        retryable: e.retryable,
        details: { ...e.details, unanswered: fresh.slice(-5) },
        hint: e.hint ??
          "a JSON-RPC server writes only its messages to stdout, one per line, each a valid " +
            "response to the request whose id it carries; logs go to stderr",
      },
    );
  }

  #remember(line: string): void {
    this.#remembered++;
    this.#stderr.push(line);
    const max = this.#options.stderrLines ?? 200;
    if (this.#stderr.length > max) this.#stderr.splice(0, this.#stderr.length - max);
  }
}
