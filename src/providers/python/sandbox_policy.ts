/**
 * What a Python task may do: the provider's defaults, then the workflow's `sandbox:`, then
 * the task's (each may be a mode string or an object). Declared paths are relative to the
 * workflow file's directory.
 *
 * @module
 */

import { dirname, isAbsolute, relative, resolve, sep } from "node:path";
import { DURATION_PATTERN, durationMs } from "../../core/duration.ts";
import { GleitzeitError } from "../../core/errors.ts";
import { inHome } from "../../core/home.ts";
import { isReservedSandboxPath } from "../../core/sandbox_paths.ts";
import { type NetworkGrant, parseGrant } from "./network_grants.ts";

/** `bwrap`: bubblewrap + rlimits as an unprivileged user; `basic`: rlimits only; `none`. */
export type SandboxMode = "bwrap" | "basic" | "none";

/** The modes, strongest first. */
export const SANDBOX_MODES: readonly SandboxMode[] = ["bwrap", "basic", "none"];

/** Whether `mode` is weaker than `least` (a name that is no mode is neither). */
export function weakerSandbox(mode: string, least: string): boolean {
  const rank = (m: string) => SANDBOX_MODES.indexOf(m as SandboxMode);
  return rank(mode) >= 0 && rank(least) >= 0 && rank(mode) > rank(least);
}

/** Resource limits applied to every task process (rlimits). */
export interface SandboxLimits {
  /** Address space in MiB (RLIMIT_AS). */
  memoryMb: number;
  /** CPU seconds (RLIMIT_CPU). */
  cpuSeconds: number;
  /** Processes of the sandbox user (RLIMIT_NPROC). */
  maxProcesses: number;
  /** Largest file the task may write, MiB (RLIMIT_FSIZE). */
  fileSizeMb: number;
  /** Open file descriptors (RLIMIT_NOFILE). */
  openFiles: number;
}

/** The effective sandbox of one task. */
export interface SandboxPolicy extends SandboxLimits {
  mode: SandboxMode;
  /** `false`: no network (but `grants`); `true`: the host's network. */
  network: boolean;
  /** With `network: false`, the only destinations reachable (`network: ["host:port"]`). */
  grants: NetworkGrant[];
  /** Absolute paths readable inside the sandbox (bound read-only at the same path). */
  read: string[];
  /** Absolute paths writable inside the sandbox (bound read-write at the same path). */
  write: string[];
  /** Wall-clock seconds for one attempt, when declared. */
  timeoutSeconds?: number;
}

/** Defaults when nothing else is said. */
export const DEFAULT_LIMITS: SandboxLimits = {
  memoryMb: 1024,
  cpuSeconds: 300,
  maxProcesses: 256,
  fileSizeMb: 256,
  openFiles: 1024,
};

const KEYS = new Set([
  "mode",
  "network",
  "read",
  "write",
  "memory_mb",
  "cpu_seconds",
  "timeout",
  "max_processes",
  "file_size_mb",
  "open_files",
]);

function bad(message: string, where: string): GleitzeitError {
  return new GleitzeitError("TASK_PARAMETER_ERROR", `sandbox (${where}): ${message}`, {
    details: { where },
    hint: "sandbox is `bwrap`, `basic`, `none`, or {mode, network, read, write, memory_mb, " +
      "cpu_seconds, timeout}",
  });
}

function positive(value: unknown, key: string, where: string, or = ""): number {
  if (typeof value !== "number" || !(value > 0)) {
    throw bad(`${key} must be a positive number${or ? ` ${or}` : ""}`, where);
  }
  return value;
}

function paths(value: unknown, key: string, where: string, baseDir: string): string[] {
  if (!Array.isArray(value) || value.some((p) => typeof p !== "string" || p === "")) {
    throw bad(`${key} must be a list of paths`, where);
  }
  return (value as string[]).map((p) => declaredPath(p, baseDir));
}

/**
 * A declared path as the sandbox takes it: `~` and `~/...` in the home directory (HOME), a
 * relative one from the workflow file's directory (`baseDir`).
 */
export function declaredPath(path: string, baseDir: string): string {
  let home: string | undefined;
  try {
    home = Deno.env.get("HOME");
  } catch {
    // not permitted to read it: `~` is taken as a name like any other
  }
  const expanded = inHome(path, home);
  return isAbsolute(expanded) ? resolve(expanded) : resolve(baseDir, expanded);
}

