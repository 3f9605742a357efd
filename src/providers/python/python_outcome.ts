/** From what the runner left behind (result file, output, exit) to a result or an error. @module */

import { GleitzeitError } from "../../core/errors.ts";
import { SANDBOX_UID } from "./bubblewrap.ts";
import type { CapturedOutput } from "./output_capture.ts";
import type { SandboxLimits, SandboxPolicy } from "./sandbox_policy.ts";

/** What the runner writes to the result file. */
export interface RunnerPayload {
  ok: boolean;
  result?: unknown;
  kind?: "exception" | "exit" | "result_type";
  type?: string;
  message?: string;
  traceback?: string;
  code?: number;
  execution_time_ms: number;
  stdout_dropped?: number;
  stderr_dropped?: number;
  /** Size of the output file (warm pool); -1 when unknown. */
  stdout_size?: number;
  stderr_size?: number;
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

/** How the task's process ended. */
export interface ProcessExit {
  code: number | null;
  signal: string | null;
}

/**
 * Python exceptions that mean "try again later" (network hiccups, timeouts): a task that raises
 * one is retried under its `retry:` policy. Any other exception is a bug in the task and is not.
 */
export const RETRYABLE_EXCEPTIONS: ReadonlySet<string> = new Set([
  "TimeoutError",
  "ConnectionError",
  "ConnectionRefusedError",
  "ConnectionResetError",
  "ConnectionAbortedError",
  "BrokenPipeError",
  "socket.timeout",
  "urllib.error.URLError",
]);

/** How much of stdout/stderr a failure keeps in its details. */
const DETAIL_TAIL = 8 * 1024;

const SIGNALS: Record<number, string> = {
  1: "SIGHUP",
  2: "SIGINT",
  3: "SIGQUIT",
  4: "SIGILL",
  6: "SIGABRT",
  7: "SIGBUS",
  8: "SIGFPE",
  9: "SIGKILL",
  11: "SIGSEGV",
  13: "SIGPIPE",
  14: "SIGALRM",
  15: "SIGTERM",
  24: "SIGXCPU",
  25: "SIGXFSZ",
};

/** A signal number's name (`SIGKILL`), or `signal N`. */
export function signalName(n: number): string {
  return SIGNALS[n] ?? `signal ${n}`;
}

/** Decodes a `waitpid` status (warm pool). */
export function exitFromWaitStatus(status: number): ProcessExit {
  const sig = status & 0x7f;
  if (sig !== 0 && sig !== 0x7f) return { code: null, signal: signalName(sig) };
  return { code: (status >> 8) & 0xff, signal: null };
}

/** A Deno status; bubblewrap reports its child's death by signal N as exit 128+N. */
export function exitFromStatus(status: Deno.CommandStatus, viaBwrap: boolean): ProcessExit {
  if (status.signal) return { code: null, signal: status.signal };
  if (viaBwrap && status.code > 128 && status.code < 160) {
    return { code: null, signal: signalName(status.code - 128) };
  }
  return { code: status.code, signal: null };
}

/** The end of a task's output, as error details hold it. */
export function outputTail(text: string): string {
  return text.length > DETAIL_TAIL ? text.slice(-DETAIL_TAIL) : text;
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

/** Maps the runner's outcome (or its absence) to the task result, or throws the error. */
export function toResult(
  payload: RunnerPayload | undefined,
  exit: ProcessExit,
  stdout: CapturedOutput,
  stderr: CapturedOutput,
  limits?: SandboxLimits & Partial<Pick<SandboxPolicy, "mode" | "network" | "grants">>,
): PythonResult {
  const io = { output: outputTail(stdout.text), stderr: outputTail(stderr.text) };
  if (payload === undefined) {
    let how = exit.signal
      ? `was killed by signal ${exit.signal}`
      : `exited with code ${exit.code} without producing a result`;
    let limit: string | undefined;
    let hint: string | undefined;
    if (limits && exit.signal === "SIGXCPU") {
      how = `exceeded its CPU limit of ${limits.cpuSeconds} s (SIGXCPU)`;
      limit = "cpu_seconds";
      hint = `the task may use ${limits.cpuSeconds} s of CPU; raise it with sandbox: ` +
        `{cpu_seconds: N}`;
    } else if (limits && exit.signal === "SIGXFSZ") {
      how = `exceeded its file size limit of ${limits.fileSizeMb} MiB (SIGXFSZ)`;
      limit = "file_size_mb";
      hint = `the task may write files of up to ${limits.fileSizeMb} MiB; raise it with ` +
        `sandbox: {file_size_mb: N}`;
    }
    const last = stderr.text.trim().split("\n").at(-1) ?? "";
    throw new GleitzeitError(
      "TASK_EXECUTION_FAILED",
      `the Python process ${how}${last ? `: ${last}` : ""}`,
      {
        details: {
          exit_code: exit.code,
          signal: exit.signal,
          ...(limit ? { limit } : {}),
          ...io,
        },
        ...(hint ? { hint } : {}),
      },
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
  if (payload.kind === "result_type") {
    throw new GleitzeitError("TASK_RESULT_ERROR", payload.message ?? "result is not JSON", {
      details: { type: payload.type, ...io },
    });
  }
  const details: Record<string, unknown> = {
    exception_type: payload.type,
    traceback: payload.traceback,
    execution_time_ms: round(payload.execution_time_ms),
    ...io,
  };
  if (payload.kind === "exit") details.exit_code = payload.code;
  const cause = limits && payload.kind === "exception" ? sandboxCause(payload, limits) : undefined;
  if (cause?.limit) details.limit = cause.limit;
  throw new GleitzeitError(
    "TASK_EXECUTION_FAILED",
    payload.message ?? "the Python task raised an exception",
    {
      details,
      // transient by nature: a task's `retry:` policy applies to these (and only these), but
      // not a connection the sandbox refuses (no network): it would be refused again
      retryable: payload.kind === "exception" && RETRYABLE_EXCEPTIONS.has(payload.type ?? "") &&
        !cause?.noNetwork,
      ...(cause ? { hint: cause.hint } : {}),
    },
  );
}

/** Exceptions that network access refused by the sandbox raises in common libraries. */
const NETWORK_FAILURES =
  /^(?:urllib\.error\.URLError|ConnectionRefusedError|ConnectionError|OSError|socket\.gaierror|requests\.exceptions\.ConnectionError|httpx\.ConnectError|urllib3\.exceptions\.\w+|aiohttp\.client_exceptions\.ClientConnector\w*Error)$/;

/**
 * What those say when there is no network (a refused connection, a failed name lookup): the
 * system's own words, with their errno, or a library's. Not a word like "refused" alone: a
 * task's own `ConnectionError("... refused ...")` is not the sandbox's doing, and stays
 * retryable.
 */
const NO_NETWORK =
  /\[Errno (?:101|111|-2|-3|-5)\]|All connection attempts failed|Cannot connect to host/;

/**
 * What the sandbox had to do with an exception, where it likely caused it: a limit the task
 * ran into, a file outside what it may see, a connection it may not make. A hint says which
 * `sandbox:` setting changes it.
 */
function sandboxCause(
  payload: RunnerPayload,
  sandbox: SandboxLimits & Partial<Pick<SandboxPolicy, "mode" | "network" | "grants">>,
): { hint: string; limit?: string; noNetwork?: boolean } | undefined {
  const type = payload.type ?? "";
  const message = payload.message ?? "";
  const traceback = payload.traceback ?? "";
  if (type === "MemoryError") {
    return {
      limit: "memory_mb",
      hint: `the task may use ${sandbox.memoryMb} MiB of memory; raise it with sandbox: ` +
        `{memory_mb: N}`,
    };
  }
  if (/\[Errno 27\]/.test(message)) {
    return {
      limit: "file_size_mb",
      hint: `the task may write files of up to ${sandbox.fileSizeMb} MiB; raise it with ` +
        `sandbox: {file_size_mb: N}`,
    };
  }
  if (/\[Errno 24\]/.test(message)) {
    return {
      limit: "open_files",
      hint: `the task may hold ${sandbox.openFiles} open files; raise it with sandbox: ` +
        `{open_files: N}`,
    };
  }
  if (
    (/\[Errno 11\]/.test(message) &&
      /\bfork\b|_fork_exec|start_new_thread|Popen/.test(traceback)) ||
    message === "RuntimeError: can't start new thread"
  ) {
    return {
      limit: "max_processes",
      hint: `the task may run ${sandbox.maxProcesses} processes and threads; raise it with ` +
        `sandbox: {max_processes: N}`,
    };
  }
  const missing = /No such file or directory: '([^']+)'/.exec(message)?.[1];
  // (not a program that is not there: subprocess, os.exec*, os.spawn*)
  const program = /_execute_child|\bos\.exec|\bexecv|\bspawn/.test(traceback);
  if (missing && !program && (!missing.startsWith("/") || sandbox.mode === "bwrap")) {
    return {
      hint: `a task sees only its own work directory (its cwd) and the paths its sandbox ` +
        `declares: if ${missing} is outside, add it to sandbox: {read: [...]}, or to ` +
        `sandbox: {write: [...]} to write there (paths are relative to the workflow file)`,
    };
  }
  const denied = /\[Errno 13\] Permission denied: '([^']+)'/.exec(message)?.[1];
  if (denied && sandbox.mode === "bwrap") {
    // Asked of the kernel, not of mode bits (ACLs, a directory that is search-only): so
    // said once it failed, not guessed before.
    return {
      hint: `in its sandbox the task is an unprivileged user (uid ${SANDBOX_UID} when ` +
        `Gleitzeit runs as root): it reads only what that user may (for ${denied}, e.g. ` +
        "`chmod o+r` on it and `o+x` on its directories), and writes only to its work " +
        "directory and the paths of sandbox: {write: [...]}",
    };
  }
  const readOnly = /\[Errno 30\] Read-only file system: '([^']+)'/.exec(message)?.[1];
  if (readOnly && sandbox.mode === "bwrap" && /^\/tmp(\/|$)/.test(readOnly)) {
    return {
      hint: `/tmp is read-only in the task's sandbox: write to its work directory (its cwd), ` +
        "where TMPDIR points and tempfile writes",
    };
  }
  if (readOnly && sandbox.mode === "bwrap") {
    return {
      hint: `in its sandbox the task writes only to its work directory (its cwd) and the paths ` +
        `of sandbox: {write: [...]}: to write ${readOnly}, add it (or its directory) there ` +
        `(paths are relative to the workflow file)`,
    };
  }
  if (
    sandbox.mode === "bwrap" && sandbox.network === false && (sandbox.grants ?? []).length === 0 &&
    NETWORK_FAILURES.test(type) && NO_NETWORK.test(message)
  ) {
    return {
      noNetwork: true,
      hint: "the task's sandbox has no network (its 127.0.0.1 is its own): grant it with " +
        'sandbox: {network: true}, or only some destinations with sandbox: {network: ["host:port"]}',
    };
  }
  const grants = sandbox.grants ?? [];
  if (
    sandbox.mode === "bwrap" && sandbox.network === false && grants.length > 0 &&
    NETWORK_FAILURES.test(type) && NO_NETWORK.test(message)
  ) {
    // (a granted destination that refuses shows as a reset connection, not as this)
    const list = grants.slice(0, 5).map((g) => `${g.host}:${g.port}`).join(", ");
    return {
      noNetwork: true,
      hint:
        `the task's sandbox reaches only its network grants (${list}${
          grants.length > 5 ? ", ..." : ""
        }): add the destination to sandbox: {network: [...]}, or grant the whole network with ` +
        "sandbox: {network: true}",
    };
  }
  return undefined;
}

