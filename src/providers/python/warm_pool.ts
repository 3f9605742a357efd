/**
 * A pool of warm Python parents (runner mode `pool`), each inside its own sandbox. A task
 * sent to a parent runs in a freshly forked child, so it skips interpreter start-up but
 * shares no state with earlier tasks. A parent serves one task at a time; an aborted task
 * takes its whole parent down (the kill is the same as for a cold task) and the pool starts
 * another when needed. Idle parents are reaped after `idleMs`.
 *
 * @module
 */

import { GleitzeitError } from "../../core/errors.ts";
import { killProcessTree } from "./process_tree.ts";

/** How to start one warm parent. */
export interface WarmSpawn {
  /** Executable and arguments (bwrap ... python -I -c POOL_BOOTSTRAP pool, or python directly). */
  command: string;
  args: string[];
  env: Record<string, string>;
  /** The directory shared by the parent's tasks; removed when the parent ends. */
  poolDir: string;
  /** Interpreter for the process-tree killer's helper (see process_tree.ts). */
  python: string;
  /**
   * Task directories live on a tmpfs that the sandbox mounts over `poolDir/t`
   * ({@link WORK_TMPFS_BYTES}); the warm parent creates, hands over and removes them, and
   * `work_dir` in {@link TaskPaths} is only a placeholder.
   */
  workTmpfs?: boolean;
  /**
   * Where the output files live when not in `poolDir/.io`: a directory made by
   * {@link makeIoDir} on the host's tmpfs, visible at the same path inside the sandbox.
   */
  ioDir?: string;
  /**
   * The parent is its sandbox's init (its own PID namespace): everything in the sandbox ends
   * when it does, so an idle one is let go by closing its stdin (see
   * {@link WarmWorker.destroy}).
   */
  sandboxInit?: boolean;
  /** Written to the parent's stdin before any job (the marshalled runner, POOL_BOOTSTRAP). */
  stdinPrefix?: Uint8Array;
  /** Run once the parent and everything under it has ended (e.g. removes its cgroup). */
  cleanup?: () => Promise<void>;
}

/**
 * A root-only (0700) directory on the host's tmpfs (/dev/shm) for a warm parent's output
 * files, or undefined where there is none. On this project's ext4, truncating one of the
 * reused files costs ~110 us of kernel time and each task's spare truncates three; on tmpfs
 * ~5 us. The provider empties the files after reading them, so they hold no memory between
 * tasks; the task's file-size limit caps each meanwhile.
 */
export function makeIoDir(): string | undefined {
  try {
    if (!Deno.statSync("/dev/shm").isDirectory) return undefined;
    return Deno.makeTempDirSync({ dir: "/dev/shm", prefix: `gleitzeit-io-${Deno.pid}-` });
  } catch {
    return undefined;
  }
}

/**
 * Creates both sets of output files in `ioDir` (see {@link WarmWorker.taskPaths}) and returns
 * the bwrap arguments that show them to a sandbox: the directory read-only, each file
 * writable. Tasks that run as the pool's own user (no root) could otherwise add files there,
 * on the host's /dev/shm, for later tasks to see.
 */
export function ioBinds(ioDir: string): string[] {
  const args = ["--ro-bind", ioDir, ioDir];
  for (const set of [0, 1] as const) {
    for (const path of Object.values(ioSet(ioDir, set))) {
      Deno.writeFileSync(path, new Uint8Array(), { createNew: true });
      Deno.chmodSync(path, 0o666); // in a 0700 directory: reopening /dev/stdout works inside
      args.push("--bind", path, path);
    }
  }
  return args;
}

/** One of the two sets of output files in an io directory (tasks use them in turn). */
function ioSet(io: string, set: 0 | 1): Omit<TaskPaths, "work_dir"> {
  return {
    result_path: `${io}/${set}.result`,
    stdout_path: `${io}/${set}.out`,
    stderr_path: `${io}/${set}.err`,
  };
}

/**
 * Size cap of a warm parent's task-directory tmpfs (bubblewrap mode): 512 MiB, shared by the
 * parent's tasks (one at a time; a finished task's files are removed before the next runs).
 * A cold sandboxed task's work dir is a tmpfs of the same size, its own. A task that fills
 * it gets ENOSPC (OSError) like on a full disk. It is memory, not disk: with N warm parents
 * and M cold tasks running, at most (N + M) x 512 MiB.
 */
