/**
 * Built-in `python/v1`: every task runs in its own Python process, started from the
 * embedded runner (runner_source.ts), in a fresh temporary work directory that is removed
 * afterwards. The result comes back through a file, never through stdout.
 *
 * @module
 */

import { isAbsolute, resolve } from "node:path";
import { GleitzeitError } from "../../core/errors.ts";
import type { CallContext, HealthReport, Provider } from "../provider.ts";
import { BoundedCapture, type CapturedOutput } from "./output_capture.ts";
import { killGroup, killProcessTree } from "./process_tree.ts";
import { type PythonInterpreter, resolvePython } from "./python_interpreter.ts";
import { RUNNER_SOURCE } from "./runner_source.ts";

/** Options of {@link PythonProvider}. */
export interface PythonProviderOptions {
  /** Provider id; default `python`. */
  id?: string;
  /** Interpreter command or path (the CLI passes GLEITZEIT_PYTHON here); default `python3`. */
  python?: string;
  /** Bytes of stdout and of stderr kept per task (each); default 1 MiB. */
  outputLimitBytes?: number;
  /** Where per-task work directories are created; default the system temp directory. */
  tempDir?: string;
  /**
   * Default isolation of tasks: `bwrap` (bubblewrap + rlimits, unprivileged user), `basic`
   * (rlimits only) or `none`. Workflows and tasks may override it through `ctx.sandbox`.
   */
  sandbox?: "bwrap" | "basic" | "none";
}

/** What the runner writes to the result file. */
interface RunnerPayload {
  ok: boolean;
  result?: unknown;
  kind?: "exception" | "exit" | "result_type";
  type?: string;
  message?: string;
  traceback?: string;
  code?: number;
  execution_time_ms: number;
}

/** The result of a successful `python/execute` or `python/script`. */
export interface PythonResult {
  result: unknown;
  output: string;
  stderr: string;
  execution_time_ms: number;
  output_truncated: boolean;
  stderr_truncated: boolean;
}

/** One prepared task for the runner. */
interface Job {
  kind: "execute" | "script";
  code?: string;
  script?: string;
  args?: string[];
  context: Record<string, unknown>;
}

const DEFAULT_OUTPUT_LIMIT = 1024 * 1024;
/** How long to wait for the output pipes to close once the process has exited. */
const PIPE_GRACE_MS = 500;
/** How much of stdout/stderr a failure keeps in its details. */
const DETAIL_TAIL = 8 * 1024;

/** Runs `python/execute` and `python/script`, one process per task. */
export class PythonProvider implements Provider {
  readonly id: string;
  readonly protocol = "python/v1";
  readonly #python: string;
  readonly #outputLimit: number;
  readonly #tempDir: string | undefined;
  /** Background clean-ups of aborted attempts; `close()` waits for them. */
  readonly #pending = new Set<Promise<void>>();
  /** Kill functions of running attempts, for `close()`. */
  readonly #running = new Set<() => void>();

  constructor(options: PythonProviderOptions = {}) {
    this.id = options.id ?? "python";
    this.#python = options.python ?? "python3";
    this.#outputLimit = options.outputLimitBytes ?? DEFAULT_OUTPUT_LIMIT;
    this.#tempDir = options.tempDir;
  }

