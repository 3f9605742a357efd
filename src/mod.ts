/** Gleitzeit as a library: the engine, the loader, stores, providers and their types. @module */

export { Engine, mergeParams } from "./engine/engine.ts";
export type {
  CreateRunOptions,
  EngineOptions,
  ExecuteOptions,
  RunOutcome,
} from "./engine/engine.ts";
export type { EngineEvent, EventListener } from "./engine/events.ts";
export { loadWorkflowFile, parseWorkflow, workflowJsonSchema } from "./loader/load_workflow.ts";
export type { TaskSpec, Workflow } from "./core/workflow.ts";
export { GleitzeitError, WorkflowValidationError } from "./core/errors.ts";
export type { ErrorCode, ErrorData } from "./core/errors.ts";
export type { Store } from "./persistence/store.ts";
export { MemoryStore } from "./persistence/memory_store.ts";
export type { CallContext, ProtocolSpec, Provider } from "./providers/provider.ts";
export { ProviderRegistry } from "./providers/registry.ts";
export { createApp, createRegistry } from "./app.ts";
