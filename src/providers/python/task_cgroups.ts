/**
 * Per-task process limits through the pids cgroup controller. `max_processes` as an rlimit
 * (RLIMIT_NPROC) counts every process of the sandbox user, so concurrent tasks would share
 * one budget: a fork bomb in one task could make forks fail in another. Where Gleitzeit runs
 * as root and a pids controller is mounted (cgroup v1 `pids`, or cgroup v2 with `pids`
 * enabled), each task gets a cgroup of its own with `pids.max`, and the rlimit is not set.
 * Elsewhere the rlimit stays (shared per user), which the README states.
 *
 * Layout: `<pids root>/gleitzeit-<pid>/` per Gleitzeit process; below it `py-<n>` per cold
 * task and `pool-<n>` per warm parent, under which the parent makes `t<n>` per task. The
 * sandboxed runner moves itself into its cgroup (root, before it drops to the sandbox user)
 * through a `cgroup.procs` file bound into the sandbox.
 *
 * @module
 */

/** Where a warm parent sees its pool's cgroup directory (bound there by bwrap). */
export const SANDBOX_POOL_CGROUP = "/run/gleitzeit-cgroup";

let detected: PidsCgroups | null | undefined;

/**
 * The pids cgroups of this process, or undefined where they cannot be used. Only for an
 * orchestrator that runs as root (the caller knows: the interpreter probe reports the uid).
 */
export function pidsCgroups(): PidsCgroups | undefined {
  if (detected === undefined) detected = PidsCgroups.open() ?? null;
  return detected ?? undefined;
}

/** Removes this process's cgroup directory when nothing is left in it (if ever made). */
export function closePidsCgroups(): void {
  detected?.close();
}

/** One Gleitzeit process's directory in the pids hierarchy. */
export class PidsCgroups {
  readonly base: string;
  readonly v2: boolean;
  #serial = 0;

  private constructor(base: string, v2: boolean) {
    this.base = base;
    this.v2 = v2;
  }

  /** Finds a writable pids hierarchy (root only) and makes this process's directory. */
  static open(): PidsCgroups | undefined {
    const found = findPidsHierarchy();
    if (!found) return undefined;
    sweepDead(found.root);
    const base = `${found.root}/gleitzeit-${Deno.pid}`;
    try {
      Deno.mkdirSync(base, { recursive: true });
      if (found.v2) Deno.writeTextFileSync(`${base}/cgroup.subtree_control`, "+pids");
      // A trial child: pids.max must be there and writable.
      const probe = `${base}/probe`;
      Deno.mkdirSync(probe);
      try {
        Deno.writeTextFileSync(`${probe}/pids.max`, "1");
      } finally {
        Deno.removeSync(probe);
      }
    } catch {
      try {
        Deno.removeSync(base);
      } catch {
        // not made, or not empty
      }
      return undefined;
    }
    return new PidsCgroups(base, found.v2);
  }

  /**
   * A new cgroup below this process's directory with `pids.max` set (`"max"`: no limit of
   * its own; `parent`: one whose children the caller limits, e.g. a warm parent's tasks).
   */
  create(prefix: string, max: number | "max", parent = false): string {
    const dir = `${this.base}/${prefix}-${++this.#serial}`;
    try {
      Deno.mkdirSync(dir);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
      // this process's directory went with close(): make it again
      Deno.mkdirSync(this.base);
      if (this.v2) Deno.writeTextFileSync(`${this.base}/cgroup.subtree_control`, "+pids");
      Deno.mkdirSync(dir);
    }
    try {
      Deno.writeTextFileSync(`${dir}/pids.max`, String(max));
      if (parent && this.v2) Deno.writeTextFileSync(`${dir}/cgroup.subtree_control`, "+pids");
    } catch (e) {
      removeCgroupSync(dir);
      throw e;
    }
    return dir;
  }

  /**
   * Removes a cgroup and the ones below it once their processes are gone (a killed process
   * leaves its cgroup a moment after its kill): retries for up to `waitMs`.
   */
  async remove(dir: string, waitMs = 5_000): Promise<boolean> {
    const until = Date.now() + waitMs;
    while (true) {
      if (removeCgroupSync(dir)) return true;
      if (Date.now() > until) return false;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  /** Removes this process's directory if no cgroup is left below it. */
  close(): void {
    try {
      Deno.removeSync(this.base);
    } catch {
      // cgroups of other providers of this process, or gone already
    }
  }
}

/** rmdir of a cgroup and its child cgroups, deepest first; true when it is gone. */
function removeCgroupSync(dir: string): boolean {
  try {
    for (const entry of Deno.readDirSync(dir)) {
      if (entry.isDirectory) removeCgroupSync(`${dir}/${entry.name}`);
    }
    Deno.removeSync(dir);
    return true;
  } catch (e) {
    return e instanceof Deno.errors.NotFound;
  }
}

/** The pids controller's mount: a v1 `pids` hierarchy, or v2 with `pids` available. */
function findPidsHierarchy(): { root: string; v2: boolean } | undefined {
  let mountinfo: string;
  try {
    mountinfo = Deno.readTextFileSync("/proc/self/mountinfo");
  } catch {
    return undefined;
  }
  let v2: string | undefined;
  for (const line of mountinfo.split("\n")) {
    const [left, right] = line.split(" - ");
    if (!left || !right) continue;
    const mountPoint = left.split(" ")[4];
    const [fsType, , superOptions = ""] = right.split(" ");
    if (fsType === "cgroup" && superOptions.split(",").includes("pids")) {
      return { root: mountPoint, v2: false };
    }
    if (fsType === "cgroup2" && v2 === undefined) v2 = mountPoint;
  }
  if (v2 === undefined) return undefined;
  try {
    const controllers = Deno.readTextFileSync(`${v2}/cgroup.controllers`).split(/\s+/);
    if (!controllers.includes("pids")) return undefined;
    // Enabled for the root's children (systemd does): not switched on here for the system.
    const enabled = Deno.readTextFileSync(`${v2}/cgroup.subtree_control`).split(/\s+/);
    if (!enabled.includes("pids")) return undefined;
  } catch {
    return undefined;
  }
  return { root: v2, v2: true };
}

/** Directories of Gleitzeit processes that are gone (killed before they could clean up). */
function sweepDead(root: string): void {
  try {
    for (const entry of Deno.readDirSync(root)) {
      const m = /^gleitzeit-(\d+)$/.exec(entry.name);
      if (!m || !entry.isDirectory || Number(m[1]) === Deno.pid) continue;
      try {
        Deno.statSync(`/proc/${m[1]}`);
        continue; // alive
      } catch {
        removeCgroupSync(`${root}/${entry.name}`);
      }
    }
  } catch {
    // nothing to sweep
  }
}
