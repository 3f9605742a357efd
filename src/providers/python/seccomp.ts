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
 *   cannot read, fails with ENOSYS, as in Docker's profile: the C library then uses `clone`.
 *
 * Classic BPF over `struct seccomp_data` (nr at offset 0, arch at 4, the first argument's
 * low 32 bits at 16), for the native ABI and the 32-bit one a process can also use (i386
 * through `int 0x80` on x86_64, AArch32 on aarch64); any other ABI gets EPERM for every call.
 * Hosts other than x86_64 and aarch64 get no filter. bwrap loads it for cold tasks
 * (`--seccomp`); a warm parent installs it on itself, and its children inherit it.
 *
 * @module
 */

/** One ABI's numbers: [audit arch, [add_key, request_key, keyctl], fallocate, [clone,
 * unshare], [memfd_create, shmget, semget, msgget (, i386's ipc multiplexer)]]. io_uring's
 * calls and clone3 have the same numbers in all of them. */
type Abi = [number, number[], number, number[], number[]];

/** Per Deno.build.arch, each ABI a process there can use (x86_64 also runs i386 code
 * through int 0x80; aarch64 runs AArch32). */
const ABIS: Record<string, Abi[]> = {
  x86_64: [
    [0xc000003e, [248, 249, 250], 285, [56, 272], [319, 29, 64, 68]],
    [0x40000003, [286, 287, 288], 324, [120, 310], [356, 395, 393, 399, 117]],
  ],
  aarch64: [
    [0xc00000b7, [217, 218, 219], 47, [220, 97], [279, 194, 190, 186]],
    [0x40000028, [309, 310, 311], 352, [120, 337], [385, 307, 299, 303]],
  ],
};
const IO_URING = [425, 426, 427]; // io_uring_setup, io_uring_enter, io_uring_register
const CLONE3 = 435;

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

/** The returns every block jumps to, at the end of the program (EPERM first: an unknown
 * ABI falls through to it). */
const RETURNS = [EPERM, EOPNOTSUPP, ENOSYS];

type Insn = [number, number, number, number];
/** An instruction whose jump-if-true goes to a return (by errno) or the argument check. */
type Draft = { insn: Insn; to?: number | "newUser" };

/** The filter program (8 bytes per instruction), or undefined on other architectures. */
export function sandboxFilter(arch: string = Deno.build.arch): Uint8Array | undefined {
  const abis = ABIS[arch];
  if (!abis) return undefined;
  const blocks = abis.map(([audit, keyring, fallocate, newUser, unlimited]) => {
    const body: Draft[] = [
      { insn: [LD_W_ABS, 0, 0, 0] }, // nr
      { insn: [AND_K, 0, 0, ~X32_BIT >>> 0] },
    ];
    const rule = (nr: number, to: number | "newUser") => body.push({ insn: [JEQ_K, 0, 0, nr], to });
    keyring.forEach((nr) => rule(nr, EPERM));
    rule(fallocate, EOPNOTSUPP);
    IO_URING.forEach((nr) => rule(nr, EPERM));
    rule(CLONE3, ENOSYS);
    unlimited.forEach((nr) => rule(nr, ENOSYS));
    newUser.forEach((nr) => rule(nr, "newUser"));
    body.push({ insn: [RET_K, 0, 0, RET_ALLOW] });
    // clone/unshare: EPERM with CLONE_NEWUSER in the first argument, else allowed
    const check = body.length;
    body.push({ insn: [LD_W_ABS, 0, 0, 16] });
    body.push({ insn: [JSET_K, 0, 0, CLONE_NEWUSER], to: EPERM });
    body.push({ insn: [RET_K, 0, 0, RET_ALLOW] });
    return { audit, body, check };
  });
  // Layout: [ld arch] then for each ABI [jeq arch, jf -> next block][body...], then the
  // returns.
  const prog: Insn[] = [[LD_W_ABS, 0, 0, 4]]; // arch
  const returnsAt = 1 + blocks.reduce((n, b) => n + 1 + b.body.length, 0);
  for (const { audit, body, check } of blocks) {
    prog.push([JEQ_K, 0, body.length, audit]);
    const start = prog.length;
    body.forEach(({ insn, to }, i) => {
      if (to !== undefined) {
        const target = to === "newUser" ? start + check : returnsAt + RETURNS.indexOf(to);
        insn[1] = target - (start + i) - 1;
        if (insn[1] < 0 || insn[1] > 255) throw new Error("seccomp: jump out of range");
      }
      prog.push(insn);
    });
  }
  for (const errno of RETURNS) prog.push([RET_K, 0, 0, RET_ERRNO | errno]);
  if (prog.length !== returnsAt + RETURNS.length) throw new Error("seccomp: bad program layout");
  const out = new Uint8Array(prog.length * 8);
  const view = new DataView(out.buffer);
  prog.forEach(([code, jt, jf, k], i) => {
    view.setUint16(i * 8, code, true);
    view.setUint8(i * 8 + 2, jt);
    view.setUint8(i * 8 + 3, jf);
    view.setUint32(i * 8 + 4, k, true);
  });
  return out;
}
