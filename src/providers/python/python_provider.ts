/**
 * Built-in `python/v1`: every task runs in a fresh Python process, by default inside a
 * bubblewrap sandbox as an unprivileged user with resource limits. A task either starts its
 * own interpreter (cold: `python3 -I -c RUNNER once`) or is handed to a warm parent that
 * forks a fresh child for it (warm pool). Results come back through a file in the task
 * directory, never through stdout, so nothing the task prints can corrupt them.
 *
 * @module
 */

import { basename, dirname, isAbsolute } from "node:path";
import { timeoutParamSeconds } from "../../core/duration.ts";
import { GleitzeitError } from "../../core/errors.ts";
import type { CallContext, HealthReport, Provider } from "../provider.ts";
import {
  BWRAP_INSTALL_HINT,
  bwrapArgs,
  findBwrap,
  probeBwrap,
  SANDBOX_UID,
  SHM_TMPFS_BYTES,
} from "./bubblewrap.ts";
import { BoundedCapture, type CapturedOutput } from "./output_capture.ts";
import { type GrantPlan, GrantProxy, MAX_GRANT_CONNECTIONS, planGrants } from "./network_grants.ts";
import { killGroup, killProcessTree } from "./process_tree.ts";
import {
  exitFromStatus,
  exitFromWaitStatus,
  outputTail,
  type PythonResult,
  readCapped,
  readCappedFrom,
  readPayload,
  readPayloadFrom,
  type RunnerPayload,
  toResult,
} from "./python_outcome.ts";
import { type PythonInterpreter, resolvePython } from "./python_interpreter.ts";
import { POOL_BOOTSTRAP, RUNNER_BOOTSTRAP } from "./runner_source.ts";
import { sandboxFilter } from "./seccomp.ts";
import { closePidsCgroups, pidsCgroups, SANDBOX_POOL_CGROUP } from "./task_cgroups.ts";
import { bootstrapInput, codePrefix, runnerBytecode } from "./runner_bytecode.ts";
import {
  checkDeclaredPaths,
  declaredPath,
  DEFAULT_LIMITS,
  isPlainPolicy,
  type PathIdentity,
  resolveSandboxPolicy,
  rlimitsOf,
  type SandboxLimits,
  type SandboxMode,
  type SandboxPolicy,
  weakerSandbox,
  workDirLinks,
} from "./sandbox_policy.ts";
import {
  ioBinds,
  makeIoDir,
  NotRun,
  type PagesAhead,
  type TaskPaths,
  WarmPool,
  type WarmSpawn,
  type WarmWorker,
  WORK_TMPFS_BYTES,
  WORK_TMPFS_INODES,
} from "./warm_pool.ts";
import {
  type AttemptGuard,
  type AttemptTimeout,
  childEnv,
  guardAttempt,
  removeDir,
  throwIfAborted,
  writeAll,
} from "./attempt.ts";

export type { PythonResult } from "./python_outcome.ts";
export type { SandboxLimits, SandboxMode } from "./sandbox_policy.ts";

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
   * Default isolation: `bwrap` (default: bubblewrap + rlimits as uid 65534), `basic`
   * (rlimits only) or `none`. Workflows and tasks override it through `ctx.sandbox`.
   */
  sandbox?: SandboxMode;
  /**
   * The weakest mode a workflow or task may choose (default `none`: any); one asking for
   * less fails with SANDBOX_UNAVAILABLE.
   */
  minSandbox?: SandboxMode;
  /**
   * Whether workflows and tasks may grant paths or network (`read`, `write`, `network`);
   * default true. A task that does while it may not fails with SANDBOX_UNAVAILABLE.
   */
  allowGrants?: boolean;
  /** Default resource limits (each may be raised or lowered by a `sandbox:` declaration). */
  limits?: Partial<SandboxLimits>;
  /** Warm parents kept per sandbox mode (the engine's concurrency); 0 (default) = cold only. */
  poolSize?: number;
  /** Idle warm parents are killed after this long; default 60 s. */
  poolIdleMs?: number;
  /** Tasks a warm parent serves before a fresh one takes its place; default 10000. */
  poolMaxTasks?: number;
  /** How long an idle warm parent let go may take to end before it is killed; default 5 s. */
  poolRetireMs?: number;
  /**
   * Spares take the pages a task's child writes ahead of their job (MADV_POPULATE_WRITE;
   * bubblewrap pools run by root): true (default) where each warm parent's calibration finds
   * that this costs less CPU than the page faults it saves, "always" wherever it can be done,
   * false never.
   */
  poolPopulate?: boolean | "always";
  /** Path of `bwrap`; default: looked up in /usr/bin, /usr/local/bin, /bin. */
  bwrapPath?: string;
}

/**
 * Where a cold task's sandbox sees its work dir (a size-capped tmpfs, the only writable
 * place but declared paths), its result file, its boot file and its grants' socket: a place
 * of its own, which no declared path covers.
 */
const SANDBOX_DIR = "/gleitzeit";
const SANDBOX_WORK = "/gleitzeit/work";
const SANDBOX_RESULT = "/gleitzeit/result.json";
const SANDBOX_BOOT = "/gleitzeit/boot";
const SANDBOX_NET_SOCKET = "/gleitzeit/net.sock";

