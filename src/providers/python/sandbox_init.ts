/**
 * The init of a cold task's sandbox when Gleitzeit is not root.
 *
 * Without root, everything in the sandbox runs as the calling user (bubblewrap maps it into a
 * user namespace). bwrap's own reaper, PID 1 there, would be that user's and dumpable: the task
 * could trace it, stop it (which holds its run) or make it allocate beyond the task's limits.
 * So bwrap runs with `--as-pid-1` and the init is ours: the system shell (`/bin/sh`, a copy of
 * it that nobody may read, mode 0100). The kernel makes a process that executes a file its
 * user cannot read non-dumpable (no tracing it, no opening its memory, for a process without
 * capabilities, which the task is), from its first instruction on. The shell runs the runner
 * as its child (whose signals then work as in any process, which an init's do not), reaps what
 * reaches it and ends with it: 128 + N for a death by signal N, as bwrap says it. Its end ends
 * all that is left in the sandbox.
 *
 * A shell costs an exec of a small program and a fork of it. The other way, a Python init that
 * forks the task and makes itself non-dumpable (`RUNNER_BOOTSTRAP_INIT`), costs a fork of an
 * interpreter and the copies of its pages the task then writes: measured 15 ms more per cold
 * task than the shell on a host with slow page copies (~0.3 ms against ~1-2 ms elsewhere). It
 * stays the fallback where the copy cannot be made or run (a temp dir mounted `noexec`).
 */

import { dirname } from "node:path";

/** Where the sandbox sees the init (`sh`: busybox tells its applets by this name). */
export const SANDBOX_INIT = "/gleitzeit/sh";

/**
 * The shell's script: the runner (its arguments) in a subshell, which executes it in place,
 * then its status as the init's. The shell's own stderr goes nowhere: it would add
 * "Terminated" to a task's stderr when a signal ends the runner. The runner's is the
 * sandbox's, and so are the subshell's words on starting it ("not found").
 */
const INIT_SCRIPT = 'exec 3>&2 2>/dev/null; ("$@" 2>&3 3>&-); exit $?';

/** An execute-only copy of the system shell, in a directory of its own. */
export interface SandboxInit {
  /** The copy (mode 0100) to bind at SANDBOX_INIT. */
  path: string;
}

/** The shell bwrap runs as PID 1 (SANDBOX_INIT: bind the copy there), running `runner`. */
export function initCommand(runner: string[]): string[] {
  return [SANDBOX_INIT, "-c", INIT_SCRIPT, "sh", ...runner];
}

/**
 * Copies `/bin/sh` into a new directory `gleitzeit-init-<pid>-*` under `tempDir` (0700, so
 * nobody else can swap it), mode 0100. Undefined where that cannot be done (no /bin/sh).
 */
export function makeSandboxInit(tempDir: string | undefined): SandboxInit | undefined {
  let dir: string | undefined;
  try {
    const shell = Deno.realPathSync("/bin/sh");
    dir = Deno.makeTempDirSync({ dir: tempDir, prefix: `gleitzeit-init-${Deno.pid}-` });
    const path = `${dir}/sh`;
    Deno.copyFileSync(shell, path);
    Deno.chmodSync(path, 0o100);
    return { path };
  } catch {
    if (dir) removeSandboxInit({ path: `${dir}/sh` });
    return undefined;
  }
}

/** Removes the copy and its directory. */
export function removeSandboxInit(init: SandboxInit): void {
  try {
    Deno.removeSync(dirname(init.path), { recursive: true });
  } catch {
    // already gone; a directory left by a killed process is swept by the next one
  }
}

/**
 * Whether bwrap could not start the init (exit 1, `bwrap: execvp /gleitzeit/sh: ...`): a
 * temp dir mounted `noexec`, say. Nothing of the task ran.
 */
export function initExecFailed(status: Deno.CommandStatus, stderr: string): boolean {
  return status.code === 1 && stderr.startsWith(`bwrap: execvp ${SANDBOX_INIT}:`);
}
