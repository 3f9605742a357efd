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
 * @module
 */

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

/**
 * Sends SIGKILL to `root`, its process group (when `root` leads one) and every descendant
 * found by walking `/proc`. Returns the pids it signalled. Synchronous and quick (a few
 * milliseconds for a few hundred processes), so an abort can reject right after it.
 */
export function killProcessTree(root: number, options: { group?: boolean } = {}): number[] {
  const group = options.group ?? true;
  if (group) trySignal(-root, "SIGSTOP");
  const found = new Set<number>([root]);
  trySignal(root, "SIGSTOP");
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
  if (group) trySignal(-root, "SIGKILL");
  for (const pid of found) trySignal(pid, "SIGKILL");
  return [...found];
}

/** Sends SIGKILL to a process group, ignoring a group that no longer exists. */
export function killGroup(pgid: number): void {
  trySignal(-pgid, "SIGKILL");
}