/** One prepared task for the runner. */
interface Job {
  kind: "execute" | "script";
  code?: string;
  script?: string;
  args?: string[];
  context: Record<string, unknown>;
  /** Declared paths as checked (see checkDeclaredPaths): the runner compares the mounts. */
  declared?: PathIdentity[];
}

const DEFAULT_OUTPUT_LIMIT = 1024 * 1024;
/** How long to wait for the output pipes to close once the process has exited. */
const PIPE_GRACE_MS = 500;

/** Runs `python/execute` and `python/script`, one fresh process per task. */
export class PythonProvider implements Provider {
  readonly id: string;
  readonly protocol = "python/v1";
  readonly #python: string;
  readonly #outputLimit: number;
  readonly #tempDir: string | undefined;
  readonly #mode: SandboxMode;
  readonly #limits: SandboxLimits;
  readonly #poolSize: number;
  readonly #poolIdleMs: number | undefined;
  readonly #poolMaxTasks: number | undefined;
  readonly #poolRetireMs: number | undefined;
  readonly #poolPopulate: boolean | "always";
  readonly #bwrapPath: string | undefined;
  readonly #pools = new Map<SandboxMode, WarmPool>();
  readonly #bwrapReady = new Map<string, Promise<string>>();
  /** Background clean-ups of aborted attempts; `close()` waits for them. */
  readonly #pending = new Set<Promise<void>>();
  readonly #minMode: SandboxMode;
  readonly #allowGrants: boolean;
  /** Whether pool directories left by dead processes were removed (once per provider). */
  #swept = false;
  /** Kill functions of running attempts, for `close()`. */
  readonly #running = new Set<() => void>();

  constructor(options: PythonProviderOptions = {}) {
    this.id = options.id ?? "python";
    this.#python = options.python ?? "python3";
    this.#outputLimit = options.outputLimitBytes ?? DEFAULT_OUTPUT_LIMIT;
    this.#tempDir = options.tempDir;
    this.#mode = options.sandbox ?? "bwrap";
    this.#minMode = options.minSandbox ?? "none";
    this.#allowGrants = options.allowGrants ?? true;
    this.#limits = { ...DEFAULT_LIMITS, ...options.limits };
    this.#poolSize = options.poolSize ?? 0;
    this.#poolIdleMs = options.poolIdleMs;
    this.#poolMaxTasks = options.poolMaxTasks;
    this.#poolRetireMs = options.poolRetireMs;
    this.#poolPopulate = options.poolPopulate ?? true;
    this.#bwrapPath = options.bwrapPath;
  }

  /**
   * Warm parents per sandbox mode: alive (busy or idle) and idle, and the latest one's measure
   * of pages taken ahead (where it made one: see `poolPopulate`).
   */
  poolStats(): Record<string, { live: number; idle: number; pagesAhead?: PagesAhead }> {
    const stats: Record<string, { live: number; idle: number; pagesAhead?: PagesAhead }> = {};
    for (const [mode, pool] of this.#pools) {
      stats[mode] = { live: pool.live, idle: pool.idle };
      if (pool.pagesAhead) stats[mode].pagesAhead = pool.pagesAhead;
    }
    return stats;
  }