/** Applies one `sandbox:` declaration (string or object) on top of `policy`. */
function apply(policy: SandboxPolicy, decl: unknown, where: string, baseDir: string): void {
  if (decl === undefined || decl === null) return;
  if (typeof decl === "string") {
    if (!SANDBOX_MODES.includes(decl as SandboxMode)) {
      throw bad(`unknown mode ${JSON.stringify(decl)}`, where);
    }
    policy.mode = decl as SandboxMode;
    return;
  }
  if (typeof decl !== "object" || Array.isArray(decl)) {
    throw bad("must be a string or a map", where);
  }
  const d = decl as Record<string, unknown>;
  for (const key of Object.keys(d)) {
    if (!KEYS.has(key)) throw bad(`unknown key ${JSON.stringify(key)}`, where);
  }
  if (d.mode !== undefined) apply(policy, d.mode, where, baseDir);
  if (d.network !== undefined) {
    if (typeof d.network === "boolean") {
      policy.network = d.network;
      policy.grants = [];
    } else if (Array.isArray(d.network)) {
      // A list narrows: only these destinations (added to any granted before).
      policy.grants.push(...d.network.map((entry) => parseGrant(entry, where)));
      policy.network = false;
    } else throw bad("network must be true, false or a list of host:port", where);
  }
  if (d.read !== undefined) policy.read.push(...paths(d.read, "read", where, baseDir));
  if (d.write !== undefined) policy.write.push(...paths(d.write, "write", where, baseDir));
  if (d.memory_mb !== undefined) policy.memoryMb = positive(d.memory_mb, "memory_mb", where);
  if (d.cpu_seconds !== undefined) {
    policy.cpuSeconds = positive(d.cpu_seconds, "cpu_seconds", where);
  }
  if (d.timeout !== undefined) {
    // seconds, or a duration as a task's own timeout takes it ("30s", "5m")
    const seconds = typeof d.timeout === "string" && DURATION_PATTERN.test(d.timeout)
      ? durationMs(d.timeout) / 1000
      : d.timeout;
    policy.timeoutSeconds = positive(seconds, "timeout", where, 'or a duration like "30s"');
  }
  if (d.max_processes !== undefined) {
    policy.maxProcesses = positive(d.max_processes, "max_processes", where);
  }
  if (d.file_size_mb !== undefined) {
    policy.fileSizeMb = positive(d.file_size_mb, "file_size_mb", where);
  }
  if (d.open_files !== undefined) policy.openFiles = positive(d.open_files, "open_files", where);
}

/**
 * The effective policy of one task: `defaults`, then the workflow's declaration, then the
 * task's. Relative paths resolve against `baseDir`.
 */
export function resolveSandboxPolicy(
  defaults: { mode: SandboxMode; limits: SandboxLimits },
  declared: { workflow?: unknown; task?: unknown } | undefined,
  baseDir: string,
): SandboxPolicy {
  const policy: SandboxPolicy = {
    mode: defaults.mode,
    network: false,
    grants: [],
    read: [],
    write: [],
    ...defaults.limits,
  };
  apply(policy, declared?.workflow, "workflow", baseDir);
  apply(policy, declared?.task, "task", baseDir);
  return policy;
}

/**
 * The declared paths inside the workflow's directory, by their names relative to it: each is
 * linked under that name in the task's work directory (its cwd), so that `open("data/x.csv")`
 * finds a declared `data/` as it would beside the workflow file. Outermost first; a path below
 * another one of the list is reached through that one's link. Paths outside `baseDir` (and
 * `baseDir` itself) keep only their absolute names.
 */
export function workDirLinks(policy: SandboxPolicy, baseDir: string): [string, string][] {
  const base = resolve(baseDir);
  const inside = [...new Set([...policy.read, ...policy.write])]
    .map((path) => [relative(base, path), path] as [string, string])
    .filter(([name]) =>
      name !== "" && name !== ".." && !name.startsWith(".." + sep) &&
      !isAbsolute(name)
    )
    .sort((a, b) => a[0].length - b[0].length);
  const links: [string, string][] = [];
  for (const [name, path] of inside) {
    if (links.some(([outer]) => name.startsWith(outer + sep))) continue;
    links.push([name, path]);
  }
  return links;
}

/** True when the policy grants nothing beyond the default sandbox (a warm worker fits it). */
export function isPlainPolicy(policy: SandboxPolicy): boolean {
  return !policy.network && policy.grants.length === 0 && policy.read.length === 0 &&
    policy.write.length === 0;
}

/** The rlimits the runner applies, in its units (bytes, seconds, counts). */
export function rlimitsOf(limits: SandboxLimits): Record<string, number> {
  const mib = 1024 * 1024;
  return {
    cpu: Math.ceil(limits.cpuSeconds),
    as: Math.floor(limits.memoryMb * mib),
    nproc: Math.floor(limits.maxProcesses),
    fsize: Math.floor(limits.fileSizeMb * mib),
    nofile: Math.floor(limits.openFiles),
    core: 0,
  };
}

/** A declared path and the file it named when checked: [path, device, inode]. */
export type PathIdentity = [string, number, number];

/**
 * Checks the declared `read`/`write` paths before a sandbox is built on them: each must exist,
 * and with `uid` (the sandbox user, when the orchestrator is root) each `write` path must be
 * writable by that user. Without `uid` (tasks run as the orchestrator's own user), no path may
 * cover one of `privateDirs`, where Gleitzeit keeps other tasks' files (as root, permissions
 * keep tasks out of them), and no `write` path may cover or lie in one of `interpreterDirs` (the
 * interpreter's prefixes and module path: what later tasks run). Fails with the path and what
 * to do. Returns what each path named:
 * the runner checks that bwrap mounted the same (a link swapped in between would otherwise
 * give the task another directory).
 */
