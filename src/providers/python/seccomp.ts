/**
 * The seccomp filter of sandboxed Python tasks:
 * - the kernel keyring calls (`add_key`, `request_key`, `keyctl`) fail with EPERM, as in
 *   Docker's default profile. Keyrings are not namespaced: without this a task could read or
 *   change the session keyring Gleitzeit was started with, and leave keys in the sandbox
 *   user's own keyring for later tasks;
 * - `fallocate` fails with EOPNOTSUPP (as on a file system without it): with
 *   FALLOC_FL_KEEP_SIZE it reserves disk blocks without changing the file's size, past the
 *   file-size limit, so a task could fill the disk through its result file. `posix_fallocate`
 *   falls back to writing, which the limit caps.
 *
 * Classic BPF over `struct seccomp_data` (nr at offset 0, arch at 4), for the native ABI and
 * the 32-bit one a process can also use (i386 through `int 0x80` on x86_64, AArch32 on
 * aarch64); any other ABI gets EPERM for every call. Hosts other than x86_64 and aarch64
 * get no filter. bwrap loads it for cold tasks (`--seccomp`); a warm parent installs it on
 * itself, and its children inherit it.
 *
 * @module
 */

/** Per Deno.build.arch, for each ABI a process there can use (x86_64 also runs i386 code
 * through int 0x80; aarch64 runs AArch32): [audit arch, [add_key, request_key, keyctl],
 * fallocate]. */
const ABIS: Record<string, [number, number[], number][]> = {
  x86_64: [[0xc000003e, [248, 249, 250], 285], [0x40000003, [286, 287, 288], 324]],
  aarch64: [[0xc00000b7, [217, 218, 219], 47], [0x40000028, [309, 310, 311], 352]],
};

const LD_W_ABS = 0x20;
const JEQ_K = 0x15;
const AND_K = 0x54;
const RET_K = 0x06;
const RET_ALLOW = 0x7fff0000;
const RET_EPERM = 0x00050000 | 1;
const RET_EOPNOTSUPP = 0x00050000 | 95;
/** x86_64's x32 ABI marks its system call numbers with this bit: the same calls. */
const X32_BIT = 0x40000000;

/** The filter program (8 bytes per instruction), or undefined on other architectures. */
export function sandboxFilter(arch: string = Deno.build.arch): Uint8Array | undefined {
  const abis = ABIS[arch];
  if (!abis) return undefined;
  type Insn = [number, number, number, number];
  const prog: Insn[] = [[LD_W_ABS, 0, 0, 4]]; // arch
  // Per ABI: "arch is it" (else skip this block), nr, and a jump per filtered call to its
  // return: EPERM (keyring calls) or EOPNOTSUPP (fallocate).
  const blocks = abis.map(([audit, keyring, fallocate]) => {
    const body: Insn[] = [[LD_W_ABS, 0, 0, 0], [AND_K, 0, 0, ~X32_BIT >>> 0]];
    const to: number[] = []; // per body instruction: the return it jumps to (0, 1)
    for (const [nr, ret] of [...keyring.map((nr) => [nr, 0]), [fallocate, 1]]) {
      to[body.length] = ret!;
      body.push([JEQ_K, 0, 0, nr!]);
    }
    body.push([RET_K, 0, 0, RET_ALLOW]);
    return { audit, body, to };
  });
  // Layout: [ld arch] then for each ABI [jeq arch, jf -> next block][body...], then
  // [ret EPERM] for an unknown ABI, which is also where the keyring calls jump, and
  // [ret EOPNOTSUPP].
  const eperm = 1 + blocks.reduce((n, b) => n + 1 + b.body.length, 0);
  for (const { audit, body, to } of blocks) {
    prog.push([JEQ_K, 0, body.length, audit]);
    const start = prog.length;
    body.forEach((insn, i) => {
      if (insn[0] === JEQ_K) insn[1] = eperm + to[i]! - (start + i) - 1;
      prog.push(insn);
    });
  }
  prog.push([RET_K, 0, 0, RET_EPERM], [RET_K, 0, 0, RET_EOPNOTSUPP]);
  if (prog.length !== eperm + 2) throw new Error("seccomp: bad program layout");
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
