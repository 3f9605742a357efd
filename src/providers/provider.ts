/**
 * The Provider interface: everything that executes a task implements it, whether it
 * runs in-process (echo, python), talks to a server (Ollama, JSON-RPC over HTTP) or to
 * a child process (JSON-RPC over stdio, MCP).
 *
 * @module
 */

import type { JsonSchema } from "../core/json_schema.ts";

/** One method a protocol offers, with the JSON Schema of its params. */
export interface MethodSpec {
  /** Full method name as written in workflows (`python/execute`, `echo`, `tools/call`). */
  name: string;
  description?: string;
  params: JsonSchema;
}

/** What a protocol offers; the loader validates workflows against these. */
export interface ProtocolSpec {
  /** `name/vN`, e.g. `python/v1`; a family such as `mcp/*` matches `mcp/<anything>`. */
  protocol: string;
  description?: string;
  methods: MethodSpec[];
  /**
   * Its methods are not known here (a provider whose `describe` call failed at start, down
   * or unreachable then): any method name is taken, with its params unchecked, and its
   * provider decides when called.
   */
  anyMethod?: boolean;
  /**
   * Parts of the protocol that a provider may serve while others fail (python/v1: the sandbox
   * mode a workflow or task asks for, as bubblewrap may be missing where `basic` runs): `of`
   * names the part a call needs (undefined: the protocol as its providers run it by default),
   * and each provider's health says which parts it serves ({@link HealthReport.routes}).
   * Workers take tasks by part (see ProviderRegistry.protocolHealth).
   */
  routes?: {
    names: readonly string[];
    of: (ctx: Pick<CallContext, "sandbox">) => string | undefined;
  };
}

/** Per-call information and controls. */
export interface CallContext {
  /** Aborted on timeout or cancellation; the provider must stop work (kill processes, abort requests). */
  signal: AbortSignal;
  runId: string;
  taskId: string;
  /** 1-based attempt number. */
  attempt: number;
  /** The attempt's timeout, when one applies (the engine enforces it through `signal`). */
  timeoutMs?: number;
  /** Directory of the workflow file: relative paths in params resolve against it. */
  baseDir?: string;
  /** Sandbox settings of the workflow and task, as written (task overrides workflow). */
  sandbox?: { workflow?: unknown; task?: unknown };
  /** Streams partial output (LLM tokens) to whoever watches. */
  onProgress?: (chunk: string) => void;
  /**
   * Set by the engine when its dispatcher queues attempts ({@link Dispatcher.queues}): the
   * dispatcher calls it once an executor (a worker, named) begins the attempt (before its
   * outcome); it settles once the start is on record.
   */
  onBegin?: (executor?: string) => Promise<unknown> | void;
  /**
   * Called with true when the call waits for a free place under a provider's own limit (a
   * provider's concurrency, an Ollama host's `max_concurrent`), with false once it has one:
   * the engine does not count that wait against the attempt's timeout.
   */
  onWaiting?: (waiting: boolean) => void;
}

/** The result of a health probe. */
export interface HealthReport {
  /** Whether it serves calls as it runs them by default. */
  healthy: boolean;
  /** Which parts of its protocol it serves ({@link ProtocolSpec.routes}); unlisted: `healthy`. */
  routes?: Record<string, boolean>;
  message?: string;
  latencyMs?: number;
  details?: Record<string, unknown>;
}

/** Something that executes the methods of one protocol. */
export interface Provider {
  /** Unique among providers (`python`, `ollama@http://...`, `calc#2`). */
  readonly id: string;
  /** The protocol it implements, e.g. `python/v1` or `mcp/everything`. */
  readonly protocol: string;
  /**
   * Runs one method. Resolves with the JSON result (which may be `null`); rejects with a
   * GleitzeitError whose code and retryable flag say what went wrong.
   */
  call(method: string, params: Record<string, unknown>, ctx: CallContext): Promise<unknown>;
  /** Probes the provider; absent means always healthy. */
  health?(signal?: AbortSignal): Promise<HealthReport>;
  /** Releases processes and connections. */
  close?(): Promise<void>;
}
