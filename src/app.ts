/**
 * Composition root: configuration -> store + providers -> engine. The only module that
 * knows the concrete adapters.
 *
 * @module
 */

import { posix } from "node:path";
import type { ResolvedConfig } from "./config/config.ts";
import { Engine } from "./engine/engine.ts";
import type { EventListener } from "./engine/events.ts";
import { openStore } from "./persistence/open_store.ts";
import { registerConfiguredProviders } from "./config/providers_config.ts";
import type { GleitzeitError } from "./core/errors.ts";
import type { Store } from "./persistence/store.ts";
import { ECHO_PROTOCOL, EchoProvider } from "./providers/echo/echo_provider.ts";
import { MCP_PROTOCOL_FAMILY } from "./providers/mcp/mcp_methods.ts";
import { LLM_PROTOCOL } from "./providers/ollama/llm_methods.ts";
import { OllamaProvider } from "./providers/ollama/ollama_provider.ts";
import { PYTHON_PROTOCOL } from "./providers/python/python_methods.ts";
import { PythonProvider } from "./providers/python/python_provider.ts";
import { ProviderRegistry } from "./providers/registry.ts";

/** Everything a command needs. */
export interface App {
  config: ResolvedConfig;
  registry: ProviderRegistry;
  store: Store;
  engine: Engine;
  close(): Promise<void>;
}

/** Problems met while setting up providers that do not stop the command (printed as warnings). */
export type SetupWarning = { id: string; error: GleitzeitError };

/**
 * The registry with every built-in protocol declared, the configured external providers and
 * MCP servers declared, and providers created on first use. Validation needs only this (no
 * store). Providers whose methods come from a `describe` call are asked now; one that fails is
 * reported through `onWarning`, and its protocol takes any method unchecked (see
 * ProtocolSpec.anyMethod).
 */
export async function createRegistry(
  config: ResolvedConfig,
  onWarning: (w: SetupWarning) => void = () => {},
): Promise<ProviderRegistry> {
  const registry = new ProviderRegistry({ healthIntervalMs: config.healthIntervalMs });
  registry.registerProtocol(ECHO_PROTOCOL);
  registry.registerProtocol(PYTHON_PROTOCOL);
  registry.registerProtocol(LLM_PROTOCOL);
  registry.registerProtocol(MCP_PROTOCOL_FAMILY);
  registry.register(new EchoProvider());
  registry.registerFactory(
    "python/v1",
    () =>
      Promise.resolve([
        new PythonProvider({
          ...(config.python !== undefined ? { python: config.python } : {}),
          sandbox: config.sandbox,
          minSandbox: config.minSandbox,
          allowGrants: config.allowGrants,
          // one warm sandboxed worker per task slot; idle ones are reaped
          poolSize: config.maxConcurrentTasks,
        }),
      ]),
    { ids: ["python"] },
  );
  const ollamaUrl = config.ollamaUrl.replace(/\/+$/, "");
  registry.registerFactory(
    "llm/v1",
    () =>
      Promise.resolve([
        new OllamaProvider({ url: ollamaUrl, maxConcurrent: config.ollamaMaxConcurrent }),
      ]),
    { ids: [`ollama@${ollamaUrl}`] },
  );
  // (with none configured too: the mcp/* family then fails each call with "no MCP server is
  // configured", and a worker says so of it: see ProviderRegistry.unservable)
  const baseDir = config.configPath ? posix.dirname(config.configPath) : Deno.cwd();
  const report = await registerConfiguredProviders(
    registry,
    { providers: config.providers, mcp_servers: config.mcpServers },
    { baseDir, configPath: config.configPath },
  );
  for (const f of report.failed) onWarning(f);
  return registry;
}

/** Opens the configured store. */
export function openConfiguredStore(
  config: ResolvedConfig,
  options: { readOnly?: boolean } = {},
): Promise<Store> {
  return openStore({
    backend: config.backend,
    sqlitePath: config.sqlitePath,
    redisUrl: config.redisUrl,
    redisPrefix: config.redisPrefix,
    readOnly: options.readOnly === true,
  });
}

/** Builds the application from a resolved configuration. */
export async function createApp(
  config: ResolvedConfig,
  options: {
    onEvent?: EventListener;
    store?: Store;
    registry?: ProviderRegistry;
    onWarning?: (w: SetupWarning) => void;
  } = {},
): Promise<App> {
  const registry = options.registry ?? await createRegistry(config, options.onWarning);
  let store: Store;
  try {
    store = options.store ?? await openConfiguredStore(config);
  } catch (e) {
    await registry.close();
    throw e;
  }
  const engine = new Engine({
    dispatcher: registry,
    store,
    maxConcurrency: config.maxConcurrentTasks,
    ...(options.onEvent ? { onEvent: options.onEvent } : {}),
  });
  return {
    config,
    registry,
    store,
    engine,
    async close() {
      await registry.close();
      await store.close();
    },
  };
}
