/**
 * An MCP server (stdio) as a provider of `mcp/<name>`, through the MCP SDK's Client
 * (imported lazily: `validate` and `--help` never load it). The server starts on first
 * use and is started again on the next call after it died (calls in flight then fail as
 * PROVIDER_UNAVAILABLE, retryable). `tools/call` returns the MCP result plus `text` (its
 * text content joined); a result with `isError: true` fails the task
 * (TASK_EXECUTION_FAILED) with the result in the error details.
 *
 * @module
 */

import { sleep, systemClock } from "../../core/clock.ts";
import { GleitzeitError } from "../../core/errors.ts";
import type { CallContext, HealthReport, Provider } from "../provider.ts";
import { fromRpcError } from "../jsonrpc/rpc_errors.ts";
import { McpStdioTransport } from "./mcp_stdio_transport.ts";

/** How to start one MCP server. */
export interface McpServerOptions {
  /** The server's name: the protocol is `mcp/<name>`. */
  name: string;
  command: string;
  args?: string[];
  /** Added to the inherited environment. */
  env?: Record<string, string>;
  cwd?: string;
  /** Timeout of one request unless the task's signal ends it first (default 60000). */
  timeoutMs?: number;
  /** Timeout of the start and MCP handshake (default 30000). */
  connectTimeoutMs?: number;
  /** Stderr lines kept (default 200). */
  stderrLines?: number;
}

// The SDK's Client, as far as we use it (typed loosely so the SDK is only loaded on use).
interface SdkClient {
  connect(transport: unknown, options?: unknown): Promise<void>;
  close(): Promise<void>;
  ping(options?: unknown): Promise<unknown>;
  listTools(params?: unknown, options?: unknown): Promise<Record<string, unknown>>;
  callTool(params: unknown, schema?: unknown, options?: unknown): Promise<Record<string, unknown>>;
  listResources(params?: unknown, options?: unknown): Promise<Record<string, unknown>>;
  readResource(params: unknown, options?: unknown): Promise<Record<string, unknown>>;
  listPrompts(params?: unknown, options?: unknown): Promise<Record<string, unknown>>;
  getPrompt(params: unknown, options?: unknown): Promise<Record<string, unknown>>;
  getServerVersion(): unknown;
}

interface Connection {
  client: SdkClient;
  transport: McpStdioTransport;
  closed: boolean;
}

/** The text content of an MCP result, joined by newlines. */
export function joinText(result: Record<string, unknown>): string {
  const content = Array.isArray(result.content) ? result.content : [];
  return content
    .filter((c): c is { type: "text"; text: string } =>
      typeof c === "object" && c !== null && c.type === "text" && typeof c.text === "string"
    )
    .map((c) => c.text)
    .join("\n");
}

/** One MCP server spoken to over stdio. */
export class McpProvider implements Provider {
  readonly id: string;
  readonly protocol: string;
  readonly #options: McpServerOptions;
  #conn?: Promise<Connection>;
  #pid?: number;
  #closed = false;
  #crashes = 0;
  #starts = 0;
  #stderr: string[] = [];

  constructor(options: McpServerOptions) {
    this.#options = options;
    this.id = `mcp:${options.name}`;
    this.protocol = `mcp/${options.name}`;
  }

