/** Paths a task's sandbox may not be granted (its own, or the host's processes and devices). @module */

import { posix } from "node:path";

/** The sandbox's own root, /gleitzeit, /proc, /dev and /sys, or anything below the last four. */
export function isReservedSandboxPath(path: string): boolean {
  const p = posix.normalize(path).replace(/(.)\/+$/, "$1");
  return p === "/" ||
    ["/gleitzeit", "/proc", "/dev", "/sys"].some((top) => p === top || p.startsWith(`${top}/`));
}