/**
 * Reads an output file written by a warm child: the first `limit` bytes and its full size.
 * Synchronous: the files are small or capped, and a warm task is too short for a thread hop.
 * `size` (from the runner) lets an empty stream skip the file entirely.
 */
export function readCapped(
  path: string,
  limit: number,
  dropped = 0,
  size = -1,
): CapturedOutput {
  if (size === 0) return { text: "", bytes: dropped, truncated: dropped > limit };
  let file: Deno.FsFile;
  try {
    if (!plainFile(path)) throw new Error("not a plain file");
    file = Deno.openSync(path);
  } catch {
    return { text: "", bytes: dropped, truncated: dropped > limit };
  }
  try {
    return readCappedFrom(file, limit, dropped);
  } finally {
    file.close();
  }
}

/** {@link readCapped} of a file held open (from its start), whatever size it reports. */
export function readCappedFrom(file: Deno.FsFile, limit: number, dropped = 0): CapturedOutput {
  const actual = file.statSync().size;
  const bytes = actual + dropped;
  const head = actual === 0 ? new Uint8Array() : readHead(file, Math.min(actual, limit));
  return { text: new TextDecoder().decode(head), bytes, truncated: bytes > limit };
}

/** Up to `want` bytes from the start of an open file. */
function readHead(file: Deno.FsFile, want: number): Uint8Array {
  file.seekSync(0, Deno.SeekMode.Start);
  const buf = new Uint8Array(want);
  let at = 0;
  while (at < want) {
    const n = file.readSync(buf.subarray(at));
    if (n === null) break;
    at += n;
  }
  return buf.subarray(0, at);
}