export const WORK_TMPFS_BYTES = 512 * 1024 * 1024;

/**
 * Files and directories on that tmpfs, and on the sandbox's /dev/shm, at most, when
 * Gleitzeit runs as root (the warm parent or the cold runner remounts them with this cap):
 * empty files take no bytes but ~1 KB of kernel memory each (the kernel's default allows
 * millions: ~4 GB of it here), and removing them is on a warm parent's next task's path. A
 * task past it gets ENOSPC.
 */
export const WORK_TMPFS_INODES = 65536;

/** How long an idle parent whose stdin was closed may take to end before it is killed. */
export const RETIRE_MS = 5_000;

/** Paths of one warm task: its work directory and its (reused) output files. */
export type TaskPaths = Record<"work_dir" | "result_path" | "stdout_path" | "stderr_path", string>;

/** The outcome line of one job. */
export interface WarmStatus {
  /** `os.waitpid` status of the forked child. */
  status: number;
  /** The task left state the parent cannot clean (SysV IPC): do not reuse this parent. */
  dirty: boolean;
}

/**
 * A warm parent's measure, before it says ready, of whether its spares should take ahead the
 * pages a task's child writes (see the runner's `_calibrate`): the least CPU time of a
 * calibration child without the pages taken ahead and with them, and whether they are (unless
 * that costs more than 5% more).
 */
export interface PagesAhead {
  cpu_ns_without: number;
  cpu_ns_with: number;
  taken: boolean;
}

/**
 * A job that never reached a child: the parent it was sent to, while that parent cleaned up
 * after the task before, found that task had left it dirty (or ended). Safe to send again
 * to another parent.
 */
export class NotRun extends Error {
  constructor() {
    super("the warm Python worker was left unusable by the task before; the job did not run");
    this.name = "NotRun";
  }
}

/** One warm parent process. */
export class WarmWorker {
  readonly poolDir: string;
  readonly child: Deno.ChildProcess;
  readonly #python: string;
  readonly #cleanup: (() => Promise<void>) | undefined;
  readonly #sandboxInit: boolean;
  readonly #retireMs: number;
  /** See {@link WarmSpawn.workTmpfs}. */
  readonly workTmpfs: boolean;
  /** Output files on a host tmpfs (see {@link makeIoDir}), emptied after each task. */
  readonly ioDir: string | undefined;
  readonly #io: string;
  tasks = 0;
  /** Its successor is ready (or could not start): it goes at its next release. */
  replaced = false;
  /** A successor is being started for it (see {@link WarmPool.release}). */
  succeeding = false;
  idleTimer: ReturnType<typeof setTimeout> | undefined;
  /** When it was last returned to the pool (performance.now()). */
  idleSince = 0;
  /** Finished task directories are renamed in here (one syscall) and purged in batches. */
  readonly #trash: string;
  #trashed = 0;
  #purges = 0;
  #purging: Promise<void> = Promise.resolve();
  #dead = false;
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #lines: LineReader;
  #stderr: Promise<string>;
  readonly exited: Promise<Deno.CommandStatus>;

