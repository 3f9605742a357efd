/** Shared setup of the external-provider tests: the real Python calc provider over stdio. */

import { fileURLToPath } from "node:url";
import { registerConfiguredProviders } from "../../../src/config/providers_config.ts";
import { ECHO_PROTOCOL, EchoProvider } from "../../../src/providers/echo/echo_provider.ts";
import type { CallContext } from "../../../src/providers/provider.ts";
import { ProviderRegistry, type RegistryOptions } from "../../../src/providers/registry.ts";

/** examples/providers, where calc_provider.py lives. */
export const EXAMPLES_DIR = fileURLToPath(new URL("../../../examples/providers/", import.meta.url));

/** The Python interpreter the tests use. */
export const PYTHON = "python3";

let checked = false;
/** Fails (never skips) when Python 3 is missing. */
export async function requirePython(): Promise<void> {
  if (checked) return;
  try {
    const out = await new Deno.Command(PYTHON, { args: ["--version"], stdout: "piped" }).output();
    if (!out.success) throw new Error(`exit ${out.code}`);
  } catch (e) {
    throw new Error(
      `these tests need Python 3 as \`${PYTHON}\` on PATH (install python3): ${e}`,
    );
  }
  checked = true;
}

/** A `providers:` entry for the calc provider with overrides. */
export function calcEntry(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id: "calc",
    protocol: "calc/v1",
    command: PYTHON,
    args: ["-u", "calc_provider.py"],
    describe: true,
    health_method: "health",
    restart: { base_delay_ms: 50 },
    ...overrides,
  };
}

/** A registry with echo and the given config sections registered. */
export async function registryWith(
  sections: { providers?: unknown[]; mcp_servers?: unknown[] },
  options: RegistryOptions = {},
): Promise<ProviderRegistry> {
  await requirePython();
  const registry = new ProviderRegistry(options);
  registry.registerProtocol(ECHO_PROTOCOL);
  registry.register(new EchoProvider());
  const report = await registerConfiguredProviders(registry, sections, { baseDir: EXAMPLES_DIR });
  if (report.failed.length > 0) {
    await registry.close();
    throw report.failed[0]!.error;
  }
  return registry;
}

let n = 0;
/** A call context for tests. */
export function ctx(signal: AbortSignal = new AbortController().signal): CallContext {
  return { signal, runId: "run-test", taskId: `task-${++n}`, attempt: 1 };
}

/** True while a process with this pid exists. */
export function alive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return !/^\d+ \(.*\) Z/.test(stat); // a zombie is dead
  } catch {
    return false;
  }
}