/**
 * Whether `path` is a regular file itself (not a symlink, FIFO or device). A task may own
 * the directory its result and output live in: opening a FIFO there would block Gleitzeit,
 * a link to /dev/zero would never end. Read after the task's processes are gone, so the
 * answer holds.
 */
export function plainFile(path: string): boolean {
  try {
    return Deno.lstatSync(path).isFile;
  } catch {
    return false;
  }
}

/**
 * The largest result a task may return, as JSON: 8 MiB. A task can write its result file
 * itself, up to its file-size limit; parsing hundreds of MiB of JSON (millions of empty
 * objects) would take Gleitzeit's whole heap and stall everything else meanwhile.
 */
export const MAX_RESULT_BYTES = 8 * 1024 * 1024;

/**
 * Reads and parses the result file; undefined when it is missing or not JSON; a result
 * error when it is larger than {@link MAX_RESULT_BYTES}.
 */
export function readPayload(path: string): RunnerPayload | undefined {
  let text: string;
  try {
    const info = Deno.lstatSync(path);
    if (!info.isFile) return undefined; // never through a FIFO or a link a task put there
    if (info.size > MAX_RESULT_BYTES) return tooLarge(info.size);
    text = Deno.readTextFileSync(path);
  } catch {
    return undefined;
  }
  return parsePayload(text);
}

