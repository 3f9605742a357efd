/**
 * Finds the real Python interpreter once per process. `python3` on a developer machine is
 * often a shim (pyenv, asdf) that costs tens of milliseconds per start; asking it once for
 * `sys.executable` lets every task start the interpreter directly.
 *
 * @module
 */

import { GleitzeitError } from "../../core/errors.ts";

/** What the provider needs to know about the interpreter. */
export interface PythonInterpreter {
  /** Absolute path of the real executable. */
  executable: string;
  /** `sys.prefix` and `sys.base_prefix`: directories the sandbox must make readable. */
  prefix: string;
  basePrefix: string;
  /** `major.minor.micro`. */
  version: string;
  /**
   * `sys.path` of a normal isolated start. Tasks start with `-S` (skipping `site`, which
   * costs tens of milliseconds when `.pth` files import packages) and get this path.
   */
  path: string[];
  /** The uid the interpreter (and so this process) runs as; 0 means root. */
  uid: number;
}

const cache = new Map<string, Promise<PythonInterpreter>>();

const PROBE = "import sys,json;print(json.dumps([sys.executable,sys.prefix,sys.base_prefix," +
  "'%d.%d.%d'%sys.version_info[:3],[p for p in sys.path if p],__import__('os').getuid()]))";

/**
 * Resolves `command` (a name on PATH or a path; default `python3`) to the real interpreter.
 * Cached per command for the life of the process; a failure is not cached.
 */
export function resolvePython(command = "python3"): Promise<PythonInterpreter> {
  let found = cache.get(command);
  if (!found) {
    found = probe(command);
    cache.set(command, found);
    found.catch(() => cache.delete(command));
  }
  return found;
}

async function probe(command: string): Promise<PythonInterpreter> {
  const hint = "install Python 3 (e.g. `apt-get install python3`) or point --python (or " +
    "GLEITZEIT_PYTHON, python.executable) at a Python 3 interpreter";
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(command, {
      args: ["-I", "-c", PROBE],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (e) {
    throw new GleitzeitError(
      "PROVIDER_UNAVAILABLE",
      `cannot start Python interpreter ${JSON.stringify(command)}: ${(e as Error).message}`,
      { hint, cause: e, details: { python: command } },
    );
  }
  const text = new TextDecoder().decode(out.stdout).trim();
  if (!out.success) {
    throw new GleitzeitError(
      "PROVIDER_UNAVAILABLE",
      `Python interpreter ${JSON.stringify(command)} failed (exit ${out.code}): ` +
        new TextDecoder().decode(out.stderr).trim().slice(-500),
      { hint, details: { python: command } },
    );
  }
  try {
    const [executable, prefix, basePrefix, version, path, uid] = JSON.parse(text) as [
      string,
      string,
      string,
      string,
      string[],
      number,
    ];
    if (!executable) throw new Error("empty sys.executable");
    if (!version.startsWith("3.")) throw new Error(`Python ${version} is not Python 3`);
    return { executable, prefix, basePrefix, version, path, uid };
  } catch (e) {
    // (what it printed, where that was not the probe's answer: nothing at all, say)
    const said = text === ""
      ? "it printed nothing when asked for sys.executable (is it Python 3?)"
      : e instanceof SyntaxError
      ? `its answer was not Python's: ${JSON.stringify(text.slice(0, 80))}`
      : (e as Error).message;
    throw new GleitzeitError(
      "PROVIDER_UNAVAILABLE",
      `Python interpreter ${JSON.stringify(command)} is not usable: ${said}`,
      { hint, details: { python: command, output: text.slice(0, 500) } },
    );
  }
}
