/**
 * The sandbox's seccomp filter, run on a small classic-BPF interpreter over made-up system
 * calls, for every ABI of both architectures (the kernel here runs only x86_64's and i386's;
 * the escape suite checks those for real).
 */

import { assertEquals } from "../../assert.ts";
import { sandboxFilter } from "../../../src/providers/python/seccomp.ts";

const ALLOW = "allow";
const errno = (e: number) => `errno ${e}`;
const EPERM = errno(1);
const ENOSYS = errno(38);
const EOPNOTSUPP = errno(95);

/** Runs the program on struct seccomp_data (nr, arch, args as [low, high] 32-bit words). */
function run(prog: Uint8Array, nr: number, arch: number, args: [number, number][] = []): string {
  const view = new DataView(prog.buffer, prog.byteOffset, prog.byteLength);
  const data = new DataView(new ArrayBuffer(64));
  data.setUint32(0, nr, true);
  data.setUint32(4, arch, true);
  args.forEach(([low, high], i) => {
    data.setUint32(16 + 8 * i, low >>> 0, true);
    data.setUint32(20 + 8 * i, high >>> 0, true);
  });
  let a = 0;
  for (let pc = 0, steps = 0; pc < prog.length / 8 && steps < 1000; pc++, steps++) {
    const code = view.getUint16(pc * 8, true);
    const jt = view.getUint8(pc * 8 + 2);
    const jf = view.getUint8(pc * 8 + 3);
    const k = view.getUint32(pc * 8 + 4, true);
    switch (code) {
      case 0x20: // ld [k]
        a = data.getUint32(k, true);
        break;
      case 0x54: // and #k
        a = (a & k) >>> 0;
        break;
      case 0x15: // jeq #k
        pc += a === k ? jt : jf;
        break;
      case 0x45: // jset #k
        pc += (a & k) !== 0 ? jt : jf;
        break;
      case 0x06: // ret #k
        if (k === 0x7fff0000) return ALLOW;
        if ((k & 0xffff0000) === 0x00050000) return errno(k & 0xffff);
        return `ret ${k.toString(16)}`;
      default:
        return `bad instruction ${code.toString(16)}`;
    }
  }
  return "ran off the end";
}

/** [arch, audit, {call: nr}] for each ABI. */
const ABIS: [string, number, Record<string, number>][] = [
  ["x86_64", 0xc000003e, {
    read: 0,
    keyctl: 250,
    fallocate: 285,
    clone: 56,
    unshare: 272,
    memfd: 319,
    ptrace: 101,
    vmRead: 310,
    vmWrite: 311,
    perf: 298,
    robust: 274,
    movePages: 279,
    kcmp: 312,
    byHandle: 304,
    setpriority: 141,
    setaffinity: 203,
    getpriority: 140,
  }],
  ["x86_64", 0x40000003, {
    read: 3,
    keyctl: 288,
    fallocate: 324,
    clone: 120,
    unshare: 310,
    memfd: 356,
    ptrace: 26,
    vmRead: 347,
    vmWrite: 348,
    perf: 336,
    robust: 312,
    movePages: 317,
    kcmp: 349,
    byHandle: 342,
    setpriority: 97,
    setaffinity: 241,
    getpriority: 96,
  }],
  ["aarch64", 0xc00000b7, {
    read: 63,
    keyctl: 219,
    fallocate: 47,
    clone: 220,
    unshare: 97,
    memfd: 279,
    ptrace: 117,
    vmRead: 270,
    vmWrite: 271,
    perf: 241,
    robust: 100,
    movePages: 239,
    kcmp: 272,
    byHandle: 265,
    setpriority: 140,
    setaffinity: 122,
    getpriority: 141,
  }],
  ["aarch64", 0x40000028, {
    read: 3,
    keyctl: 311,
    fallocate: 352,
    clone: 120,
    unshare: 337,
    memfd: 385,
    ptrace: 26,
    vmRead: 376,
    vmWrite: 377,
    perf: 364,
    robust: 339,
    movePages: 344,
    kcmp: 378,
    byHandle: 371,
    setpriority: 97,
    setaffinity: 241,
    getpriority: 96,
  }],
];