  /** `retireMs`: how long it may take to end once its stdin is closed (see destroy()). */
  constructor(spawn: WarmSpawn, retireMs = RETIRE_MS) {
    this.#retireMs = retireMs;
    this.poolDir = spawn.poolDir;
    this.#python = spawn.python;
    this.#cleanup = spawn.cleanup;
    this.#sandboxInit = spawn.sandboxInit === true;
    this.workTmpfs = spawn.workTmpfs === true;
    this.ioDir = spawn.ioDir;
    this.#io = spawn.ioDir ?? `${spawn.poolDir}/.io`;
    this.#trash = `${spawn.poolDir}/.trash`;
    // Owned by the orchestrator, mode 0700: the sandbox user cannot look inside.
    Deno.mkdirSync(this.#trash, { mode: 0o700 });
    // Two sets of output files, used by every other task (see WarmWorker.taskPaths).
    if (!spawn.ioDir) Deno.mkdirSync(this.#io, { mode: 0o700 });
    // Task directories: traversable, not listable.
    Deno.mkdirSync(`${spawn.poolDir}/t`, { mode: 0o711 });
    this.child = new Deno.Command(spawn.command, {
      args: spawn.args,
      cwd: spawn.poolDir,
      clearEnv: true,
      env: spawn.env,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.exited = this.child.status.finally(() => {
      this.#dead = true;
    });
    this.#writer = this.child.stdin.getWriter();
    // A failed write means the parent is gone: ready() reports how it ended.
    if (spawn.stdinPrefix) this.#writer.write(spawn.stdinPrefix).catch(() => {});
    this.#lines = new LineReader(this.child.stdout);
    this.#stderr = new Response(this.child.stderr).text().catch(() => "");
  }

  get dead(): boolean {
    return this.#dead;
  }

  /** Waits for the parent's ready line. */
  async ready(): Promise<void> {
    const line = await this.#next();
    const msg = JSON.parse(line) as { ready?: boolean; pages_ahead?: PagesAhead };
    if (!msg.ready) throw new Error(`unexpected first line from the warm worker: ${line}`);
    this.pagesAhead = msg.pages_ahead;
  }

  /** What its calibration measured, where it made one (see {@link PagesAhead}). */
  pagesAhead?: PagesAhead;

  async #next(): Promise<string> {
    const line = this.#lines.take() ?? await this.#lines.next();
    if (line === undefined) {
      const status = await this.exited;
      const stderr = (await this.#stderr).trim().slice(-1000);
      throw new GleitzeitError(
        "TASK_EXECUTION_FAILED",
        `the warm Python worker ended unexpectedly (exit ${status.code}${
          status.signal ? `, ${status.signal}` : ""
        })${stderr ? `: ${stderr}` : ""}`,
        { details: { exit_code: status.code, signal: status.signal, stderr } },
      );
    }
    return line;
  }

  #dirs = 0;

  /**
   * A fresh work directory for the next task (one mkdir) and its output files. The files
   * alternate between two sets: the next task's child opens (truncates) its set while the
   * current task runs, and the provider has read the set's previous contents by then.
   */
  taskPaths(): TaskPaths {
    const n = ++this.#dirs;
    const workDir = this.workTmpfs ? `${this.poolDir}/t` : `${this.poolDir}/t/w${n}`;
    if (!this.workTmpfs) Deno.mkdirSync(workDir, { mode: 0o700 });
    return {
      work_dir: workDir,
      ...ioSet(this.#io, (n & 1) as 0 | 1),
    };
  }

  /** Both sets' output files (a task of the pool's own user can reach either set). */
  ioFiles(): string[] {
    return [0, 1].flatMap((set) => Object.values(ioSet(this.#io, set as 0 | 1)));
  }

  #handles: Map<string, Deno.FsFile> | undefined;

  /**
   * The output files on the host's tmpfs, opened once and held (read and write) until the
   * parent goes: reading and emptying them by descriptor saves the look-up, open and close
   * of each every task. Only where the sandbox user cannot replace them (their directory is
   * root's: Gleitzeit runs as root); undefined without an {@link ioDir}.
   */
  ioHandles(): Map<string, Deno.FsFile> | undefined {
    if (!this.ioDir) return undefined;
    if (!this.#handles) {
      const opened = new Map<string, Deno.FsFile>();
      try {
        for (const path of this.ioFiles()) {
          opened.set(path, Deno.openSync(path, { read: true, write: true }));
        }
      } catch (e) {
        for (const file of opened.values()) file.close();
        throw e;
      }
      this.#handles = opened;
    }
    return this.#handles;
  }

  /** Paths of the next task, already created and announced to the waiting child. */
  prepared: TaskPaths | undefined;

  /**
   * Sends one job and resolves with its child's wait status once the child has ended.
   * `next` announces the next task's directory and output files in the same write (one
   * syscall, one wake-up of the parent), so the next child sets them up while this one runs.
   */
  async run(
    job: Record<string, unknown>,
    next?: { paths: TaskPaths; extra: Record<string, unknown> },
  ): Promise<WarmStatus> {
    this.tasks++;
    let lines = JSON.stringify(job) + "\n";
    if (next) lines += JSON.stringify({ prepare: { ...next.extra, ...next.paths } }) + "\n";
    this.prepared = next?.paths;
    // Not awaited: the status line follows the write anyway, and a parent that is gone says
    // so there, with how it ended (a failed write would only say "broken pipe").
    this.#writer.write(new TextEncoder().encode(lines)).catch(() => {});
    while (true) {
      const msg = JSON.parse(await this.#next()) as {
        status?: number;
        dirty?: boolean;
        ready?: boolean;
      };
      // The task before was reported as soon as it said it was done ("early"), and the
      // parent then found it had left the sandbox dirty: it went without reading this job.
      if (msg.ready === true && msg.dirty === true) throw new NotRun();
      if (typeof msg.status === "number") {
        return { status: msg.status, dirty: msg.dirty === true };
      }
    }
  }

  /**
   * Moves a finished task's directory out of the sandbox user's reach at once (the next
   * task must not see it); the actual removal happens in batches in the background.
   */
  retire(taskDir: string): void {
    if (this.workTmpfs) return; // the warm parent did it
    try {
      Deno.renameSync(taskDir, `${this.#trash}/${++this.#trashed}`);
    } catch {
      return;
    }
    if (this.#trashed % 64 === 0) {
      const old = `${this.poolDir}/.purge-${++this.#purges}`;
      try {
        Deno.renameSync(this.#trash, old);
        Deno.mkdirSync(this.#trash, { mode: 0o700 });
      } catch {
        return;
      }
      this.#purging = this.#purging.then(() => Deno.remove(old, { recursive: true })).catch(
        () => {},
      );
    }
  }

  /** Closes the parent's stdin; true once it has ended (within its retire time). */
  async #ended(): Promise<boolean> {
    if (this.#dead) return true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), this.#retireMs);
    });
    // (not awaited: a write still under way to a parent that reads no more would hold it up)
    this.#writer.close().catch(() => {});
    try {
      return await Promise.race([this.exited.then(() => true, () => true), late]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Kills the parent and everything under it (its sandbox). */
  kill(): Promise<void> {
    if (this.#dead) return Promise.resolve();
    return killProcessTree(this.child.pid, { python: this.#python });
  }

  /**
   * Kills it and waits for the end; removes its directory. `idle`: it runs no task (it is
   * being replaced, reaped or closed after its last one), and where it is its sandbox's init
   * its stdin is closed instead: it ends by itself once it has cleaned up after that task,
   * and its sandbox with it. Killing walks /proc, which holds up Deno's event loop (13-19 ms
   * measured with tasks running) and so the tasks of other parents; it is still the way
   * if the parent has not ended within `retireMs` (see the constructor).
   */
  async destroy(idle = false): Promise<void> {
    clearTimeout(this.idleTimer);
    if (!(idle && this.#sandboxInit && await this.#ended())) await this.kill();
    await this.exited.catch(() => {});
    try {
      await this.#writer.close();
    } catch {
      // Pipe already closed.
    }
    await this.#stderr;
    await this.#purging;
    for (const file of this.#handles?.values() ?? []) file.close();
    this.#handles = undefined;
    await this.#cleanup?.().catch(() => {});
    for (const dir of [this.poolDir, this.ioDir]) {
      if (!dir) continue;
      try {
        await Deno.remove(dir, { recursive: true });
      } catch {
        // Gone.
      }
    }
  }
}

/**
 * Newline-separated lines from a byte stream, read into one reused buffer (BYOB where the
 * stream supports it). Only newly read bytes are searched for a newline and only complete
 * lines are decoded: the status line sits between a task's end and its result.
 */
export class LineReader {
  #buf = new Uint8Array(16384);
  /** Unconsumed bytes are #buf[#start, #end); #scan: first byte not yet searched. */
  #start = 0;
  #end = 0;
  #scan = 0;
  #eof = false;
  readonly #byob: ReadableStreamBYOBReader | undefined;
  readonly #reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  readonly #decoder = new TextDecoder();

  constructor(stream: ReadableStream<Uint8Array>) {
    try {
      this.#byob = stream.getReader({ mode: "byob" });
    } catch {
      this.#reader = stream.getReader();
    }
  }

  /** A complete line already buffered (without its newline), or undefined. */
  take(): string | undefined {
    const nl = this.#buf.subarray(this.#scan, this.#end).indexOf(10);
    if (nl < 0) {
      this.#scan = this.#end;
      return undefined;
    }
    const stop = this.#scan + nl;
    const line = this.#decoder.decode(this.#buf.subarray(this.#start, stop));
    this.#start = this.#scan = stop + 1;
    if (this.#start === this.#end) this.#start = this.#scan = this.#end = 0;
    return line;
  }

  /** The next line; undefined at the end of the stream (a partial last line is dropped). */
  async next(): Promise<string | undefined> {
    while (true) {
      const line = this.take();
      if (line !== undefined) return line;
      if (this.#eof) return undefined;
      await this.#fill();
    }
  }

  async #fill(): Promise<void> {
    if (this.#start > 0) {
      // Move the partial line to the front (rare: lines are short and read whole).
      this.#buf.copyWithin(0, this.#start, this.#end);
      this.#end -= this.#start;
      this.#scan -= this.#start;
      this.#start = 0;
    }
    if (this.#end === this.#buf.length) {
      const bigger = new Uint8Array(this.#buf.length * 2);
      bigger.set(this.#buf);
      this.#buf = bigger;
    }
    if (this.#byob) {
      const end = this.#end;
      let result: ReadableStreamReadResult<Uint8Array>;
      try {
        result = await this.#byob.read(this.#buf.subarray(end));
      } catch {
        // The buffer went with the failed read; nothing more will come.
        this.#buf = new Uint8Array(16);
        this.#start = this.#end = this.#scan = 0;
        this.#eof = true;
        return;
      }
      const { value, done } = result;
      if (value) {
        // The buffer was transferred to the read and comes back in `value`.
        this.#buf = new Uint8Array(value.buffer as ArrayBuffer);
        this.#end = end + value.length;
      }
      if (done) this.#eof = true;
      return;
    }
    let result: ReadableStreamReadResult<Uint8Array>;
    try {
      result = await this.#reader!.read();
    } catch {
      this.#eof = true;
      return;
    }
    const { value, done } = result;
    if (done) {
      this.#eof = true;
      return;
    }
    while (this.#end + value.length > this.#buf.length) {
      const bigger = new Uint8Array(this.#buf.length * 2);
      bigger.set(this.#buf.subarray(0, this.#end));
      this.#buf = bigger;
    }
    this.#buf.set(value, this.#end);
    this.#end += value.length;
  }

  /** Stops reading (the stream is cancelled). */
  cancel(): Promise<void> {
    return (this.#byob ?? this.#reader!).cancel().catch(() => {});
  }
}

/** Options of {@link WarmPool}. */
export interface WarmPoolOptions {
  /** Most parents alive at once (the engine's concurrency). */
  size: number;
  /** Idle parents are killed after this long; default 60 s. */
  idleMs?: number;
  /**
   * A parent is replaced after this many tasks; default 10000. Its successor starts in the
   * background while it goes on serving (the pool is one over its size meanwhile, for one
   * successor at a time), so no task waits for a parent to start. The start still takes
   * CPU from the tasks running meanwhile (0.1-0.14 s here: tasks around it took up to
   * 4x as long); a parent's memory stays the same from task to task (measured over 8000).
   */
  maxTasksPerWorker?: number;
  /** How long an idle parent let go may take to end before it is killed; default RETIRE_MS. */
  retireMs?: number;
  /** Prepares the spawn of one parent (creates its pool directory). */
  spawn: () => Promise<WarmSpawn>;
}

/** Warm parents, handed out one task at a time. */
export class WarmPool {
  readonly #size: number;
  readonly #idleMs: number;
  readonly #maxTasks: number;
  readonly #retireMs: number;
  readonly #spawn: () => Promise<WarmSpawn>;
  readonly #idle: WarmWorker[] = [];
  readonly #all = new Set<WarmWorker>();
  #starting = 0;
  #closed = false;
  /** Successors being started (see {@link release}); close() waits for them. */
  readonly #succeeding = new Set<Promise<void>>();

  constructor(options: WarmPoolOptions) {
    this.#size = Math.max(0, Math.floor(options.size));
    this.#idleMs = options.idleMs ?? 60_000;
    this.#maxTasks = options.maxTasksPerWorker ?? 10_000;
    this.#retireMs = options.retireMs ?? RETIRE_MS;
    this.#spawn = options.spawn;
  }

  /** The latest parent's measure of pages taken ahead (undefined where it made none). */
  pagesAhead?: PagesAhead;

  /** Parents alive (busy or idle). */
  get live(): number {
    return this.#all.size;
  }

  /** Parents waiting for work. */
  get idle(): number {
    return this.#idle.length;
  }

  /**
   * An idle parent, or a new one when the pool is below its size; undefined when every
   * parent is busy (the caller then runs the task cold).
   */
  async acquire(): Promise<WarmWorker | undefined> {
    while (this.#idle.length > 0) {
      const worker = this.#idle.pop()!;
      // Its idle timer stays armed: when it fires on a busy worker, it just goes away.
      // (Possibly still cleaning up after its last task: the job is sent all the same, see
      // WarmWorker.run.)
      if (!worker.dead) return worker;
      void this.discard(worker);
    }
    if (this.#closed || this.#all.size + this.#starting >= this.#size) return undefined;
    return await this.#start();
  }

  /** Starts parents until `count` are idle (bounded by the size); for warming up ahead. */
  async prewarm(count = this.#size): Promise<void> {
    const want = Math.min(count, this.#size) - this.#idle.length;
    const started = await Promise.allSettled(
      Array.from({ length: Math.max(0, want) }, () => this.#start()),
    );
    for (const s of started) {
      if (s.status === "fulfilled" && s.value) this.release(s.value);
      if (s.status === "rejected") throw s.reason;
    }
  }

  /** Starts a parent, within the size unless `beyondSize` (a successor). */
  async #start(beyondSize = false): Promise<WarmWorker | undefined> {
    if (!beyondSize && this.#all.size + this.#starting >= this.#size) return undefined;
    this.#starting++;
    let worker: WarmWorker | undefined;
    try {
      const spawn = await this.#spawn();
      worker = new WarmWorker(spawn, this.#retireMs);
      this.#all.add(worker);
      await worker.ready();
      this.pagesAhead = worker.pagesAhead;
      return worker;
    } catch (e) {
      if (worker) await this.discard(worker);
      throw e;
    } finally {
      this.#starting--;
    }
  }

  /** Returns a healthy parent to the pool after a task. */
  release(worker: WarmWorker): void {
    // One successor at a time (parents used alike reach their share together): the others
    // serve on and try again at their next release.
    if (
      worker.tasks >= this.#maxTasks && !worker.succeeding && !this.#closed &&
      this.#all.size + this.#starting <= this.#size
    ) {
      this.#succeed(worker);
    }
    if (this.#closed || worker.dead || worker.replaced) {
      void this.discard(worker, true);
      return;
    }
    worker.idleSince = performance.now();
    this.#idle.push(worker);
    // One timer per idle stretch, not one per task (a timer created and cleared per task was
    // ~7% of the Deno side's CPU per warm task).
    if (worker.idleTimer === undefined) this.#armIdle(worker, this.#idleMs);
  }

  /**
   * Starts the successor of a parent that has served its share of tasks; once it is ready,
   * it takes the old parent's place (the old one goes now if idle, else when its task ends).
   */
  #succeed(old: WarmWorker): void {
    old.succeeding = true;
    const done = (async () => {
      let next: WarmWorker | undefined;
      try {
        next = await this.#start(true);
      } catch {
        // The old parent goes all the same; the next acquire starts one and says why not.
      }
      old.replaced = true;
      const gone = this.#idle.includes(old) ? this.discard(old, true) : undefined;
      if (next && this.#closed) await this.discard(next, true);
      else if (next) this.release(next);
      await gone;
    })().finally(() => this.#succeeding.delete(done));
    this.#succeeding.add(done);
  }

  #armIdle(worker: WarmWorker, ms: number): void {
    worker.idleTimer = setTimeout(() => {
      worker.idleTimer = undefined;
      const i = this.#idle.indexOf(worker);
      if (i < 0) return; // busy (release() arms it again) or gone
      const left = worker.idleSince + this.#idleMs - performance.now();
      if (left > 0) {
        this.#armIdle(worker, left); // used since this timer was armed
        return;
      }
      this.#idle.splice(i, 1);
      void this.discard(worker, true);
    }, ms);
    Deno.unrefTimer(worker.idleTimer as unknown as number);
  }

  /**
   * Kills a parent (after an abort or a failure) and forgets it. `idle`: it runs no task, and
   * may end by itself (see {@link WarmWorker.destroy}).
   */
  async discard(worker: WarmWorker, idle = false): Promise<void> {
    this.#forget(worker);
    await worker.destroy(idle);
  }

  #forget(worker: WarmWorker): void {
    this.#all.delete(worker);
    const i = this.#idle.indexOf(worker);
    if (i >= 0) this.#idle.splice(i, 1);
  }

  /** Kills every parent. */
  async close(): Promise<void> {
    this.#closed = true;
    // A successor still starting discards itself once ready (the pool is closed).
    await Promise.all([...this.#succeeding]);
    const all = [...this.#all];
    const idle = new Set(this.#idle);
    this.#idle.length = 0;
    this.#all.clear();
    await Promise.all(all.map((w) => w.destroy(idle.has(w))));
  }
}