/**
 * {@link readPayload} of a result file held open (one only Gleitzeit and its task's own
 * descriptor reach, so no look at what the path names first).
 */
export function readPayloadFrom(file: Deno.FsFile): RunnerPayload | undefined {
  let text: string;
  try {
    const size = file.statSync().size;
    if (size > MAX_RESULT_BYTES) return tooLarge(size);
    text = new TextDecoder().decode(readHead(file, size));
  } catch {
    return undefined;
  }
  return parsePayload(text);
}

function parsePayload(text: string): RunnerPayload | undefined {
  let payload: RunnerPayload;
  try {
    payload = JSON.parse(text) as RunnerPayload;
  } catch {
    return undefined;
  }
  if (!payload.ok) return payload;
  const twice = duplicateKey(text);
  if (twice !== undefined) {
    return {
      ok: false,
      kind: "result_type",
      type: "dict",
      message:
        `the result has a dict with two keys that are both ${
          JSON.stringify(twice.length > 40 ? `${twice.slice(0, 40)}...` : twice)
        } in JSON (JSON keys are strings: 1 and "1", or True and "true", become one key, and ` +
        "one value would be lost): make its keys distinct, e.g. all str",
      execution_time_ms: payload.execution_time_ms,
    };
  }
  const lost = inexactInteger(text);
  if (lost === undefined) return payload;
  return {
    ok: false,
    kind: "result_type",
    type: "int",
    message: `the result holds an integer a JSON number cannot keep exactly: ${
      lost.length > 40 ? `${lost.slice(0, 40)}... (${lost.replace("-", "").length} digits)` : lost
    } (JSON numbers are doubles: exact up to 2**53): return it as a string, str(n)`,
    execution_time_ms: payload.execution_time_ms,
  };
}

