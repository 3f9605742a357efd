/**
 * JSON-RPC over a child process: one JSON payload per line on stdin and stdout
 * (newline-delimited JSON). The child's stderr, and any stdout line that is not JSON,
 * is kept in a ring buffer for diagnosis. Closing is graceful: stdin is closed, then
 * SIGTERM, then SIGKILL.
 *
 * @module
 */

import { GleitzeitError } from "../../core/errors.ts";
import type { JsonRpcMessage } from "./messages.ts";
import type { Transport } from "./transport.ts";

/** How to start the child process. */
export interface StdioTransportOptions {
  command: string;
  args?: string[];
  /** Added to (not replacing) the inherited environment. */
  env?: Record<string, string>;
  cwd?: string;
  /** Name used in error messages (a provider id). */
  name?: string;
  /** How many stderr lines to keep (default 200). */
  stderrLines?: number;
  /** Sees every stderr line as it arrives. */
  onStderrLine?: (line: string) => void;
  /** How long close() waits after closing stdin, and again after SIGTERM (default 2000 ms). */
  killGraceMs?: number;
}

/** How the child ended. */
export interface ExitInfo {
  code: number;
  signal: string | null;
}

async function forEachLine(
  stream: ReadableStream<Uint8Array>,
  fn: (line: string) => void,
): Promise<void> {
  let buffer = "";
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let nl: number;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, nl).replace(/\r$/, "");
        buffer = buffer.slice(nl + 1);
        fn(line);
      }
    }
  } catch {
    // the pipe broke because the process died; the exit handler reports it
  } finally {
    if (buffer.length > 0) fn(buffer);
    reader.releaseLock();
  }
}

/** A child process spoken to in newline-delimited JSON-RPC. */
export class StdioTransport implements Transport {
  readonly #child: Deno.ChildProcess;
  readonly #name: string;
  readonly #options: StdioTransportOptions;
  readonly #tail: string[] = [];
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #encoder = new TextEncoder();
  #onMessage: (payload: unknown) => void = () => {};
  #onClose: (reason: GleitzeitError) => void = () => {};
  #exit?: ExitInfo;
  #closing = false;
  /** Resolves when the process has exited and its output has been read. */
  readonly ended: Promise<ExitInfo>;

  private constructor(child: Deno.ChildProcess, options: StdioTransportOptions) {
    this.#child = child;
    this.#options = options;
    this.#name = options.name ?? options.command;
    this.#writer = child.stdin.getWriter();
    const stdoutDone = forEachLine(child.stdout, (line) => this.#stdoutLine(line));
    const stderrDone = forEachLine(child.stderr, (line) => this.#remember(line));
    this.ended = Promise.all([child.status, stdoutDone, stderrDone]).then(([status]) => {
      this.#exit = { code: status.code, signal: status.signal };
      this.#onClose(this.#exitError());
      return this.#exit;
    });
  }

  /** Starts the child. Fails with PROVIDER_UNAVAILABLE (not retryable) when it cannot start. */
  static spawn(options: StdioTransportOptions): StdioTransport {
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(options.command, {
        args: options.args ?? [],
        env: options.env,
        cwd: options.cwd,
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
    } catch (e) {
      const name = options.name ?? options.command;
      throw new GleitzeitError(
        "PROVIDER_UNAVAILABLE",
        `${name}: cannot start \`${options.command}\`: ${e instanceof Error ? e.message : e}`,
        {
          retryable: false,
          cause: e,
          details: { command: options.command, args: options.args ?? [], cwd: options.cwd },
          hint: "check `command`, `args` and `cwd` of the provider in the config file",
        },
      );
    }
    return new StdioTransport(child, options);
  }

  /** The child's process id. */
  get pid(): number {
    return this.#child.pid;
  }

  /** True until the process has exited. */
  get alive(): boolean {
    return this.#exit === undefined;
  }

  /** How it ended, once it has. */
  get exitInfo(): ExitInfo | undefined {
    return this.#exit;
  }

  /** The last stderr lines (and stray stdout lines, prefixed `stdout: `). */
  stderrTail(): string[] {
    return [...this.#tail];
  }

  onMessage(handler: (payload: unknown) => void): void {
    this.#onMessage = handler;
  }

  onClose(handler: (reason: GleitzeitError) => void): void {
    this.#onClose = handler;
    if (this.#exit) handler(this.#exitError());
  }

  async send(payload: JsonRpcMessage | JsonRpcMessage[]): Promise<void> {
    if (this.#exit || this.#closing) throw this.#exitError();
    try {
      await this.#writer.write(this.#encoder.encode(JSON.stringify(payload) + "\n"));
    } catch (e) {
      throw new GleitzeitError("PROVIDER_UNAVAILABLE", `${this.#name}: cannot write to stdin`, {
        cause: e,
        details: { stderr: this.stderrTail().slice(-20) },
      });
    }
  }

  /** Sends a signal; false when the process is already gone. */
  kill(signal: Deno.Signal = "SIGTERM"): boolean {
    if (this.#exit) return false;
    try {
      this.#child.kill(signal);
      return true;
    } catch {
      return false;
    }
  }

  /** Closes stdin, then sends SIGTERM, then SIGKILL, each after a grace period. */
  async close(): Promise<void> {
    this.#closing = true;
    const grace = this.#options.killGraceMs ?? 2000;
    await this.#writer.close().catch(() => {});
    if (await this.#endsWithin(grace)) return;
    this.kill("SIGTERM");
    if (await this.#endsWithin(grace)) return;
    this.kill("SIGKILL");
    await this.ended;
  }

  async #endsWithin(ms: number): Promise<boolean> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<false>((r) => (timer = setTimeout(() => r(false), ms)));
    try {
      return await Promise.race([this.ended.then(() => true), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  #remember(line: string): void {
    this.#tail.push(line);
    const max = this.#options.stderrLines ?? 200;
    if (this.#tail.length > max) this.#tail.splice(0, this.#tail.length - max);
    this.#options.onStderrLine?.(line);
  }

  #stdoutLine(line: string): void {
    if (line.trim() === "") return;
    let payload: unknown;
    try {
      payload = JSON.parse(line);
    } catch {
      this.#remember(`stdout: ${line}`);
      return;
    }
    this.#onMessage(payload);
  }

  #exitError(): GleitzeitError {
    const exit = this.#exit;
    const how = !exit
      ? "is shutting down"
      : exit.signal
      ? `was killed by ${exit.signal}`
      : `exited with code ${exit.code}`;
    const stderr = this.stderrTail().slice(-20);
    return new GleitzeitError("PROVIDER_UNAVAILABLE", `${this.#name} ${how}`, {
      retryable: !this.#closing,
      details: { exitCode: exit?.code, signal: exit?.signal, stderr },
      hint: stderr.length > 0 ? `last stderr line: ${stderr[stderr.length - 1]}` : undefined,
    });
  }
}
