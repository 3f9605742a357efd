/**
 * Conversions from what a file says to the model's units: durations to milliseconds,
 * priority words to numbers, retry forms to a RetryPolicy, names to ids. Inputs are
 * already structurally valid (workflow_schema.ts).
 *
 * @module
 */

import { PRIORITY_WORDS } from "../core/workflow.ts";
import type { Backoff, RetryPolicy } from "../core/retry.ts";
import { durationMs } from "../core/duration.ts";

/** `high` -> 75, an integer stays as it is; absent -> normal (50). */
export function priorityValue(value: string | number | undefined): number {
  if (value === undefined) return PRIORITY_WORDS.normal;
  if (typeof value === "number") return value;
  return PRIORITY_WORDS[value as keyof typeof PRIORITY_WORDS];
}

/** The retry policy of a task that says nothing: one attempt. */
export const DEFAULT_RETRY: RetryPolicy = {
  maxAttempts: 1,
  backoff: "exponential",
  baseDelayMs: 1000,
  maxDelayMs: 60_000,
  jitter: true,
};

/** What a `retry:` entry may say. */
export type RetryInput = number | {
  max_attempts?: number;
  backoff?: Backoff;
  base_delay?: number | string;
  max_delay?: number | string;
  jitter?: boolean;
};

/** A bare integer is the number of attempts; an object fills in the defaults. */
export function retryPolicy(value: RetryInput | undefined): RetryPolicy {
  if (value === undefined) return { ...DEFAULT_RETRY };
  if (typeof value === "number") return { ...DEFAULT_RETRY, maxAttempts: value };
  return {
    maxAttempts: value.max_attempts ?? DEFAULT_RETRY.maxAttempts,
    backoff: value.backoff ?? DEFAULT_RETRY.backoff,
    baseDelayMs: value.base_delay === undefined
      ? DEFAULT_RETRY.baseDelayMs
      : durationMs(value.base_delay),
    maxDelayMs: value.max_delay === undefined
      ? DEFAULT_RETRY.maxDelayMs
      : durationMs(value.max_delay),
    jitter: value.jitter ?? DEFAULT_RETRY.jitter,
  };
}

/**
 * A task id from its name: lower case, every run of characters other than a-z, 0-9,
 * `_` and `-` becomes one `_`; such runs at either end are dropped (`"Echo Task"` -> `echo_task`).
 */
export function slugify(name: string): string {
  return name.toLowerCase()
    .replace(/^[^a-z0-9_-]+|[^a-z0-9_-]+$/g, "")
    .replace(/[^a-z0-9_-]+/g, "_");
}

/** Ids (and names usable in references) use only these characters. */
export const IDENTIFIER = /^[A-Za-z0-9_-]+$/;
