/**
 * What every Python attempt needs around its process, cold or warm: the guard that turns an
 * abort, the task's own timeout or the provider's close into a kill and a rejection, and
 * small process and directory helpers.
 *
 * @module
 */

import { setLongTimeout } from "../../core/clock.ts";
import { GleitzeitError } from "../../core/errors.ts";
import type { PythonInterpreter } from "./python_interpreter.ts";

/** How one attempt is guarded: abort, own timeout, provider close. */
export interface AttemptGuard {
  /** Rejects with the reason once the attempt is stopped; never resolves. */
  stopped: Promise<never>;
  readonly killed: boolean;
  dispose(): void;
}

/** A task's own timeout, and the setting it comes from (named when it fires). */
export interface AttemptTimeout {
  seconds: number;
  /** Where to raise it, e.g. "the sandbox's timeout (sandbox: {timeout: N})". */
  setting: string;
}

/**
 * Calls `kill` once, on the first of: `signal` aborts (rejecting with its reason, a
 * GleitzeitError as the engine sends it, or TASK_CANCELLED), `timeout` passes
 * (TASK_TIMEOUT), or the provider closes (a function added to `closers`). A timeout, the
 * task's own or the engine's, gets what the task had printed by then (`output`: the tails
 * of its stdout and stderr), the likeliest clue to where it was.
 */
export function guardAttempt(
  signal: AbortSignal,
  timeout: AttemptTimeout | undefined,
  kill: () => void,
  closers: Set<() => void>,
  output?: () => { output: string; stderr: string },
): AttemptGuard {
  const { promise: stopped, reject: stop } = Promise.withResolvers<never>();
  stopped.catch(() => {});
  let killed = false;
  const fire = (reason: unknown) => {
    if (killed) return;
    killed = true;
    if (output && reason instanceof GleitzeitError && reason.code === "TASK_TIMEOUT") {
      try {
        // before the kill: synchronously, so the engine records its error with it too
        const printed = output();
        for (const [key, text] of Object.entries(printed)) {
          if (text && reason.details[key] === undefined) reason.details[key] = text;
        }
      } catch {
        // nothing to add
      }
    }
    kill();
    stop(reason);
  };
  const onAbort = () => fire(abortReason(signal));
  signal.addEventListener("abort", onAbort, { once: true });
  const onClose = () =>
    fire(new GleitzeitError("TASK_CANCELLED", "the Python provider was closed"));
  closers.add(onClose);
  let cancelTimer: (() => void) | undefined;
  if (timeout !== undefined) {
    cancelTimer = setLongTimeout(() =>
      fire(
        new GleitzeitError(
          "TASK_TIMEOUT",
          `Python task exceeded its timeout of ${timeout.seconds}s`,
          {
            details: { timeout_seconds: timeout.seconds, limit: "timeout" },
            hint: `set by ${timeout.setting}: raise it there`,
          },
        ),
      ), timeout.seconds * 1000);
  }
  if (signal.aborted) onAbort();
  return {
    stopped,
    get killed() {
      return killed;
    },
    dispose: () => {
      cancelTimer?.();
      signal.removeEventListener("abort", onAbort);
      closers.delete(onClose);
    },
  };
}

/** The abort reason as a GleitzeitError (the engine's own, or TASK_CANCELLED). */
export function abortReason(signal: AbortSignal): GleitzeitError {
  const reason = signal.reason;
  if (reason instanceof GleitzeitError) return reason;
  return new GleitzeitError("TASK_CANCELLED", "the Python task was cancelled", {
    cause: reason,
  });
}

/** Throws the abort reason when `signal` has already aborted. */
export function throwIfAborted(signal: AbortSignal): void {
  if (signal.aborted) throw abortReason(signal);
}

/** The whole environment of a task process: nothing of the orchestrator's leaks in. */
export function childEnv(py: PythonInterpreter, home: string): Record<string, string> {
  const bin = py.executable.slice(0, py.executable.lastIndexOf("/"));
  return {
    PATH: `${bin}:/usr/local/bin:/usr/bin:/bin`,
    LANG: "C.UTF-8",
    HOME: home,
    TMPDIR: home,
  };
}

/** Writes `data` and closes the stream, ignoring a child that died before reading. */
export function writeAll(stream: WritableStream<Uint8Array>, data: Uint8Array): void {
  const writer = stream.getWriter();
  writer.write(data)
    .then(() => writer.close())
    .catch(() => {
      // The child died before reading its job; its exit status tells the story.
    });
}

/** Removes a directory tree, ignoring one that is already gone. */
export async function removeDir(path: string): Promise<void> {
  try {
    await Deno.remove(path, { recursive: true });
  } catch {
    // Already gone.
  }
}
