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
 * task than the shell on a host with slow page copies (~1 ms on a faster one). It stays the
 * way where the copy cannot serve: a temp dir mounted `noexec`, or one whose file system does
 * not keep the copy from being read. Both are found out when the copy is made, by trying it
 * (outside any sandbox: what its task could write, its exit status and stderr, decides
 * nothing). Declared paths never reach the copy's directory (see sandbox_policy.ts); one that
 * is gone or changed all the same (a temp dir cleaner) is made again before the next task.
 */

import { dirname } from "node:path";

/** Where the sandbox sees the init (`sh`: busybox tells its applets by this name). */
export const SANDBOX_INIT = "/gleitzeit/sh";

/**
 * The shell's script: the runner (its arguments) in a subshell, which executes it in place,
 * then its status as the init's. The shell's own stderr goes nowhere: it would add
 * "Terminated" to a task's stderr when a signal ends the runner. The runner's is the
 * sandbox's, and so are the subshell's words on starting it ("not found"). The shell ignores
 * SIGINT (dash and busybox catch it with `-c`, and would then end as if the runner had died
 * of it: a task could change how its end is told), the runner gets it back as it was.
 */
const INIT_SCRIPT = "trap '' INT; exec 3>&2 2>/dev/null; (trap - INT; \"$@\" 2>&3 3>&-); exit $?";

/** An execute-only copy of the system shell, in a directory of its own. */
export interface SandboxInit {
  /** The copy (mode 0100) to bind at SANDBOX_INIT. */
  path: string;
  /** What it was when made: a copy changed or replaced since is made again. */
  made: Deno.FileInfo;
}

/** The shell bwrap runs as PID 1 (SANDBOX_INIT: bind the copy there), running `runner`. */
export function initCommand(runner: string[]): string[] {
  return [SANDBOX_INIT, "-c", INIT_SCRIPT, "sh", ...runner];
}

/**
 * Copies `/bin/sh` into a new directory `gleitzeit-init-<pid>-*` under `tempDir` (0700, so
 * nobody else can swap it), mode 0100, and tries it. Undefined where it cannot serve: no
 * /bin/sh, a copy that can be read all the same, or one that does not run its script there.
 */
export function makeSandboxInit(tempDir: string | undefined): SandboxInit | undefined {
  let dir: string | undefined;
  try {
    const shell = Deno.realPathSync("/bin/sh");
    dir = Deno.makeTempDirSync({ dir: tempDir, prefix: `gleitzeit-init-${Deno.pid}-` });
    const path = `${dir}/sh`;
    Deno.copyFileSync(shell, path);
    Deno.chmodSync(path, 0o100);
    if (readable(path)) throw new Error("the file system lets the copy be read");
    // the script, a runner's exit status through it (here the shell's own `exit 7`)
    const tried = new Deno.Command(path, {
      args: ["-c", INIT_SCRIPT, "sh", path, "-c", "exit 7"],
      clearEnv: true,
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).outputSync();
    if (tried.code !== 7) throw new Error(`the copy's script ended with ${tried.code}`);
    return { path, made: Deno.lstatSync(path) };
  } catch {
    // (a noexec temp dir: EACCES at its start)
    if (dir) removeSandboxInit(`${dir}/sh`);
    return undefined;
  }
}

/** Whether the copy is still the file made (not removed, replaced, written or opened up). */
export function sandboxInitIntact(init: SandboxInit): boolean {
  try {
    const now = Deno.lstatSync(init.path);
    const then = init.made;
    return now.isFile && now.dev === then.dev && now.ino === then.ino &&
      now.size === then.size && now.mode === then.mode &&
      now.mtime?.getTime() === then.mtime?.getTime() &&
      now.ctime?.getTime() === then.ctime?.getTime();
  } catch {
    return false;
  }
}

/** Removes the copy at `path` and its directory. */
export function removeSandboxInit(path: string): void {
  try {
    Deno.removeSync(dirname(path), { recursive: true });
  } catch {
    // already gone; a directory left by a killed process is swept by the next one
  }
}

function readable(path: string): boolean {
  try {
    Deno.openSync(path, { read: true }).close();
    return true;
  } catch {
    return false;
  }
}
