/** Events the engine emits for every transition; the CLI renders them. @module */

import type { ErrorData } from "../core/errors.ts";
import type { RunState } from "../core/states.ts";

/** Something that happened in a run. Names are past tense. */
export type EngineEvent =
  | {
    type: "run_started";
    runId: string;
    workflow: string;
    tasks: number;
    resumed: boolean;
    at: number;
  }
  | { type: "task_started"; runId: string; taskId: string; attempt: number; at: number }
  | { type: "task_progress"; runId: string; taskId: string; chunk: string }
  /**
   * It waits for stored tasks of other runs (see TaskSpec.awaits): `on`, "ID (state)"; `note`,
   * what would end a wait that nothing ends now.
   */
  | { type: "task_waiting"; runId: string; taskId: string; on: string[]; note?: string }
  | {
    type: "task_completed";
    runId: string;
    taskId: string;
    attempt: number;
    durationMs: number;
    at: number;
  }
  | {
    type: "task_failed";
    runId: string;
    taskId: string;
    attempt: number;
    error: ErrorData;
    /** Set when another attempt follows after this many ms. */
    retryInMs?: number;
    /**
     * Set when a retry that was announced (retryInMs) will not happen: why (the run stopped).
     * `error` is the last attempt's.
     */
    abandoned?: string;
    at: number;
  }
  | { type: "task_skipped"; runId: string; taskId: string; reason: string; at: number }
  | { type: "task_cancelled"; runId: string; taskId: string; reason: string; at: number }
  | {
    type: "run_finished";
    runId: string;
    state: RunState;
    durationMs: number;
    error?: ErrorData;
    at: number;
  };

/** Receives engine events; must not throw and must be quick. */
export type EventListener = (event: EngineEvent) => void;