  /** The default sandbox mode (what `gleitzeit run` warns about when it is not `bwrap`). */
  get sandboxMode(): SandboxMode {
    return this.#mode;
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
    const policy = resolveSandboxPolicy(
      { mode: this.#mode, limits: this.#limits },
      ctx.sandbox,
      ctx.baseDir ?? Deno.cwd(),
    );
    if (weakerSandbox(policy.mode, this.#minMode)) {
      throw new GleitzeitError(
        "SANDBOX_UNAVAILABLE",
        `the task asks for sandbox '${policy.mode}', weaker than this Gleitzeit allows ` +
          `('${this.#minMode}' at least: python.min_sandbox or GLEITZEIT_MIN_SANDBOX)`,
        {
          hint: `drop the workflow's or task's \`sandbox: ${policy.mode}\`` +
            (this.#minMode === "bwrap" ? " (grant paths or network instead)" : ""),
          details: { mode: policy.mode, min_sandbox: this.#minMode },
        },
      );
    }
    if (!this.#allowGrants && !isPlainPolicy(policy)) {
      throw new GleitzeitError(
        "SANDBOX_UNAVAILABLE",
        "the task grants itself paths or network (sandbox read, write or network), which this " +
          "Gleitzeit does not allow (python.allow_grants: false, or GLEITZEIT_ALLOW_GRANTS)",
        {
          hint: "drop the workflow's or task's `read`, `write` and `network`: tasks see only " +
            "their work directory, and pass data through their context and results",
          details: { read: policy.read, write: policy.write, network: policy.network },
        },
      );
    }
    if (job.script) {
      // its directory is readable in the sandbox: where grants are refused, only one beside
      // the workflow file (the script could otherwise be anywhere, /tmp say, and grant that)
      if (!this.#allowGrants) scriptInside(job.script, ctx.baseDir ?? Deno.cwd());
      policy.read.push(dirname(job.script));
    }
    // the shorter of the call's own `timeout` and the sandbox's (the task's `timeout`, which
    // the engine enforces, applies besides)
    const own = timeoutParamSeconds(params.timeout);
    const timeout: AttemptTimeout | undefined =
      own !== undefined && (policy.timeoutSeconds === undefined || own <= policy.timeoutSeconds)
        ? { seconds: own, setting: "the call's `timeout` parameter (params: {timeout: N})" }
        : policy.timeoutSeconds !== undefined
        ? {
          seconds: policy.timeoutSeconds,
          setting: "the sandbox's `timeout` (sandbox: {timeout: N}, the workflow's or the task's)",
        }
        : undefined;
    const py = await this.interpreter();
    const bwrap = policy.mode === "bwrap" ? await this.#bwrap(py) : undefined;
    if (bwrap) {
      // Where Gleitzeit keeps task files: the temp dir (cold tasks' and warm parents'
      // directories) and /dev/shm (warm parents' output files).
      const declared = checkDeclaredPaths(
        policy,
        dropsUser(policy.mode, py) ? SANDBOX_UID : undefined,
        [tempRoot(this.#tempDir), "/dev/shm"],
        [py.prefix, py.basePrefix, ...py.path].filter((dir) => dir.startsWith("/")),
      );
      if (declared.length > 0) job.declared = declared;
    }
    throwIfAborted(ctx.signal);
    if (this.#poolSize > 0 && isPlainPolicy(policy) && job.kind === "execute") {
      const pool = this.#pool(policy.mode, py, bwrap);
      // A parent the task before left dirty does not run the job (NotRun): another does.
      for (let tries = 0; tries < 3; tries++) {
        const worker = await pool.acquire();
        if (!worker) break;
        try {
          return await this.#runWarm(py, pool, worker, job, policy, timeout, ctx);
        } catch (e) {
          if (!(e instanceof NotRun)) throw e;
        }
        throwIfAborted(ctx.signal);
      }
    }
    return await this.#runCold(py, bwrap, job, policy, timeout, ctx);
  }

  /** Starts warm parents ahead of the first task (default mode); no-op without a pool. */
  async prewarm(count?: number): Promise<void> {
    if (this.#poolSize === 0) return;
    const py = await this.interpreter();
    const bwrap = this.#mode === "bwrap" ? await this.#bwrap(py) : undefined;
    await this.#pool(this.#mode, py, bwrap).prewarm(count);
  }

  /**
   * Healthy when tasks run in the default sandbox mode. `routes` says which modes run at all
   * (a task asking for `basic` or `none` runs without bubblewrap), for workers to take tasks by
   * the mode they ask for (see PYTHON_PROTOCOL.routes).
   */
  async health(): Promise<HealthReport> {
    const started = performance.now();
    let py: PythonInterpreter;
    try {
      py = await this.interpreter();
    } catch (e) {
      const routes = { bwrap: false, basic: false, none: false };
      return { healthy: false, routes, message: (e as Error).message };
    }
    let bwrapError: string | undefined;
    try {
      await this.#bwrap(py);
    } catch (e) {
      bwrapError = (e as Error).message;
    }
    const routes = { bwrap: bwrapError === undefined, basic: true, none: true };
    if (this.#mode === "bwrap" && bwrapError !== undefined) {
      return { healthy: false, routes, message: bwrapError };
    }
    return {
      healthy: true,
      routes,
      latencyMs: performance.now() - started,
      message: `Python ${py.version}, sandbox ${this.#mode}`,
      details: { executable: py.executable, version: py.version, sandbox: this.#mode },
    };
  }

  async close(): Promise<void> {
    for (const kill of this.#running) kill();
    await Promise.all([...this.#pools.values()].map((p) => p.close()));
    this.#pools.clear();
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
    closePidsCgroups();
  }

  /** bwrap's path once found and probed for an interpreter (the probe costs a spawn). */
  #bwrap(py: PythonInterpreter): Promise<string> {
    let found = this.#bwrapReady.get(py.executable);
    if (!found) {
      found = this.#findAndProbeBwrap(py);
      this.#bwrapReady.set(py.executable, found);
      found.catch(() => this.#bwrapReady.delete(py.executable));
    }
    return found;
  }

  async #findAndProbeBwrap(py: PythonInterpreter): Promise<string> {
    const bwrap = findBwrap(this.#bwrapPath);
    const scratch = await Deno.makeTempDir({
      dir: this.#tempDir,
      prefix: `gleitzeit-probe-${Deno.pid}-`,
    });
    try {
      await probeBwrap(bwrap, py, scratch);
    } finally {
      await removeDir(scratch);
    }
    return bwrap;
  }

  async #scriptPath(script: unknown, ctx: CallContext): Promise<string> {
    if (typeof script !== "string" || script === "") {
      throw new GleitzeitError("TASK_PARAMETER_ERROR", "python/script needs `script` (a path)");
    }
    const path = declaredPath(script, ctx.baseDir ?? Deno.cwd());
    let problem: string | undefined;
    try {
      if (!(await Deno.stat(path)).isFile) problem = "is not a file";
    } catch (e) {
      problem = e instanceof Deno.errors.NotFound
        ? "does not exist"
        : `cannot be read (${(e as Error).message})`;
    }
    if (problem) {
      throw new GleitzeitError(
        "TASK_PARAMETER_ERROR",
        `python/script: the script ${script} ${problem}` + (script === path ? "" : ` (${path})`),
        {
          details: { script, path },
          hint: (isAbsolute(script) || script.startsWith("~")
            ? ""
            : "a script's path is relative to the workflow file (~/ is your home); ") +
            "`gleitzeit workflow validate` warns of missing scripts",
        },
      );
    }
    return path;
  }

  /** Runner fields that depend on the sandbox: limits, user, subreaper. */
  #jobExtras(policy: SandboxPolicy, py: PythonInterpreter): Record<string, unknown> {
    const extras: Record<string, unknown> = { subreaper: policy.mode !== "bwrap" };
    if (policy.mode !== "none") extras.limits = rlimitsOf(policy);
    if (dropsUser(policy.mode, py)) {
      extras.uid = SANDBOX_UID;
      extras.gid = SANDBOX_UID;
    }
    return extras;
  }

  /** Wires abort, the task's own timeout and provider close to `kill`. */
  #guard(
    ctx: CallContext,
    timeout: AttemptTimeout | undefined,
    kill: () => void,
    output: () => { output: string; stderr: string },
  ): AttemptGuard {
    return guardAttempt(ctx.signal, timeout, kill, this.#running, output);
  }

  #background(work: () => Promise<void>): void {
    const done: Promise<void> = work().catch(() => {}).finally(() => this.#pending.delete(done));
    this.#pending.add(done);
  }

  async #runCold(
    py: PythonInterpreter,
    bwrap: string | undefined,
    job: Job,
    policy: SandboxPolicy,
    timeout: AttemptTimeout | undefined,
    ctx: CallContext,
  ): Promise<PythonResult> {
    const code = await runnerBytecode(py);
    // Synchronous fs calls: single quick syscalls, cheaper than a thread hop each.
    if (!this.#swept) {
      this.#swept = true;
      this.#background(() => sweepDeadPoolDirs(this.#tempDir));
    }
    // The owner's pid in the name: what a killed process leaves is swept by the next one.
    // The directory stays Gleitzeit's own (0700), so nobody else can swap or plant what
    // Gleitzeit writes there (the boot file, the grants' socket, /etc/hosts, the result
    // file), which bwrap binds in one by one. A sandboxed task writes only its result file
    // and its work dir, a tmpfs of WORK_TMPFS_BYTES (memory: what it writes there cannot
    // fill a disk); without bwrap, `task/` (work dir and result) is the task user's.
    const base = Deno.makeTempDirSync({
      dir: this.#tempDir,
      prefix: `gleitzeit-py-${Deno.pid}-`,
    });
    const taskDir = `${base}/task`;
    const resultPath = bwrap ? `${base}/result.json` : `${taskDir}/result.json`;
    /** The work dir as the runner sees it. */
    const runWorkDir = bwrap ? SANDBOX_WORK : `${taskDir}/work`;
    let child: Deno.ChildProcess;
    let proxy: GrantProxy | undefined;
    let plan: GrantPlan | undefined;
    /** The task's outside traces: its grants' proxy, then its directory. */
    const release = async () => {
      await proxy?.close();
      await removeDir(base);
    };
    const grants = bwrap && !policy.network ? policy.grants : [];
    const filter = bwrap ? sandboxFilter() : undefined;
    // Declared paths beside the workflow file, by their relative names in the work dir.
    const links = workDirLinks(policy, ctx.baseDir ?? Deno.cwd());
    try {
      if (bwrap) {
        // the task's to write (through the bind), nobody's to replace
        Deno.writeFileSync(resultPath, new Uint8Array(), { mode: 0o600, createNew: true });
      } else {
        Deno.mkdirSync(taskDir, { mode: 0o700 });
        Deno.mkdirSync(runWorkDir, { mode: 0o700 });
        for (const [name, path] of links) {
          // (links may share parents: `a/b`, `a/c`)
          if (dirname(name) !== ".") {
            Deno.mkdirSync(`${runWorkDir}/${dirname(name)}`, { recursive: true, mode: 0o755 });
          }
          Deno.symlinkSync(path, `${runWorkDir}/${name}`);
        }
      }
      if (grants.length > 0) {
        // Each granted destination through a proxy outside (see network_grants.ts).
        plan = planGrants(grants);
        Deno.writeTextFileSync(`${base}/hosts`, plan.hosts);
        Deno.chmodSync(`${base}/hosts`, 0o644);
        proxy = GrantProxy.open(`${base}/net.sock`, grants);
        if (dropsUser(policy.mode, py)) Deno.chownSync(proxy.path, SANDBOX_UID, SANDBOX_UID);
      }
      if (dropsUser(policy.mode, py)) {
        for (const path of bwrap ? [resultPath] : [runWorkDir, taskDir]) {
          Deno.chownSync(path, SANDBOX_UID, SANDBOX_UID);
        }
      }
      // Sandboxed without root: tasks are Gleitzeit's own user, mapped.
      const unprivileged = bwrap !== undefined && !dropsUser(policy.mode, py);
      // Without root, the runner mounts its tmpfs anew, capped on files too, with
      // CAP_SYS_ADMIN in the task's user namespace until then (see the runner's _own_tmpfs).
      // Where tasks are uid 0 there (low ports granted), it also takes CAP_SYS_ADMIN and
      // CAP_SETPCAP out of its bounding set, and keeps CAP_NET_BIND_SERVICE alone.
      const asNsRoot = plan?.lowPorts === true && !policy.network;
      // The marshalled runner and the job in a file the runner reads (root's, 0600, when it
      // starts as root; bound in at SANDBOX_BOOT): stdin carries bwrap's seccomp filter.
      const fullJob = {
        ...job,
        ...this.#jobExtras(policy, py),
        // The module path of a normal start (site-packages, a venv's), as a warm parent gets
        // it: the runner starts with -S (see PythonInterpreter.path).
        sys_path: py.path,
        work_dir: runWorkDir,
        result_path: bwrap ? SANDBOX_RESULT : resultPath,
        // Outside bubblewrap the runner is this process's child: it checks that it still is
        // once it has asked to die with it.
        ...(bwrap ? {} : { parent_pid: Deno.pid }),
        // As root, the runner caps the files on its tmpfs (see the runner's _cap_inodes).
        ...(bwrap && dropsUser(policy.mode, py)
          ? { tmpfs_paths: [SANDBOX_WORK, "/dev/shm"], tmpfs_inodes: WORK_TMPFS_INODES }
          : {}),
        ...(unprivileged
          ? {
            own_tmpfs: {
              paths: [[SANDBOX_WORK, WORK_TMPFS_BYTES, 0o1777], [
                "/dev/shm",
                SHM_TMPFS_BYTES,
                0o1777,
              ]],
              inodes: WORK_TMPFS_INODES,
              // CAP_SYS_ADMIN (21), CAP_SETPCAP (8); CAP_NET_BIND_SERVICE (bit 10) kept
              ...(asNsRoot ? { drop_bounding: [21, 8], keep: 1 << 10 } : {}),
            },
          }
          : {}),
        ...(plan && proxy
          ? {
            net: {
              socket: bwrap ? SANDBOX_NET_SOCKET : proxy.path,
              listeners: plan.listeners,
              limit: MAX_GRANT_CONNECTIONS,
            },
          }
          : {}),
      };
      const bootPath = `${base}/boot`;
      Deno.writeFileSync(bootPath, bootstrapInput(code, JSON.stringify(fullJob)), {
        mode: 0o600,
        createNew: true,
      });
      const runner = [
        py.executable,
        "-I",
        "-S",
        "-c",
        RUNNER_BOOTSTRAP,
        "once",
        bwrap ? SANDBOX_BOOT : bootPath,
      ];
      const [command, ...args] = bwrap
        ? [
          bwrap,
          ...bwrapArgs(py, {
            // The runner enters the work dir itself, once it is the sandbox user.
            cwd: "/",
            network: policy.network,
            read: policy.read,
            write: policy.write,
            hostsFile: plan && `${base}/hosts`,
            bindLowPorts: plan?.lowPorts,
            remountCap: dropsUser(policy.mode, py),
            ownTmpfsCap: unprivileged,
            // PID 1 is bwrap's reaper: root's as root; without root the task's own user's, and
            // kept out of its reach by the filter (ptrace and its kin, see seccomp.ts) and by
            // covering /proc/1 (its memory). The task is PID 2, whose signals work as in any
            // process (an init's do not).
            hideInit: unprivileged,
            extra: [
              "--perms",
              "0755",
              "--dir",
              SANDBOX_DIR,
              // anyone's (the sandbox has one user): bwrap would make it root's
              "--perms",
              "1777",
              "--size",
              String(WORK_TMPFS_BYTES),
              "--tmpfs",
              SANDBOX_WORK,
              // (--dir makes the parents too)
              ...links.flatMap(([name, path]) => [
                ...(dirname(name) === "."
                  ? []
                  : ["--perms", "0755", "--dir", `${SANDBOX_WORK}/${dirname(name)}`]),
                "--symlink",
                path,
                `${SANDBOX_WORK}/${name}`,
              ]),
              "--bind",
              resultPath,
              SANDBOX_RESULT,
              "--ro-bind",
              bootPath,
              SANDBOX_BOOT,
              ...(proxy ? ["--bind", proxy.path, SANDBOX_NET_SOCKET] : []),
            ],
          }),
          ...(filter ? ["--seccomp", "0"] : []),
          "--",
          ...runner,
        ]
        : runner;
      child = new Deno.Command(command, {
        args,
        cwd: bwrap ? "/" : runWorkDir,
        clearEnv: true,
        env: plan
          // the forwarder's threads: one malloc arena each would reserve 64 MiB of the
          // address space limit; two arenas keep hundreds of connections within it
          ? { ...childEnv(py, runWorkDir), MALLOC_ARENA_MAX: "2" }
          : childEnv(py, runWorkDir),
        stdin: filter ? "piped" : "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      if (filter) writeAll(child.stdin, filter);
    } catch (e) {
      await release();
      if (e instanceof GleitzeitError) throw e;
      throw new GleitzeitError(
        bwrap ? "SANDBOX_UNAVAILABLE" : "PROVIDER_UNAVAILABLE",
        `cannot start ${bwrap ?? py.executable}: ${(e as Error).message}`,
        { cause: e, hint: bwrap ? BWRAP_INSTALL_HINT : undefined },
      );
    }
    const out = new BoundedCapture(child.stdout, this.#outputLimit);
    const err = new BoundedCapture(child.stderr, this.#outputLimit);
    const guard = this.#guard(
      ctx,
      timeout,
      () => this.#background(() => killProcessTree(child.pid, { python: py.executable })),
      () => ({ output: outputTail(out.result().text), stderr: outputTail(err.result().text) }),
    );
    try {
      const status = await Promise.race([child.status, guard.stopped]);
      // The runner has exited: take down anything of its group it left behind.
      killGroup(child.pid);
      const [stdout, stderr] = await Promise.all([
        out.finish(PIPE_GRACE_MS),
        err.finish(PIPE_GRACE_MS),
      ]);
      if (guard.killed) await guard.stopped;
      await proxy?.close();
      const payload = readPayload(resultPath);
      // Off the task's path: removing even a small directory tree costs ~0.4 ms on a disk.
      this.#background(() => removeDir(base));
      const limits = policy.mode === "none" ? undefined : policy;
      return toResult(payload, exitFromStatus(status, bwrap !== undefined), stdout, stderr, limits);
    } catch (e) {
      if (guard.killed) {
        this.#background(async () => {
          await child.status;
          await Promise.all([out.finish(PIPE_GRACE_MS), err.finish(PIPE_GRACE_MS)]);
          await release();
        });
      } else {
        await release();
      }
      // a failed or timed-out task that met a granted destination it could not reach: why
      throw withUnreachable(e, proxy?.failures ?? []);
    } finally {
      guard.dispose();
    }
  }

  #pool(mode: SandboxMode, py: PythonInterpreter, bwrap: string | undefined): WarmPool {
    let pool = this.#pools.get(mode);
    if (!pool) {
      pool = new WarmPool({
        size: this.#poolSize,
        idleMs: this.#poolIdleMs,
        maxTasksPerWorker: this.#poolMaxTasks,
        retireMs: this.#poolRetireMs,
        spawn: () => this.#warmSpawn(mode, py, bwrap),
      });
      this.#pools.set(mode, pool);
    }
    return pool;
  }

  async #warmSpawn(
    mode: SandboxMode,
    py: PythonInterpreter,
    bwrap: string | undefined,
  ): Promise<WarmSpawn> {
    if (!this.#swept) {
      this.#swept = true;
      await sweepDeadPoolDirs(this.#tempDir);
    }
    const poolDir = await Deno.makeTempDir({
      dir: this.#tempDir,
      prefix: `gleitzeit-pool-${Deno.pid}-`,
    });
    // Traversable but not listable or writable by the sandbox user: each task gets its own
    // directory below, owned by that user.
    await Deno.chmod(poolDir, 0o711);
    const code = codePrefix(await runnerBytecode(py));
    // Each task's own pids cgroup below the pool's, as root where they can be made.
    const cgroups = mode === "bwrap" && bwrap && dropsUser(mode, py) ? pidsCgroups() : undefined;
    const filter = mode === "bwrap" && bwrap ? sandboxFilter() : undefined;
    let cgroup: string | undefined;
    try {
      cgroup = cgroups?.create("pool", "max");
    } catch {
      // the rlimit applies instead
    }
    const runner = [
      py.executable,
      "-I",
      "-S",
      "-c",
      POOL_BOOTSTRAP,
      "pool",
      JSON.stringify({
        sys_path: py.path,
        ipc_check: mode === "bwrap" && bwrap !== undefined,
        own_pid_ns: mode === "bwrap" && bwrap !== undefined,
        // Children drop to the sandbox user before their job arrives (see the runner).
        ...(dropsUser(mode, py) ? { uid: SANDBOX_UID, gid: SANDBOX_UID } : {}),
        ...(cgroup ? { cgroup: SANDBOX_POOL_CGROUP, nproc: this.#limits.maxProcesses } : {}),
        ...(filter
          ? { seccomp: Array.from(filter, (b) => b.toString(16).padStart(2, "0")).join("") }
          : {}),
        ...(this.#poolPopulate === true ? {} : { populate: this.#poolPopulate }),
      }),
    ];
    if (mode !== "bwrap" || !bwrap) {
      return {
        command: runner[0],
        args: runner.slice(1),
        env: poolEnv(py, poolDir),
        poolDir,
        python: py.executable,
        ioDir: makeIoDir(),
        stdinPrefix: code,
      };
    }
    // Task directories on a size-capped tmpfs (see WORK_TMPFS_BYTES): creating one on a disk
    // costs ~250 us of kernel time per task, on tmpfs a few us.
    const work = `${poolDir}/t`;
    // The output files on the host's tmpfs where Gleitzeit may make a directory there (not
    // under its own scoped permissions: Deno asks for all of them for /dev/shm); else in
    // `.io` here. Either way their directory is read-only in the sandbox and each file bound
    // in on its own (ioBinds), and the pool directory is read-only too: a task of the pool's
    // own user, which owns them on the host, can neither add files there for later tasks
    // nor fill the disk below it.
    const shmIo = makeIoDir();
    const ioDir = shmIo ?? `${poolDir}/.io`;
    if (!shmIo) await Deno.mkdir(ioDir, { mode: 0o700 });
    runner[runner.length - 1] = JSON.stringify({
      ...JSON.parse(runner[runner.length - 1]),
      work_tmpfs: work,
      work_inodes: WORK_TMPFS_INODES,
      // Without root, the parent mounts them anew, capped on files too (see _own_tmpfs).
      ...(py.uid === 0 ? {} : {
        own_tmpfs: {
          paths: [[work, WORK_TMPFS_BYTES, 0o711], ["/dev/shm", SHM_TMPFS_BYTES, 0o1777]],
          inodes: WORK_TMPFS_INODES,
        },
      }),
      // the output directory is the one entry of the sandbox's /dev/shm that is not a task's
      ...(shmIo ? { shm_keep: basename(shmIo) } : {}),
    });
    const args = [
      ...bwrapArgs(py, {
        taskDir: poolDir,
        // Tasks' directories are on the tmpfs below; output files in ioDir.
        taskDirReadOnly: true,
        cwd: poolDir,
        network: false,
        read: [],
        write: [],
        keepRootCaps: true,
        ownTmpfsCap: py.uid !== 0,
        // The parent is the sandbox's init: no bwrap reaper above it, which would run
        // without the parent's seccomp filter (as the task's user, without root, and so a
        // process a task could ptrace to make system calls the filter refuses).
        asPid1: true,
        extra: [
          ...ioBinds(ioDir),
          ...(cgroup ? ["--bind", cgroup, SANDBOX_POOL_CGROUP] : []),
          "--perms",
          "0711",
          "--size",
          String(WORK_TMPFS_BYTES),
          "--tmpfs",
          work,
        ],
      }),
      "--",
      ...runner,
    ];
    return {
      command: bwrap,
      args,
      env: poolEnv(py, poolDir),
      poolDir,
      python: py.executable,
      workTmpfs: true,
      sandboxInit: true,
      ioDir,
      stdinPrefix: code,
      ...(cgroup ? { cleanup: async () => void await cgroups!.remove(cgroup!) } : {}),
    };
  }

  /** The next task's paths, announced with this task's job (see WarmWorker.run). */
  #nextPaths(worker: WarmWorker): { paths: TaskPaths; extra: Record<string, unknown> } | undefined {
    try {
      // Owned by root until its job is sent (the running task must not reach it).
      return { paths: worker.taskPaths(), extra: { output_limit: this.#outputLimit } };
    } catch {
      return undefined; // the next job creates its directory itself
    }
  }

  async #runWarm(
    py: PythonInterpreter,
    pool: WarmPool,
    worker: WarmWorker,
    job: Job,
    policy: SandboxPolicy,
    timeout: AttemptTimeout | undefined,
    ctx: CallContext,
  ): Promise<PythonResult> {
    let paths = worker.prepared;
    const guard = this.#guard(ctx, timeout, () => this.#background(() => worker.kill()), () => {
      // what the task had written to its output files by then (by path: read only)
      const [out, err] = paths
        ? [paths.stdout_path, paths.stderr_path].map((path) =>
          outputTail(readCapped(path, this.#outputLimit).text)
        )
        : ["", ""];
      return { output: out!, stderr: err! };
    });
    let healthy = false;
    try {
      paths ??= worker.taskPaths();
      // Only now the sandbox user's: the previous task has ended (on the tmpfs, the warm
      // child hands its directory over itself).
      if (dropsUser(policy.mode, py) && !worker.workTmpfs) {
        Deno.chownSync(paths.work_dir, SANDBOX_UID, SANDBOX_UID);
      }
      const fullJob = {
        ...job,
        ...this.#jobExtras(policy, py),
        subreaper: true,
        output_limit: this.#outputLimit,
        ...paths,
      };
      // The next task's directory is announced with this job (see the runner).
      const running = worker.run(fullJob, this.#nextPaths(worker));
      const { status, dirty } = await Promise.race([running, guard.stopped]);
      healthy = !dirty;
      const own = [paths.result_path, paths.stdout_path, paths.stderr_path];
      // As root, the output files are out of the sandbox user's reach but for its own task's
      // descriptors: read and emptied through descriptors held open (see ioHandles).
      let held: Map<string, Deno.FsFile> | undefined;
      try {
        held = dropsUser(policy.mode, py) ? worker.ioHandles() : undefined;
      } catch {
        healthy = false; // its files are gone: read what is there by path, and let it go
      }
      let payload: RunnerPayload | undefined;
      let stdout: CapturedOutput;
      let stderr: CapturedOutput;
      if (held) {
        const [result, out, err] = own.map((path) => held.get(path)!);
        payload = readPayloadFrom(result);
        stdout = readCappedFrom(out, this.#outputLimit, payload?.stdout_dropped);
        stderr = readCappedFrom(err, this.#outputLimit, payload?.stderr_dropped);
        for (const file of [result, out, err]) {
          try {
            file.truncateSync(0); // (an empty one costs the kernel next to nothing)
          } catch {
            healthy = false; // cannot be emptied: the parent and its files go
          }
        }
      } else {
        payload = readPayload(paths.result_path);
        stdout = readCapped(
          paths.stdout_path,
          this.#outputLimit,
          payload?.stdout_dropped,
          payload?.stdout_size,
        );
        stderr = readCapped(
          paths.stderr_path,
          this.#outputLimit,
          payload?.stderr_dropped,
          payload?.stderr_size,
        );
        // Memory, not disk: empty them now (the next task on this set truncates them
        // anyway), by their real sizes (the sizes in the result are the task's to write).
        // Where tasks are the pool's own user, they can reach the other set's files too.
        for (const path of worker.ioDir ? worker.ioFiles() : []) {
          let info: Deno.FileInfo;
          try {
            info = Deno.lstatSync(path);
          } catch {
            continue; // not there
          }
          // never through a FIFO or a link a task may have put there
          if (!info.isFile || info.size === 0) continue;
          try {
            // a task of the pool's own user may have taken the permissions away
            if (((info.mode ?? 0) & 0o200) === 0) Deno.chmodSync(path, 0o666);
            Deno.truncateSync(path, 0);
          } catch {
            healthy = false; // cannot be emptied: the parent and its files go
          }
        }
      }
      const limits = policy.mode === "none" ? undefined : policy;
      return toResult(payload, exitFromWaitStatus(status), stdout, stderr, limits);
    } finally {
      guard.dispose();
      if (healthy && !guard.killed) {
        worker.retire(paths!.work_dir);
        pool.release(worker);
      } else {
        this.#background(() => pool.discard(worker));
      }
    }
  }
}

/** Fails unless `script` (real path) is in `baseDir` (real path) or below it. */
function scriptInside(script: string, baseDir: string): void {
  let real = script;
  let base = baseDir;
  try {
    real = Deno.realPathSync(script);
    base = Deno.realPathSync(baseDir);
  } catch {
    // checked to exist already; gone meanwhile: judged by the names as given
  }
  if (real.startsWith(base.endsWith("/") ? base : `${base}/`)) return;
  throw new GleitzeitError(
    "SANDBOX_UNAVAILABLE",
    `the script ${script} is not beside the workflow file (in ${baseDir} or below), which ` +
      "this Gleitzeit requires: it does not allow grants (python.allow_grants: false), and a " +
      "script's directory is readable to its task",
    { hint: "put the script beside the workflow file", details: { script: real, base } },
  );
}

/**
 * A failed task's error, with the granted destinations that could not be reached while it
 * ran (the task saw a reset connection: this says why).
 */
function withUnreachable(e: unknown, failures: readonly string[]): unknown {
  if (!(e instanceof GleitzeitError) || failures.length === 0) return e;
  const said = `a granted destination could not be reached: ${failures.join("; ")}`;
  return new GleitzeitError(e.code, e.message, {
    details: { ...e.details, unreachable: [...failures] },
    hint: e.hint ? `${said}; ${e.hint}` : said,
    retryable: e.retryable,
    ...(e.cause === undefined ? {} : { cause: e.cause }),
  });
}

/**
 * A warm parent's environment: a task's own, plus LD_BIND_NOW, so that the dynamic linker
 * resolves every library function once, in the parent, not again in each forked child that
 * first calls it (the runner takes it out of the tasks' environment at its start).
 */
function poolEnv(py: PythonInterpreter, home: string): Record<string, string> {
  return { ...childEnv(py, home), LD_BIND_NOW: "1" };
}

function dropsUser(mode: SandboxMode, py: PythonInterpreter): boolean {
  return mode === "bwrap" && py.uid === 0;
}

let systemTemp: string | undefined;

/**
 * Where Deno makes temp directories: `tempDir`, else the system's (TMPDIR, else /tmp), asked
 * of Deno itself once (the CLI may not read TMPDIR: it reads only its own variables).
 */
function tempRoot(tempDir: string | undefined): string {
  if (tempDir !== undefined) return tempDir;
  if (systemTemp === undefined) {
    const probe = Deno.makeTempDirSync({ prefix: `gleitzeit-probe-${Deno.pid}-` });
    systemTemp = dirname(probe);
    Deno.removeSync(probe);
  }
  return systemTemp;
}

/**
 * Removes the pool directories (and their /dev/shm output directories) of processes that are
 * gone, killed before they could clean up (e.g. by SIGKILL), and cold tasks' directories
 * likewise, and bubblewrap probes'. Names carry the owner's pid:
 * `gleitzeit-pool-<pid>-<random>`, `gleitzeit-py-<pid>-<random>`, `gleitzeit-probe-<pid>-<random>`,
 * `gleitzeit-io-<pid>-<random>`, and `gleitzeit-init-<pid>-<random>` (the cold init of versions
 * before 2026-12-08, left by one killed).
 */
async function sweepDeadPoolDirs(tempDir: string | undefined): Promise<void> {
  const places: [string, RegExp][] = [
    [tempRoot(tempDir), /^gleitzeit-(?:pool|py|probe|init)-(\d+)-/],
    ["/dev/shm", /^gleitzeit-io-(\d+)-/],
  ];
  for (const [dir, pattern] of places) {
    try {
      for await (const e of Deno.readDir(dir)) {
        const m = pattern.exec(e.name);
        if (!m || !e.isDirectory) continue;
        const pid = Number(m[1]);
        if (pid === Deno.pid || processExists(pid)) continue;
        await Deno.remove(`${dir}/${e.name}`, { recursive: true }).catch(() => {});
      }
    } catch {
      // an unreadable (or missing) directory only means nothing is swept there
    }
  }
}

function processExists(pid: number): boolean {
  try {
    // signal 0 only checks; Deno's types list only named signals
    (Deno.kill as (pid: number, signal: number) => void)(pid, 0);
    return true;
  } catch (e) {
    return e instanceof Deno.errors.PermissionDenied;
  }
}