  /** The resolved interpreter (resolved once per process and command). */
  interpreter(): Promise<PythonInterpreter> {
    return resolvePython(this.#python);
  }

  async call(method: string, params: Record<string, unknown>, ctx: CallContext): Promise<unknown> {
    const context = (params.context ?? {}) as Record<string, unknown>;
    let job: Job;
    switch (method) {
      case "python/execute":
        if (typeof params.code !== "string") {
          throw new GleitzeitError(
            "TASK_PARAMETER_ERROR",
            "python/execute needs `code` (a string)",
          );
        }
        job = { kind: "execute", code: params.code, context };
        break;
      case "python/script":
        job = {
          kind: "script",
          script: await this.#scriptPath(params.script, ctx),
          args: ((params.args ?? []) as unknown[]).map(String),
          context,
        };
        break;
      default:
        throw new GleitzeitError("METHOD_NOT_SUPPORTED", `python/v1 has no method ${method}`);
    }
    const timeout = typeof params.timeout === "number" ? params.timeout : undefined;
    return await this.#run(job, timeout, ctx);
  }

  async health(): Promise<HealthReport> {
    const started = performance.now();
    try {
      const py = await this.interpreter();
      return {
        healthy: true,
        latencyMs: performance.now() - started,
        message: `Python ${py.version}`,
        details: { executable: py.executable, version: py.version },
      };
    } catch (e) {
      return { healthy: false, message: (e as Error).message };
    }
  }

  async close(): Promise<void> {
    for (const kill of this.#running) kill();
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
  }

  async #scriptPath(script: unknown, ctx: CallContext): Promise<string> {
    if (typeof script !== "string" || script === "") {
      throw new GleitzeitError("TASK_PARAMETER_ERROR", "python/script needs `script` (a path)");
    }
    const path = isAbsolute(script) ? script : resolve(ctx.baseDir ?? Deno.cwd(), script);
    try {
      const info = await Deno.stat(path);
      if (!info.isFile) throw new Error("not a file");
    } catch (e) {
      throw new GleitzeitError(
        "TASK_PARAMETER_ERROR",
        `python/script: cannot read ${path}: ${(e as Error).message}`,
        { details: { script, path } },
      );
    }
    return path;
  }

  async #run(job: Job, timeoutSeconds: number | undefined, ctx: CallContext): Promise<unknown> {
    const py = await this.interpreter();
    throwIfAborted(ctx.signal);
    const base = await Deno.makeTempDir({ dir: this.#tempDir, prefix: "gleitzeit-py-" });
    const workDir = `${base}/work`;
    const resultPath = `${base}/result.json`;
    let child: Deno.ChildProcess;
    try {
      await Deno.mkdir(workDir);
      child = new Deno.Command(py.executable, {
        args: ["-I", "-c", RUNNER_SOURCE, "once"],
        cwd: workDir,
        clearEnv: true,
        env: childEnv(py, workDir),
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
    } catch (e) {
      await removeDir(base);
      throw new GleitzeitError(
        "PROVIDER_UNAVAILABLE",
        `cannot start ${py.executable}: ${(e as Error).message}`,
        { cause: e },
      );
    }
    const out = new BoundedCapture(child.stdout, this.#outputLimit);
    const err = new BoundedCapture(child.stderr, this.#outputLimit);
    const fullJob = { ...job, work_dir: workDir, result_path: resultPath, subreaper: true };
    writeAll(child.stdin, JSON.stringify(fullJob));

    const { promise: stopped, reject: stop } = Promise.withResolvers<never>();
    stopped.catch(() => {});
    let killed = false;
    const kill = (reason: unknown) => {
      if (killed) return;
      killed = true;
      killProcessTree(child.pid);
      stop(reason);
    };
    const onAbort = () => kill(abortReason(ctx.signal));
    ctx.signal.addEventListener("abort", onAbort, { once: true });
    const killOnClose = () =>
      kill(new GleitzeitError("TASK_CANCELLED", "the Python provider was closed"));
    this.#running.add(killOnClose);
    let timer: ReturnType<typeof setTimeout> | undefined;
    if (timeoutSeconds !== undefined) {
      timer = setTimeout(() =>
        kill(
          new GleitzeitError(
            "TASK_TIMEOUT",
            `Python task exceeded its timeout of ${timeoutSeconds}s`,
            { details: { timeout_seconds: timeoutSeconds } },
          ),
        ), timeoutSeconds * 1000);
    }
    if (ctx.signal.aborted) onAbort();

    const cleanup = async () => {
      await child.status;
      await Promise.all([out.finish(PIPE_GRACE_MS), err.finish(PIPE_GRACE_MS)]);
      await removeDir(base);
    };
    try {
      const status = await Promise.race([child.status, stopped]);
      // The runner has exited: take down anything of its group it left behind.
      killGroup(child.pid);
      const [stdout, stderr] = await Promise.all([
        out.finish(PIPE_GRACE_MS),
        err.finish(PIPE_GRACE_MS),
      ]);
      if (killed) throw await stopped;
      const payload = await readPayload(resultPath);
      await removeDir(base);
      return toResult(payload, status, stdout, stderr);
    } catch (e) {
      if (killed) {
        const done = cleanup().catch(() => {}).finally(() => this.#pending.delete(done));
        this.#pending.add(done);
      } else {
        await removeDir(base);
      }
      throw e;
    } finally {
      clearTimeout(timer);
      ctx.signal.removeEventListener("abort", onAbort);
      this.#running.delete(killOnClose);
    }
  }
}

function childEnv(py: PythonInterpreter, workDir: string): Record<string, string> {
  const bin = py.executable.slice(0, py.executable.lastIndexOf("/"));
  return {
    PATH: `${bin}:/usr/local/bin:/usr/bin:/bin`,
    LANG: "C.UTF-8",
    HOME: workDir,
    TMPDIR: workDir,
  };
}

function writeAll(stream: WritableStream<Uint8Array>, text: string): void {
  const writer = stream.getWriter();
  writer.write(new TextEncoder().encode(text))
    .then(() => writer.close())
    .catch(() => {
      // The child died before reading its job; its exit status tells the story.
    });
}

function abortReason(signal: AbortSignal): GleitzeitError {
  const reason = signal.reason;
  if (reason instanceof GleitzeitError) return reason;
  return new GleitzeitError("TASK_CANCELLED", "the Python task was cancelled", {
    cause: reason,
  });
}

function throwIfAborted(signal: AbortSignal): void {
  if (signal.aborted) throw abortReason(signal);
}

async function readPayload(path: string): Promise<RunnerPayload | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch {
    return undefined;
  }
  try {
    return JSON.parse(text) as RunnerPayload;
  } catch {
    return undefined;
  }
}

async function removeDir(path: string): Promise<void> {
  try {
    await Deno.remove(path, { recursive: true });
  } catch {
    // Already gone; or a file the task made unremovable, which the temp reaper takes.
  }
}

function tail(text: string): string {
  return text.length > DETAIL_TAIL ? text.slice(-DETAIL_TAIL) : text;
}

/** Maps the runner's outcome (or its absence) to the task result or a GleitzeitError. */
export function toResult(
  payload: RunnerPayload | undefined,
  status: Deno.CommandStatus,
  stdout: CapturedOutput,
  stderr: CapturedOutput,
): PythonResult {
  const io = { output: tail(stdout.text), stderr: tail(stderr.text) };
  if (payload === undefined) {
    const how = status.signal
      ? `was killed by signal ${status.signal}`
      : `exited with code ${status.code} without producing a result`;
    const last = stderr.text.trim().split("\n").at(-1) ?? "";
    throw new GleitzeitError(
      "TASK_EXECUTION_FAILED",
      `the Python process ${how}${last ? `: ${last}` : ""}`,
      { details: { exit_code: status.code, signal: status.signal, ...io } },
    );
  }
  if (payload.ok) {
    return {
      result: payload.result ?? null,
      output: stdout.text,
      stderr: stderr.text,
      execution_time_ms: round(payload.execution_time_ms),
      output_truncated: stdout.truncated,
      stderr_truncated: stderr.truncated,
    };
  }
  const details = {
    exception_type: payload.type,
    traceback: payload.traceback,
    execution_time_ms: round(payload.execution_time_ms),
    ...io,
  };
  if (payload.kind === "result_type") {
    throw new GleitzeitError("TASK_RESULT_ERROR", payload.message ?? "result is not JSON", {
      details: { type: payload.type, ...io },
    });
  }
  throw new GleitzeitError(
    "TASK_EXECUTION_FAILED",
    payload.message ?? "the Python task raised an exception",
    { details: payload.kind === "exit" ? { ...details, exit_code: payload.code } : details },
  );
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
