/**
 * Composition root: configuration -> store + providers -> engine. The only module that
 * knows the concrete adapters.
 *
 * @module
 */

import type { ResolvedConfig } from "./config/config.ts";
import { Engine } from "./engine/engine.ts";
import type { EventListener } from "./engine/events.ts";
import { MemoryStore } from "./persistence/memory_store.ts";
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

/**
 * The registry with every built-in protocol declared and providers created on first use.
 * Validation needs only this (no store, no running servers).
 */
export function createRegistry(config: ResolvedConfig): ProviderRegistry {
  const registry = new ProviderRegistry();
  registry.registerProtocol(ECHO_PROTOCOL);
  registry.registerProtocol(PYTHON_PROTOCOL);
  registry.registerProtocol(LLM_PROTOCOL);
  registry.registerProtocol(MCP_PROTOCOL_FAMILY);
  registry.register(new EchoProvider());
  registry.registerFactory("python/v1", () =>
    Promise.resolve([
      new PythonProvider({
        ...(config.python !== undefined ? { python: config.python } : {}),
        sandbox: config.sandbox,
      }),
    ]));
  registry.registerFactory("llm/v1", () =>
    Promise.resolve([
      new OllamaProvider({ url: config.ollamaUrl, maxConcurrent: config.ollamaMaxConcurrent }),
    ]));
  return registry;
}

/** Opens the configured store. */
export function openConfiguredStore(_config: ResolvedConfig): Promise<Store> {
  return Promise.resolve(new MemoryStore());
}

/** Builds the application from a resolved configuration. */
export async function createApp(
  config: ResolvedConfig,
  options: { onEvent?: EventListener; store?: Store } = {},
): Promise<App> {
  const registry = createRegistry(config);
  const store = options.store ?? await openConfiguredStore(config);
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
