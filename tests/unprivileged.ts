/**
 * Running Gleitzeit as an unprivileged user from a test (which runs as root): the usual laptop
 * case, where bubblewrap maps the calling user into a user namespace.
 */

/** Any unprivileged uid: needs no passwd entry. */
export const UNPRIVILEGED_UID = 4242;

/** Fails the calling test where it cannot switch users (it must not pass without running). */
export function requireRoot(what: string): void {
  if (Deno.uid() !== 0) {
    throw new Error(`this test needs root to start ${what} as another, unprivileged user`);
  }
}

/**
 * `deno run ARGS` as UNPRIVILEGED_UID (setpriv), with only `env` in its environment; `via`:
 * a command that runs it (execs its arguments), such as one that installs a seccomp filter.
 */
export function denoAsUnprivileged(
  args: string[],
  options: { cwd: string; env: Record<string, string>; via?: string[] },
): Promise<Deno.CommandOutput> {
  return new Deno.Command("setpriv", {
    args: [
      `--reuid=${UNPRIVILEGED_UID}`,
      `--regid=${UNPRIVILEGED_UID}`,
      "--clear-groups",
      ...(options.via ?? []),
      Deno.execPath(),
      "run",
      ...args,
    ],
    cwd: options.cwd,
    clearEnv: true,
    env: options.env,
    stdin: "null",
  }).output();
}