export function checkDeclaredPaths(
  policy: SandboxPolicy,
  uid?: number,
  privateDirs: string[] = [],
  interpreterDirs: string[] = [],
): PathIdentity[] {
  const identities: PathIdentity[] = [];
  if (policy.read.length === 0 && policy.write.length === 0) return identities; // most tasks
  // Without a sandbox user of its own: the private directories and their ancestors, by
  // identity ("dev:ino" -> the private directory).
  const guarded = new Map<string, string>();
  // [as given, resolved], resolved once
  const privates = uid === undefined ? privateDirs.map((dir) => [dir, realPath(dir)]) : [];
  for (const [dir, resolved] of privates) {
    for (let p = resolved;; p = dirname(p)) {
      try {
        const st = Deno.statSync(p);
        guarded.set(`${st.dev}:${st.ino}`, dir);
      } catch {
        // not there: nothing to cover
      }
      if (p === "/" || p === ".") break;
    }
  }
  const fail = (message: string, hint: string) =>
    new GleitzeitError("TASK_PARAMETER_ERROR", `sandbox: ${message}`, { hint });
  for (const [key, list] of [["read", policy.read], ["write", policy.write]] as const) {
    for (const path of list) {
      if (isReservedSandboxPath(path)) {
        throw fail(
          `the ${key} path ${path} would cover the sandbox's own root, /gleitzeit, /proc, ` +
            "/dev or /sys (the host's processes and devices; the sandbox has its own)",
          `declare the directories the task needs, e.g. \`${key}: [data/]\``,
        );
      }
      // One resolution: the checks below and what bwrap must mount (the runner compares
      // the identity) are of the same file, whatever links are swapped meanwhile.
      let info: Deno.FileInfo;
      try {
        info = Deno.statSync(path);
      } catch {
        throw fail(
          `the ${key} path ${path} does not exist`,
          `create it, or fix \`sandbox.${key}\` (relative paths start at the workflow file's directory)`,
        );
      }
      // What the path resolves to must not be reserved either (a link to /proc, /run/shm),
      // and must still be the file that was checked (no link swapped in between).
      const real = realPath(path);
      if (isReservedSandboxPath(real) || !sameFile(real, info)) {
        throw fail(
          `the ${key} path ${path} leads to ${real}: the sandbox's own root, /gleitzeit, /proc, ` +
            "/dev or /sys, or it changed while it was checked",
          `declare the directories the task needs, e.g. \`${key}: [data/]\``,
        );
      }
      const covered = guarded.get(`${info.dev}:${info.ino}`) ??
        privates.find(([, resolved]) => ownDirIn(real, resolved))?.[0];
      if (covered !== undefined) {
        throw fail(
          `the ${key} path ${path} would give the task other tasks' files in ${covered} (all ` +
            "of it, or Gleitzeit's own directories there: tasks run as Gleitzeit's own user " +
            "when it is not root)",
          `declare a directory below it, e.g. \`${key}: [${covered}/mydata]\`, or start ` +
            `Gleitzeit with TMPDIR set to a directory no task declares`,
        );
      }
      const runs = key === "write" && uid === undefined
        ? interpreterDirs.map(realPath).find((dir) =>
          dir === real || dir.startsWith(`${real}/`) || real.startsWith(`${dir}/`)
        )
        : undefined;
      if (runs !== undefined) {
        throw fail(
          `the write path ${path} would let the task change the Python that later tasks run ` +
            `(${runs}: tasks run as Gleitzeit's own user when it is not root)`,
          "declare a directory outside the interpreter's tree, e.g. `write: [out/]` (tasks " +
            "read the interpreter all the same)",
        );
      }
      if (key === "write" && uid !== undefined && !writableBy(info, uid)) {
        throw fail(
          `the write path ${path} is not writable by the sandbox user (uid ${uid})`,
          `let that user write there, e.g. \`chown ${uid} ${path}\` or \`chmod o+w ${path}\``,
        );
      }
      identities.push([path, info.dev, info.ino ?? 0]);
    }
  }
  return identities;
}

/** `real` is one of Gleitzeit's own directories in `dir`, or inside one (both resolved). */
function ownDirIn(real: string, dir: string): boolean {
  const base = `${dir}/`;
  return real.startsWith(base) && OWN_DIR.test(real.slice(base.length));
}

/** `path` (not followed if a link) is the file `info` describes. */
function sameFile(path: string, info: Deno.FileInfo): boolean {
  try {
    const again = Deno.lstatSync(path);
    return again.dev === info.dev && again.ino === info.ino;
  } catch {
    return false;
  }
}

/** The names of Gleitzeit's own temp directories (see python_provider.ts and warm_pool.ts). */
const OWN_DIR = /^gleitzeit-(py|pool|io|init|probe)-\d+-/;

function realPath(path: string): string {
  try {
    return Deno.realPathSync(path);
  } catch {
    return path;
  }
}

function writableBy(info: Deno.FileInfo, uid: number): boolean {
  const mode = info.mode ?? 0;
  if (info.uid === uid) return (mode & 0o200) !== 0;
  if (info.gid === uid) return (mode & 0o020) !== 0;
  return (mode & 0o002) !== 0;
}