  /** The last stderr lines of the server (across restarts). */
  stderrTail(): string[] {
    return [...this.#stderr];
  }

  /** Facts for `provider list`. */
  info(): Record<string, unknown> {
    const o = this.#options;
    const info: Record<string, unknown> = {
      transport: "mcp-stdio",
      command: [o.command, ...(o.args ?? [])].join(" "),
      restarts: Math.max(0, this.#starts - 1),
    };
    if (this.#pid !== undefined) info.pid = this.#pid;
    if (this.#stderr.length > 0) info.stderrTail = this.#stderr.slice(-5);
    return info;
  }

  async call(method: string, params: Record<string, unknown>, ctx: CallContext): Promise<unknown> {
    const conn = await this.#connection(ctx.signal);
    const opts = { signal: ctx.signal, timeout: this.#options.timeoutMs ?? 60_000 };
    try {
      const result = await this.#dispatch(conn.client, method, params, opts);
      this.#crashes = 0;
      return result;
    } catch (e) {
      throw this.#mapError(e, conn, ctx.signal, method);
    }
  }

  async #dispatch(
    client: SdkClient,
    method: string,
    params: Record<string, unknown>,
    opts: { signal: AbortSignal; timeout: number },
  ): Promise<unknown> {
    switch (method) {
      case "ping":
        await client.ping(opts);
        return { ok: true, server: client.getServerVersion() ?? null };
      case "tools/list":
        return { tools: await this.#paginate(client, "listTools", "tools", opts) };
      case "tools/call": {
        const name = String(params.name);
        const args = (params.arguments ?? {}) as Record<string, unknown>;
        const result = await client.callTool({ name, arguments: args }, undefined, opts);
        const text = joinText(result);
        if (result.isError === true) {
          throw new GleitzeitError(
            "TASK_EXECUTION_FAILED",
            `${this.protocol} tool ${name} failed: ${text || "(no message)"}`,
            { details: { tool: name, result, text } },
          );
        }
        return { ...result, text };
      }
      case "resources/list":
        return { resources: await this.#paginate(client, "listResources", "resources", opts) };
      case "resources/read": {
        const result = await client.readResource({ uri: String(params.uri) }, opts);
        const contents = Array.isArray(result.contents) ? result.contents : [];
        const text = contents
          .map((c: { text?: unknown }) => (typeof c.text === "string" ? c.text : ""))
          .filter((t: string) => t !== "").join("\n");
        return { ...result, text };
      }
      case "prompts/list":
        return { prompts: await this.#paginate(client, "listPrompts", "prompts", opts) };
      case "prompts/get": {
        const p: Record<string, unknown> = { name: String(params.name) };
        if (params.arguments !== undefined) {
          // MCP prompt arguments are strings
          p.arguments = Object.fromEntries(
            Object.entries(params.arguments as Record<string, unknown>).map((
              [k, v],
            ) => [k, typeof v === "string" ? v : JSON.stringify(v)]),
          );
        }
        return await client.getPrompt(p, opts);
      }
      default:
        throw new GleitzeitError(
          "METHOD_NOT_SUPPORTED",
          `${this.protocol} has no method ${method}`,
        );
    }
  }

  async #paginate(
    client: SdkClient,
    fn: "listTools" | "listResources" | "listPrompts",
    key: string,
    opts: unknown,
  ): Promise<unknown[]> {
    const all: unknown[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < 1000; page++) {
      const result = await client[fn](cursor === undefined ? undefined : { cursor }, opts);
      const items = result[key];
      if (Array.isArray(items)) all.push(...items);
      cursor = typeof result.nextCursor === "string" ? result.nextCursor : undefined;
      if (cursor === undefined) break;
    }
    return all;
  }

  async health(signal?: AbortSignal): Promise<HealthReport> {
    const started = performance.now();
    try {
      const conn = await this.#connection(signal);
      await conn.client.ping({ signal, timeout: 10_000 });
      return { healthy: true, latencyMs: performance.now() - started, details: this.info() };
    } catch (e) {
      return {
        healthy: false,
        message: e instanceof Error ? e.message : String(e),
        details: this.info(),
      };
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    const conn = await this.#conn?.catch(() => undefined);
    this.#conn = undefined;
    if (conn && !conn.closed) await conn.client.close().catch(() => {});
    await conn?.transport.close().catch(() => {});
  }

  #connection(signal?: AbortSignal): Promise<Connection> {
    if (this.#closed) {
      return Promise.reject(
        new GleitzeitError("PROVIDER_UNAVAILABLE", `${this.id} is closed`, { retryable: false }),
      );
    }
    if (!this.#conn) {
      const attempt = this.#connect();
      this.#conn = attempt;
      attempt.catch(() => {
        if (this.#conn === attempt) this.#conn = undefined;
      });
    }
    const conn = this.#conn;
    if (!signal) return conn;
    return new Promise<Connection>((resolve, reject) => {
      const onAbort = () => reject(signal.reason);
      if (signal.aborted) return onAbort();
      signal.addEventListener("abort", onAbort, { once: true });
      conn.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
    });
  }

  async #connect(): Promise<Connection> {
    const o = this.#options;
    if (this.#crashes > 0) {
      await sleep(systemClock, Math.min(200 * 2 ** (this.#crashes - 1), 30_000));
    }
    const { Client } = await import("@modelcontextprotocol/sdk/client/index.js");
    const transport = new McpStdioTransport({
      command: o.command,
      args: o.args,
      env: o.env,
      cwd: o.cwd,
      name: this.id,
      stderrLines: o.stderrLines,
      onStderrLine: (line) => this.#remember(line),
    });
    const client = new Client({ name: "gleitzeit", version: "0.1.0" }) as unknown as SdkClient;
    const conn: Connection = { client, transport, closed: false };
    this.#starts++;
    try {
      await client.connect(transport, { timeout: o.connectTimeoutMs ?? 30_000 });
    } catch (e) {
      this.#crashes++;
      await transport.close().catch(() => {});
      if (e instanceof GleitzeitError) throw e;
      throw new GleitzeitError(
        "PROVIDER_UNAVAILABLE",
        `${this.id}: cannot start MCP server \`${o.command}\`: ${
          e instanceof Error ? e.message : e
        }`,
        {
          cause: e,
          details: { stderr: this.#stderr.slice(-20) },
          hint: "check `command` and `args` of the server under `mcp_servers:` in the config file",
        },
      );
    }
    this.#pid = transport.process?.pid;
    transport.process?.ended.then((exit) => {
      conn.closed = true;
      this.#pid = undefined;
      if (this.#closed) return;
      this.#crashes++;
      this.#remember(
        `--- ${this.id} server ${
          exit.signal ? `killed by ${exit.signal}` : `exit code ${exit.code}`
        } ---`,
      );
      this.#conn = undefined; // the next call starts it again
    });
    return conn;
  }

  #mapError(e: unknown, conn: Connection, signal: AbortSignal, method: string): GleitzeitError {
    if (e instanceof GleitzeitError) return e;
    if (signal.aborted) {
      return signal.reason instanceof GleitzeitError
        ? signal.reason
        : new GleitzeitError("TASK_CANCELLED", `${this.id}: ${method} cancelled`);
    }
    if (conn.closed || conn.transport.lastError) {
      return conn.transport.lastError ??
        new GleitzeitError("PROVIDER_UNAVAILABLE", `${this.id}: connection closed`);
    }
    const code = (e as { code?: unknown })?.code;
    const message = e instanceof Error ? e.message : String(e);
    if (code === -32000) {
      return new GleitzeitError("PROVIDER_UNAVAILABLE", `${this.id}: ${message}`, { cause: e });
    }
    if (code === -32001) {
      return new GleitzeitError("PROVIDER_TIMEOUT", `${this.id}: ${method}: ${message}`, {
        cause: e,
      });
    }
    if (typeof code === "number") {
      return fromRpcError({ code, message, data: (e as { data?: unknown }).data }, this.id);
    }
    return new GleitzeitError("PROVIDER_ERROR", `${this.id}: ${method}: ${message}`, { cause: e });
  }

  #remember(line: string): void {
    this.#stderr.push(line);
    const max = this.#options.stderrLines ?? 200;
    if (this.#stderr.length > max) this.#stderr.splice(0, this.#stderr.length - max);
  }
}
