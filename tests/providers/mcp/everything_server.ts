/**
 * The real MCP reference server `@modelcontextprotocol/server-everything`, installed once
 * from the npm registry into a cache folder (then used offline), run with Node over stdio.
 */

import { join } from "node:path";

/** The pinned version the tests run against. */
export const EVERYTHING_VERSION = "2026.8.31";

function cacheDir(): string {
  const base = Deno.env.get("GLEITZEIT_TEST_CACHE") ??
    join(
      Deno.env.get("XDG_CACHE_HOME") ?? join(Deno.env.get("HOME") ?? "/tmp", ".cache"),
      "gleitzeit-test",
    );
  return join(base, `mcp-everything-${EVERYTHING_VERSION}`);
}

async function run(cmd: string, args: string[], cwd?: string): Promise<Deno.CommandOutput> {
  try {
    return await new Deno.Command(cmd, { args, cwd, stdout: "piped", stderr: "piped" }).output();
  } catch (e) {
    throw new Error(
      `the MCP tests need Node.js and npm (\`${cmd}\` failed: ${e}); install them (e.g. apt-get install nodejs npm)`,
    );
  }
}

let ready: Promise<{ command: string; args: string[] }> | undefined;

/** `{command, args}` that start the server over stdio; installs it on first use. */
export function everythingServer(): Promise<{ command: string; args: string[] }> {
  ready ??= (async () => {
    const dir = cacheDir();
    const entry = join(dir, "node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    try {
      await Deno.stat(entry);
    } catch {
      // install beside the final folder, then rename: test files running in parallel may race
      const tmp = `${dir}.tmp-${Deno.pid}`;
      await Deno.mkdir(tmp, { recursive: true });
      const out = await run("npm", [
        "install",
        "--no-audit",
        "--no-fund",
        "--no-save",
        "--prefix",
        tmp,
        `@modelcontextprotocol/server-everything@${EVERYTHING_VERSION}`,
      ]);
      if (!out.success) {
        await Deno.remove(tmp, { recursive: true }).catch(() => {});
        throw new Error(
          `npm install @modelcontextprotocol/server-everything@${EVERYTHING_VERSION} failed ` +
            `(the npm registry must be reachable once): ${new TextDecoder().decode(out.stderr)}`,
        );
      }
      try {
        await Deno.rename(tmp, dir);
      } catch {
        await Deno.remove(tmp, { recursive: true }).catch(() => {}); // another process won
      }
      await Deno.stat(entry);
    }
    const node = await run("node", ["--version"]);
    if (!node.success) throw new Error("the MCP tests need Node.js (`node`) on PATH");
    return { command: "node", args: [entry, "stdio"] };
  })();
  return ready;
}
