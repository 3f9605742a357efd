/**
 * The seccomp filter of sandboxed Python tasks: the kernel keyring calls (`add_key`,
 * `request_key`, `keyctl`) fail with EPERM, as in Docker's default profile. Keyrings are not
 * namespaced: without this a task could read or change the session keyring Gleitzeit was
 * started with, and leave keys in the sandbox user's own keyring for later tasks.
 *
 * Classic BPF over `struct seccomp_data` (nr at offset 0, arch at 4); other architectures
 * than x86_64 and aarch64 get no filter. bwrap loads it for cold tasks (`--seccomp`); a warm
 * parent installs it on itself, and its children inherit it.
 *
 * @module
 */

const AUDIT_ARCH: Record<string, number> = { x86_64: 0xc000003e, aarch64: 0xc00000b7 };
/** add_key, request_key, keyctl. */
const KEYRING_CALLS: Record<string, number[]> = {
  x86_64: [248, 249, 250],
  aarch64: [217, 218, 219],
};

const LD_W_ABS = 0x20;
const JEQ_K = 0x15;
const AND_K = 0x54;
const RET_K = 0x06;
const RET_ALLOW = 0x7fff0000;
const RET_EPERM = 0x00050000 | 1;
/** x86_64's x32 ABI marks its system call numbers with this bit: the same calls. */
const X32_BIT = 0x40000000;

/** The filter program (8 bytes per instruction), or undefined on other architectures. */
export function keyringFilter(arch: string = Deno.build.arch): Uint8Array | undefined {
  const audit = AUDIT_ARCH[arch];
  const calls = KEYRING_CALLS[arch];
  if (audit === undefined || !calls) return undefined;
  const n = calls.length;
  const prog: [number, number, number, number][] = [
    [LD_W_ABS, 0, 0, 4], // arch
    [JEQ_K, 0, n + 2, audit], // another ABI: allow
    [LD_W_ABS, 0, 0, 0], // nr
    [AND_K, 0, 0, ~X32_BIT >>> 0],
    ...calls.map((nr, i): [number, number, number, number] => [JEQ_K, n - i, 0, nr]),
    [RET_K, 0, 0, RET_ALLOW],
    [RET_K, 0, 0, RET_EPERM],
  ];
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
