/** The runner compiled once per interpreter, for cold starts (see RUNNER_BOOTSTRAP). @module */

import { GleitzeitError } from "../../core/errors.ts";
import type { PythonInterpreter } from "./python_interpreter.ts";
import { RUNNER_COMPILER, RUNNER_SOURCE } from "./runner_source.ts";

const cache = new Map<string, Promise<Uint8Array>>();

/** The marshalled runner code for `py` (marshal data is specific to the Python version). */
export function runnerBytecode(py: PythonInterpreter): Promise<Uint8Array> {
  let code = cache.get(py.executable);
  if (!code) {
    code = compileRunner(py);
    cache.set(py.executable, code);
    code.catch(() => cache.delete(py.executable));
  }
  return code;
}

async function compileRunner(py: PythonInterpreter): Promise<Uint8Array> {
  const child = new Deno.Command(py.executable, {
    args: ["-I", "-S", "-c", RUNNER_COMPILER],
    clearEnv: true,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(RUNNER_SOURCE));
  await writer.close();
  const out = await child.output();
  if (!out.success || out.stdout.byteLength === 0) {
    throw new GleitzeitError(
      "PROVIDER_UNAVAILABLE",
      `${py.executable} cannot compile the Gleitzeit runner: ` +
        new TextDecoder().decode(out.stderr).trim().slice(-500),
    );
  }
  return out.stdout;
}

/** stdin for a cold start: 4-byte big-endian length, the code, the job. */
export function bootstrapInput(code: Uint8Array, job: string): Uint8Array {
  const body = new TextEncoder().encode(job);
  const all = new Uint8Array(4 + code.byteLength + body.byteLength);
  new DataView(all.buffer).setUint32(0, code.byteLength);
  all.set(code, 4);
  all.set(body, 4 + code.byteLength);
  return all;
}

/** The start of a warm parent's stdin: 4-byte big-endian length, the code (POOL_BOOTSTRAP). */
export function codePrefix(code: Uint8Array): Uint8Array {
  const all = new Uint8Array(4 + code.byteLength);
  new DataView(all.buffer).setUint32(0, code.byteLength);
  all.set(code, 4);
  return all;
}
