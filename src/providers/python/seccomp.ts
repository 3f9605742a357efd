/**
 * The seccomp filter of sandboxed Python tasks:
 * - the kernel keyring calls (`add_key`, `request_key`, `keyctl`) fail with EPERM, as in
 *   Docker's default profile. Keyrings are not namespaced: without this a task could read or
 *   change the session keyring Gleitzeit was started with, and leave keys in the sandbox
 *   user's own keyring for later tasks;
 * - `fallocate` fails with EOPNOTSUPP (as on a file system without it): with
 *   FALLOC_FL_KEEP_SIZE it reserves disk blocks without changing the file's size, past the
 *   file-size limit, so a task could fill the disk through its result file. `posix_fallocate`
 *   falls back to writing, which the limit caps;
 * - io_uring (`io_uring_setup`, `_enter`, `_register`) fails with EPERM, as in Docker's
 *   profile: its requests (a fallocate among them) are not system calls this filter sees;
 * - memory outside every limit fails with ENOSYS, as on a kernel built without it: anonymous
 *   files (`memfd_create`; each as large as the file-size limit, and no address space used)
 *   and System V shared memory, semaphores and message queues (their namespace's defaults
 *   allow many GB). POSIX shared memory and semaphores (what `multiprocessing` uses) live on
 *   the sandbox's capped /dev/shm instead;
 * - a new user namespace (`clone` or `unshare` with CLONE_NEWUSER) fails with EPERM: in one,
 *   a task could mount a tmpfs of its own, past the caps on the sandbox's (and every other
 *   namespace needs a capability the task does not have). `clone3`, whose flags a filter
 *   cannot read, fails with ENOSYS, as in Docker's profile: the C library then uses `clone`;
 * - reaching PID 1 (the sandbox's init: bwrap's reaper, or a warm parent) fails with EPERM:
 *   `ptrace`, `process_vm_readv` and `_writev`, `perf_event_open` and `pidfd_open` (the way to
 *   `process_madvise`), and the calls that read its memory's layout (`kcmp`,
 *   `get_robust_list`, `move_pages`, `migrate_pages`), with pid 1. Without root the init is
 *   the task's own user's: a task could otherwise stop it (which holds its run), make it run
 *   code or allocate beyond the task's limits. Its /proc directory is covered too (see
 *   bubblewrap.ts); a signal from inside reaches an init only where it has a handler, which
 *   neither has. A task's own processes are never pid 1. A pidfd can also be had without
 *   `pidfd_open`, so `pidfd_getfd` (whose pidfd a filter cannot read) fails with EPERM for
 *   every process, and so does `open_by_handle_at` (which needs CAP_DAC_READ_SEARCH, except
 *   for a pidfs handle: from Linux 6.14 on, a pidfd of any process in sight, pid 1's too);
 *
 * (Changing another process's limits, priority, scheduling, CPUs or I/O priority is not
 * refused here: a filter cannot tell a task's own threads and children from other processes,
 * and refusing them all breaks common code: OpenMP runtimes binding threads, psutil naming
 * its own pid. Where tasks are the warm pool's own user, the pool reads those settings
 * instead: see the runner's _settings.)
 *
 * Classic BPF over `struct seccomp_data` (nr at offset 0, arch at 4, argument i's low 32
 * bits at 16 + 8i, little-endian), for the native ABI and the
 * 32-bit one a process can also use (i386 through `int 0x80` on x86_64, AArch32 on
 * aarch64); any other ABI gets EPERM for every call. Hosts other than x86_64 and aarch64 get
 * no filter. bwrap loads it for cold tasks (`--seccomp`); a warm parent installs it on
 * itself, and its children inherit it.
 *
 * @module
 */

/** One ABI's system call numbers. io_uring's calls and clone3 have the same numbers in all. */
interface Abi {
  audit: number;
  keyring: number[]; // add_key, request_key, keyctl
  fallocate: number;
  newUser: number[]; // clone, unshare
  unlimited: number[]; // memfd_create, shmget, semget, msgget (, i386's ipc multiplexer)
  /**
   * Calls with a pid in their first argument: process_vm_readv, process_vm_writev,
   * get_robust_list, move_pages, migrate_pages.
   */
  pidFirst: number[];
  /** Calls with a pid in their second: ptrace, perf_event_open. */
  pidSecond: number[];
  kcmp: number; // pids in the first two
  byHandle: number; // open_by_handle_at
}

/** Per Deno.build.arch, each ABI a process there can use (x86_64 also runs i386 code
 * through int 0x80; aarch64 runs AArch32). */
const ABIS: Record<string, Abi[]> = {
  x86_64: [{
    audit: 0xc000003e,
    keyring: [248, 249, 250],
    fallocate: 285,
    newUser: [56, 272],
    unlimited: [319, 29, 64, 68],
    // (and x32's own numbers of process_vm_readv, _writev, get_robust_list, move_pages and
    // ptrace: 539, 540, 531, 533, 521)
    pidFirst: [310, 311, 274, 279, 256, 539, 540, 531, 533],
    pidSecond: [101, 298, 521],
    kcmp: 312,
    byHandle: 304,
  }, {
    audit: 0x40000003,
    keyring: [286, 287, 288],
    fallocate: 324,
    newUser: [120, 310],
    unlimited: [356, 395, 393, 399, 117],
    pidFirst: [347, 348, 312, 317, 294],
    pidSecond: [26, 336],
    kcmp: 349,
    byHandle: 342,
  }],
  aarch64: [{
    audit: 0xc00000b7,
    keyring: [217, 218, 219],
    fallocate: 47,
    newUser: [220, 97],
    unlimited: [279, 194, 190, 186],
    pidFirst: [270, 271, 100, 239, 238],
    pidSecond: [117, 241],
    kcmp: 272,
    byHandle: 265,
  }, {
    audit: 0x40000028,
    keyring: [309, 310, 311],
    fallocate: 352,
    newUser: [120, 337],
    unlimited: [385, 307, 299, 303],
    pidFirst: [376, 377, 339, 344, 400],
    pidSecond: [26, 364],
    kcmp: 378,
    byHandle: 371,
  }],
};
const IO_URING = [425, 426, 427]; // io_uring_setup, io_uring_enter, io_uring_register
const CLONE3 = 435;
const PIDFD_OPEN = 434; // the same in all ABIs too (a pid first)
const PIDFD_GETFD = 438; // (all ABIs)