/**
 * The first integer in `text` (JSON) beyond 2**53 either way, as written (Python writes an int
 * whole, such as a 64-bit id; JSON.parse would round it silently, and even one a double holds
 * exactly, such as 2**60, is written out again rounded to 17 digits when the result is passed
 * on or stored), if any. One linear scan (no second parse: a result may be megabytes, or nested
 * thousands deep), which steps over strings and leaves out fractions and exponents.
 */
function inexactInteger(text: string): string | undefined {
  if (!/\d{16}/.test(text)) return undefined; // (2**53 has 16 digits)
  try {
    for (const m of text.matchAll(/"(?:[^"\\]|\\.)*"|(?<![\d.eE+-])(-?\d{16,})(?![\d.eE])/g)) {
      const digits = m[1];
      if (digits === undefined) continue; // a string
      const value = BigInt(digits);
      if (value > EXACT || value < -EXACT) return digits;
    }
  } catch {
    // (not JSON the runner writes: the parse before has judged it)
  }
  return undefined;
}

/** 2**53: JSON numbers are doubles, which hold every integer up to it exactly. */
const EXACT = 2n ** 53n;

/**
 * The first key that appears twice in one object of `text` (JSON the runner wrote), if any.
 * Python writes a dict's keys as strings, so 1 and "1" (or True and "true", None and "null")
 * become one key twice, and JSON.parse would keep the last value silently. Only a key such
 * a conversion writes (a number, true, false, null, NaN, Infinity) can be one of a pair: the
 * object-by-object scan runs only where one is found.
 */
function duplicateKey(text: string): string | undefined {
  if (!/"(?:-?\d[\d.eE+-]*|true|false|null|NaN|-?Infinity)": /.test(text)) return undefined;
  const objects: (Set<string> | undefined)[] = []; // the open objects' keys (undefined: an array)
  let keyNext = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) { // a string: a key where one is due
      let j = i + 1;
      let escaped = false;
      for (let d = text.charCodeAt(j); d !== 0x22; d = text.charCodeAt(j)) {
        if (Number.isNaN(d)) return undefined; // (not JSON: the parse before judged it)
        if (d === 0x5c) {
          escaped = true;
          j++;
        }
        j++;
      }
      const keys = objects[objects.length - 1];
      if (keyNext && keys !== undefined) {
        const key = escaped ? JSON.parse(text.slice(i, j + 1)) as string : text.slice(i + 1, j);
        if (keys.has(key)) return key;
        keys.add(key);
        keyNext = false;
      }
      i = j;
    } else if (c === 0x7b) { // {
      objects.push(new Set());
      keyNext = true;
    } else if (c === 0x5b) { // [
      objects.push(undefined);
      keyNext = false;
    } else if (c === 0x7d || c === 0x5d) { // } ]
      objects.pop();
      keyNext = false;
    } else if (c === 0x2c) { // ,
      keyNext = objects[objects.length - 1] !== undefined;
    }
  }
  return undefined;
}

function tooLarge(size: number): RunnerPayload {
  const mib = (n: number) => `${Math.round((n / 1048576) * 10) / 10} MiB`;
  return {
    ok: false,
    kind: "result_type",
    type: "result",
    message:
      `the result is ${mib(size)} of JSON, more than the ${
        mib(MAX_RESULT_BYTES)
      } a task's result may be: write large data to a file (a declared \`write\` path) ` +
      "and return its path",
    execution_time_ms: 0,
  };
}
