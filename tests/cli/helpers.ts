/** Runs the real `gleitzeit` command as a subprocess, the way a user does. @module */

export const ROOT = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");
export const EXAMPLES = `${ROOT}/examples`;

/** Result of one CLI invocation. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

const scratchDirs: string[] = [];
// Removed when the test module's process or worker ends (tests keep their own until then).
globalThis.addEventListener("unload", () => {
  for (const dir of scratchDirs) {
    try {
      Deno.removeSync(dir, { recursive: true });
    } catch {
      // gone already
    }
  }
});

/** A temporary directory, removed when the test module ends. */
export async function tempDir(prefix: string): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix });
  scratchDirs.push(dir);
  return dir;
}

/**
 * A scratch directory with an empty config file and its own SQLite database; removed when
 * the test module ends.
 */
export async function scratch(): Promise<{ dir: string; env: Record<string, string> }> {
  const dir = await tempDir("gleitzeit-cli-");
  await Deno.writeTextFile(`${dir}/config.yaml`, "{}\n");
  return {
    dir,
    env: {
      GLEITZEIT_CONFIG: `${dir}/config.yaml`,
      GLEITZEIT_SQLITE_PATH: `${dir}/gleitzeit.db`,
      NO_COLOR: "1",
    },
  };
}

/** The command line that runs gleitzeit: from source (default) or from the bundle. */
export function command(bundle = false): string[] {
  if (!bundle) return [`${ROOT}/gleitzeit`];
  const flags = bundleFlags();
  return [Deno.execPath(), "run", ...flags, `${ROOT}/dist/gleitzeit.js`];
}

let cachedFlags: string[] | undefined;

/** The permission flags from scripts/flags.sh, so the bundle runs exactly as shipped. */
export function bundleFlags(): string[] {
  if (cachedFlags) return cachedFlags;
  const out = new Deno.Command("bash", {
    args: ["-c", `source "${ROOT}/scripts/flags.sh"; printf '%s\\n' "\${GLEITZEIT_DENO_FLAGS[@]}"`],
  }).outputSync();
  cachedFlags = new TextDecoder().decode(out.stdout).trim().split("\n");
  return cachedFlags;
}

/** Runs gleitzeit with `args` and waits for it. */
export async function gleitzeit(
  args: string[],
  options: { env?: Record<string, string>; cwd?: string; bundle?: boolean } = {},
): Promise<CliResult> {
  const [cmd, ...pre] = command(options.bundle);
  const out = await new Deno.Command(cmd!, {
    args: [...pre, ...args],
    env: options.env ?? {},
    cwd: options.cwd ?? ROOT,
    stdin: "null",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** `--json task submit ARGS --detach`: the recorded run and task (fails unless exit 0). */
export async function detachTask(
  options: { env?: Record<string, string>; cwd?: string },
  ...args: string[]
): Promise<{ run_id: string; task_id: string; state: string }> {
  const r = await gleitzeit(["--json", "task", "submit", ...args, "--detach"], options);
  if (r.code !== 0) throw new Error(`task submit --detach exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

/** Starts gleitzeit without waiting (for signal tests). */
export function spawnGleitzeit(
  args: string[],
  options: { env?: Record<string, string>; cwd?: string } = {},
): Deno.ChildProcess {
  const [cmd, ...pre] = command(false);
  return new Deno.Command(cmd!, {
    args: [...pre, ...args],
    env: options.env ?? {},
    cwd: options.cwd ?? ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

/** Writes a workflow file into `dir` and returns its path. */
export async function writeWorkflow(dir: string, name: string, text: string): Promise<string> {
  const path = `${dir}/${name}`;
  await Deno.writeTextFile(path, text);
  return path;
}

/** True while a process with this pid exists (and is not a zombie). */
export function alive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}