const LD_W_ABS = 0x20;
const JEQ_K = 0x15;
const JSET_K = 0x45;
const AND_K = 0x54;
const RET_K = 0x06;
const RET_ALLOW = 0x7fff0000;
const RET_ERRNO = 0x00050000;
const EPERM = 1;
const ENOSYS = 38;
const EOPNOTSUPP = 95;
const CLONE_NEWUSER = 0x10000000;
/** x86_64's x32 ABI marks its system call numbers with this bit: the same calls. */
const X32_BIT = 0x40000000;

/** Offsets in struct seccomp_data. */
const NR = 0;
const ARCH = 4;
const arg = (i: number) => 16 + 8 * i;

/** A jump target: a label of the program, or the next instruction (undefined). */
type Target = string | undefined;
/** One instruction: [code, jump-if-true, jump-if-false, k], with labels for the jumps. */
type Insn = [number, Target, Target, number];

/** A tiny assembler: instructions and labels, jumps resolved once all are in place. */
class Program {
  readonly insns: Insn[] = [];
  readonly labels = new Map<string, number>();
  label(name: string): void {
    if (this.labels.has(name)) throw new Error(`seccomp: label ${name} twice`);
    this.labels.set(name, this.insns.length);
  }
  load(offset: number): void {
    this.insns.push([LD_W_ABS, undefined, undefined, offset]);
  }
  and(k: number): void {
    this.insns.push([AND_K, undefined, undefined, k]);
  }
  /** if A == k goto yes else goto no (undefined: the next instruction). */
  jeq(k: number, yes: Target, no?: Target): void {
    this.insns.push([JEQ_K, yes, no, k]);
  }
  /** if A & k goto yes else goto no. */
  jset(k: number, yes: Target, no?: Target): void {
    this.insns.push([JSET_K, yes, no, k]);
  }
  ret(k: number): void {
    this.insns.push([RET_K, undefined, undefined, k]);
  }
  bytes(): Uint8Array {
    const out = new Uint8Array(this.insns.length * 8);
    const view = new DataView(out.buffer);
    const offset = (at: number, to: Target) => {
      if (to === undefined) return 0;
      const target = this.labels.get(to);
      if (target === undefined) throw new Error(`seccomp: no label ${to}`);
      const jump = target - at - 1;
      if (jump < 0 || jump > 255) throw new Error(`seccomp: jump to ${to} out of range`);
      return jump;
    };
    this.insns.forEach(([code, jt, jf, k], i) => {
      view.setUint16(i * 8, code, true);
      view.setUint8(i * 8 + 2, offset(i, jt));
      view.setUint8(i * 8 + 3, offset(i, jf));
      view.setUint32(i * 8 + 4, k >>> 0, true);
    });
    return out;
  }
}

/** The filter program (8 bytes per instruction), or undefined on other architectures. */
export function sandboxFilter(arch: string = Deno.build.arch): Uint8Array | undefined {
  const abis = ABIS[arch];
  if (!abis) return undefined;
  const p = new Program();
  const fail = (errno: number) => `errno${errno}`;
  abis.forEach((abi, n) => {
    const at = (name: string) => `${name}${n}`;
    p.label(at("abi"));
    p.load(ARCH);
    p.jeq(abi.audit, undefined, n + 1 < abis.length ? `abi${n + 1}` : fail(EPERM));
    p.load(NR);
    p.and(~X32_BIT >>> 0);
    const rule = (nrs: number[], to: string) => nrs.forEach((nr) => p.jeq(nr, to));
    rule(abi.keyring, fail(EPERM));
    rule([abi.fallocate], fail(EOPNOTSUPP));
    rule(IO_URING, fail(EPERM));
    rule([CLONE3], fail(ENOSYS));
    rule(abi.unlimited, fail(ENOSYS));
    rule(abi.newUser, at("newUser"));
    rule([abi.byHandle, PIDFD_GETFD], fail(EPERM));
    rule([...abi.pidFirst, PIDFD_OPEN], at("pidFirst"));
    rule(abi.pidSecond, at("pidSecond"));
    rule([abi.kcmp], at("pidEither"));
    p.ret(RET_ALLOW);
    // clone, unshare: EPERM with CLONE_NEWUSER in the first argument
    p.label(at("newUser"));
    p.load(arg(0));
    p.jset(CLONE_NEWUSER, fail(EPERM), "allow");
    // EPERM for pid 1 (a pid_t: the low 32 bits are what the kernel takes)
    p.label(at("pidFirst"));
    p.load(arg(0));
    p.jeq(1, fail(EPERM), "allow");
    p.label(at("pidEither"));
    p.load(arg(0));
    p.jeq(1, fail(EPERM));
    p.label(at("pidSecond"));
    p.load(arg(1));
    p.jeq(1, fail(EPERM), "allow");
  });
  // the returns (an unknown ABI gets EPERM)
  p.label("allow");
  p.ret(RET_ALLOW);
  for (const errno of [EPERM, EOPNOTSUPP, ENOSYS]) {
    p.label(fail(errno));
    p.ret(RET_ERRNO | errno);
  }
  return p.bytes();
}