for (const [arch, audit, nr] of ABIS) {
  Deno.test(`seccomp filter (${arch}, ABI ${audit.toString(16)}): what it refuses and what it lets through`, () => {
    const prog = sandboxFilter(arch)!;
    const call = (n: number, ...args: [number, number][]) => run(prog, n, audit, args);
    const other: [number, number] = [1234, 0];
    const none: [number, number] = [0, 0];
    const got = {
      read: call(nr.read!),
      getpriority: call(nr.getpriority!, [2, 0], other),
      keyctl: call(nr.keyctl!),
      fallocate: call(nr.fallocate!),
      ioUring: call(425),
      clone3: call(435),
      memfd: call(nr.memfd!),
      cloneNewUser: call(nr.clone!, [0x10000000 | 17, 0]),
      clone: call(nr.clone!, [0x01200011, 0]),
      unshareNewUser: call(nr.unshare!, [0x10000000, 0]),
      unshare: call(nr.unshare!, [0x00020000, 0]),
      // not refused: a task's own threads and children are other processes too (the
      // warm pool reads its processes' settings instead)
      setaffinityOther: call(nr.setaffinity!, other),
      prioUser: call(nr.setpriority!, [2, 0], none, [19, 0]),
      // PID 1, the sandbox's init, is out of reach; any other process as before
      ptraceInit: call(nr.ptrace!, [16, 0], [1, 0]),
      seizeInit: call(nr.ptrace!, [0x4206, 0], [1, 0]),
      ptraceInitHigh: call(nr.ptrace!, [16, 0], [1, 1]), // (the kernel takes the low 32 bits)
      ptraceOther: call(nr.ptrace!, [16, 0], other),
      traceMe: call(nr.ptrace!, none, none),
      vmReadInit: call(nr.vmRead!, [1, 0]),
      vmWriteInit: call(nr.vmWrite!, [1, 0]),
      vmReadOther: call(nr.vmRead!, other),
      perfInit: call(nr.perf!, other, [1, 0]),
      perfSelf: call(nr.perf!, other, none),
      pidfdInit: call(434, [1, 0]),
      pidfdOther: call(434, other),
      // a pidfd had otherwise (a pidfs handle) reaches nothing: whose it is cannot be read
      pidfdGetfd: call(438, [3, 0], [1, 0], none),
      byHandle: call(nr.byHandle!, [-10002, -1], other, none),
      robustInit: call(nr.robust!, [1, 0], other, other),
      robustSelf: call(nr.robust!, none, other, other),
      movePagesInit: call(nr.movePages!, [1, 0], none),
      kcmpInitFirst: call(nr.kcmp!, [1, 0], other, none),
      kcmpInitSecond: call(nr.kcmp!, other, [1, 0], none),
      kcmpOther: call(nr.kcmp!, other, other, none),
    };
    assertEquals(got, {
      read: ALLOW,
      getpriority: ALLOW,
      keyctl: EPERM,
      fallocate: EOPNOTSUPP,
      ioUring: EPERM,
      clone3: ENOSYS,
      memfd: ENOSYS,
      cloneNewUser: EPERM,
      clone: ALLOW,
      unshareNewUser: EPERM,
      unshare: ALLOW,
      setaffinityOther: ALLOW,
      prioUser: ALLOW,
      ptraceInit: EPERM,
      seizeInit: EPERM,
      ptraceInitHigh: EPERM,
      ptraceOther: ALLOW,
      traceMe: ALLOW,
      vmReadInit: EPERM,
      vmWriteInit: EPERM,
      vmReadOther: ALLOW,
      perfInit: EPERM,
      perfSelf: ALLOW,
      pidfdInit: EPERM,
      pidfdOther: ALLOW,
      pidfdGetfd: EPERM,
      byHandle: EPERM,
      robustInit: EPERM,
      robustSelf: ALLOW,
      movePagesInit: EPERM,
      kcmpInitFirst: EPERM,
      kcmpInitSecond: EPERM,
      kcmpOther: ALLOW,
    });
  });
}

Deno.test("seccomp filter: an ABI not named is refused every call; x32's numbers are x86_64's", () => {
  const prog = sandboxFilter("x86_64")!;
  assertEquals(run(prog, 0, 0xc00000b7), EPERM, "aarch64's audit arch on x86_64");
  assertEquals(run(prog, 250 | 0x40000000, 0xc000003e), EPERM, "keyctl through x32");
  assertEquals(run(prog, 1 | 0x40000000, 0xc000003e), ALLOW, "write through x32");
  // x32's own ptrace and process_vm_readv numbers
  assertEquals(run(prog, 521 | 0x40000000, 0xc000003e, [[16, 0], [1, 0]]), EPERM, "x32 ptrace");
  assertEquals(run(prog, 539 | 0x40000000, 0xc000003e, [[1, 0]]), EPERM, "x32 vm_readv");
  assertEquals(run(prog, 531 | 0x40000000, 0xc000003e, [[1, 0]]), EPERM, "x32 get_robust_list");
  assertEquals(run(prog, 521 | 0x40000000, 0xc000003e, [[16, 0], [7, 0]]), ALLOW, "x32 ptrace");
  assertEquals(sandboxFilter("riscv64"), undefined);
});
