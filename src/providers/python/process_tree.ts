/**
 * Killing a task's whole process tree. The Python runner makes itself a session (and so
 * process-group) leader and a child subreaper; a descendant that calls `setsid` leaves the
 * group but, while the runner lives, stays in its tree (orphans are re-parented to the
 * subreaper), so walking `/proc` by parent pid finds it.
 *
 * The kill first freezes (SIGSTOP) everything it finds, rescanning until no new process
 * appears, so a process cannot fork faster than it is found; then it sends SIGKILL to the
 * group and to every process found. Linux only; elsewhere the group kill is all there is.
 *
 * Deno refuses to read `/proc` without `--allow-all`, and the CLI runs with scoped
 * permissions; there the same walk runs in a short-lived Python helper
 * ({@link KILLER_SOURCE}) while the tree is already frozen.
 *
 * @module
 */

/** Python that freezes and kills the tree of argv[1] (and its group when argv[2] is "1"). */
export const KILLER_SOURCE = String.raw`
import os, sys
root, group = int(sys.argv[1]), sys.argv[2] == "1"
def sig(pid, s):
    try:
        os.kill(pid, s)
    except OSError:
        pass
def tree():
    kids = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/" + name + "/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            rest = stat[stat.rfind(b")") + 2:].split()
            kids.setdefault(int(rest[1]), []).append(int(name))
    out, todo = [], [root]
    while todo:
        for k in kids.get(todo.pop(), ()):
            out.append(k)
            todo.append(k)
    return out
if group:
    sig(-root, 19)
sig(root, 19)
found = {root}
for _ in range(64):
    fresh = [p for p in tree() if p not in found]
    if not fresh:
        break
    for p in fresh:
        found.add(p)
        sig(p, 19)
if group:
    sig(-root, 9)
for p in found:
    sig(p, 9)
`;

let procReadable: boolean | undefined;

/** Whether this process may read `/proc` (Deno needs --allow-all for it). */
export function canReadProc(): boolean {
  if (procReadable === undefined) {
    try {
      Deno.readTextFileSync("/proc/self/stat");
      procReadable = true;
    } catch {
      procReadable = false;
    }
  }
  return procReadable;
}

/** A parent-pid map of every process visible in `/proc`. */
export function readParentMap(): Map<number, number[]> {
  const children = new Map<number, number[]>();
  let entries: Iterable<Deno.DirEntry>;
  try {
    entries = Deno.readDirSync("/proc");
  } catch {
    return children;
  }
  for (const entry of entries) {
    const pid = Number(entry.name);
    if (!Number.isInteger(pid) || pid <= 0) continue;
    const ppid = parentOf(pid);
    if (ppid === undefined) continue;
    const list = children.get(ppid);
    if (list) list.push(pid);
    else children.set(ppid, [pid]);
  }
  return children;
}

/** Parent pid of `pid` from `/proc/<pid>/stat`, or undefined when it is gone. */
export function parentOf(pid: number): number | undefined {
  const stat = readStat(pid);
  return stat?.ppid;
}

/** State letter and parent of a process; undefined when it does not exist. */
export function readStat(pid: number): { state: string; ppid: number; pgrp: number } | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch {
    return undefined;
  }
  // The command name may contain spaces and parentheses: fields start after the last ")".
  const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return { state: rest[0] ?? "?", ppid: Number(rest[1]), pgrp: Number(rest[2]) };
}

/** True when `pid` exists and is not a zombie (a zombie has finished; it only awaits reaping). */
export function isAlive(pid: number): boolean {
  const stat = readStat(pid);
  return stat !== undefined && stat.state !== "Z" && stat.state !== "X";
}

/** Every descendant of `root` (not `root` itself), breadth first. */
export function descendantsOf(root: number, map = readParentMap()): number[] {
  const out: number[] = [];
  const todo = [root];
  while (todo.length > 0) {
    const pid = todo.pop()!;
    for (const kid of map.get(pid) ?? []) {
      out.push(kid);
      todo.push(kid);
    }
  }
  return out;
}

function trySignal(pid: number, signal: Deno.Signal): void {
  try {
    Deno.kill(pid, signal);
  } catch {
    // Already gone, or not ours: nothing to do.
  }
}

/** Options of {@link killProcessTree}. */
export interface KillTreeOptions {
  /** Also signal the process group led by `root` (default true). */
  group?: boolean;
  /** A Python interpreter for the helper, used when Deno may not read `/proc`. */
  python?: string;
}

/**
 * Sends SIGKILL to `root`, its process group (when `root` leads one) and every descendant
 * found by walking `/proc`. The tree is frozen synchronously, so a caller can reject right
 * away; the returned promise settles once everything was signalled (at once when Deno may
 * read `/proc`, else after the Python helper ran, ~10 ms).
 */
export function killProcessTree(root: number, options: KillTreeOptions = {}): Promise<void> {
  const group = options.group ?? true;
  if (group) trySignal(-root, "SIGSTOP");
  trySignal(root, "SIGSTOP");
  const finish = () => {
    if (group) trySignal(-root, "SIGKILL");
    trySignal(root, "SIGKILL");
  };
  if (!canReadProc()) {
    if (!options.python) {
      finish();
      return Promise.resolve();
    }
    const helper = new Deno.Command(options.python, {
      args: ["-I", "-S", "-c", KILLER_SOURCE, String(root), group ? "1" : "0"],
      clearEnv: true,
      stdin: "null",
      stdout: "null",
      stderr: "null",
    });
    return helper.output().then(() => {}, () => {}).finally(finish);
  }
  const found = new Set<number>([root]);
  // Freeze what we find, then look again: a stopped process cannot fork.
  for (let round = 0; round < 64; round++) {
    let fresh = 0;
    for (const pid of descendantsOf(root)) {
      if (found.has(pid)) continue;
      found.add(pid);
      fresh++;
      trySignal(pid, "SIGSTOP");
    }
    if (fresh === 0) break;
  }
  finish();
  for (const pid of found) trySignal(pid, "SIGKILL");
  return Promise.resolve();
}

/** Sends SIGKILL to a process group, ignoring a group that no longer exists. */
export function killGroup(pgid: number): void {
  trySignal(-pgid, "SIGKILL");
}
