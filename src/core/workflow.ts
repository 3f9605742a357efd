/**
 * The validated, in-memory form of a workflow file. The loader produces it;
 * the engine runs it. It is plain JSON data so stores can keep a copy.
 *
 * @module
 */

import type { RetryPolicy } from "./retry.ts";

/** What happens to the run when a task fails for good. */
export type FailurePolicy = "fail_fast" | "continue";

/** Named priorities; larger numbers start sooner. */
export const PRIORITY_WORDS = { urgent: 100, high: 75, normal: 50, low: 25 } as const;

/** One node of a workflow. */
export interface TaskSpec {
  /** Unique within the workflow. */
  id: string;
  /** Human name; defaults to the id. */
  name: string;
  protocol: string;
  method: string;
  /** Parameters, possibly containing `${...}` references. */
  params: Record<string, unknown>;
  /** Ids this task waits for: the declared ones plus those its references imply. */
  dependencies: string[];
  /** Larger runs sooner. */
  priority: number;
  /** Per-attempt timeout. */
  timeoutMs?: number;
  retry: RetryPolicy;
  /** When true, a failure of this task does not fail the run. */
  continueOnFailure: boolean;
  /** Per-task sandbox overrides, as written (python/v1 interprets them). */
  sandbox?: unknown;
  /**
   * Stored tasks of other runs (`task_...` or `RUN_ID/TASK_ID`) it waits for before its first
   * attempt, whichever process executes them (`task submit --depends-on ... --detach`); its
   * params refer to their results as `${ID.path}`. It fails with TASK_DEPENDENCY_FAILED if
   * one of them does not complete.
   */
  awaits?: string[];
}

/** A validated workflow. */
export interface Workflow {
  name: string;
  description?: string;
  version?: string;
  /** Declared inputs with their defaults. */
  params: Record<string, unknown>;
  /** Timeout of the whole run. */
  timeoutMs?: number;
  /** Tasks running at once within one run. */
  maxParallel?: number;
  onFailure: FailurePolicy;
  /** Tasks in file order. */
  tasks: TaskSpec[];
  /** Directory of the file it came from: relative paths resolve against it. */
  baseDir?: string;
  /** Absolute path of the source file, when it came from one. */
  sourcePath?: string;
  /** Workflow-level sandbox settings, as written. */
  sandbox?: unknown;
}
