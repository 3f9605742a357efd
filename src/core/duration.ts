/** Durations as workflow files write them. @module */

import type { JsonSchema } from "./json_schema.ts";

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `30` or `"30"` (seconds), `"500ms"`, `"5m"`, `"1h30m"` -> milliseconds. */
export function durationMs(value: number | string): number {
  if (typeof value === "number") return Math.round(value * 1000);
  const s = value.trim();
  if (/^\d+(\.\d+)?$/.test(s)) return Math.round(Number(s) * 1000);
  let total = 0;
  for (const m of s.matchAll(/(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)/g)) {
    total += Number(m[1]) * UNIT_MS[m[2]!]!;
  }
  return Math.round(total);
}

/** What a duration may be written as: `"30"` (seconds), `"500ms"`, `"1h30m"`. */
export const DURATION_PATTERN = /^\s*(\d+(\.\d+)?\s*(ms|s|m|h|d)\s*)+$|^\s*\d+(\.\d+)?\s*$/;

/**
 * JSON Schema of a method's `timeout` parameter (python/*, llm/*): written as a task's own
 * `timeout` is, seconds or a duration.
 */
export const TIMEOUT_PARAM_SCHEMA: JsonSchema = {
  anyOf: [
    { type: "number", exclusiveMinimum: 0 },
    // (a duration of 0, as 0 seconds, is none: refused)
    {
      type: "string",
      pattern: `^(?!(\\s*0+(\\.0+)?\\s*(ms|s|m|h|d)?)+\\s*$)(${DURATION_PATTERN.source})$`,
    },
  ],
  description: 'a number of seconds (> 0) or a duration such as "30s", "5m", "500ms"',
};

/** Seconds of a `timeout` parameter (see {@link TIMEOUT_PARAM_SCHEMA}); undefined if none. */
export function timeoutParamSeconds(value: unknown): number | undefined {
  if (typeof value === "number") return value;
  if (typeof value === "string" && DURATION_PATTERN.test(value)) return durationMs(value) / 1000;
  return undefined;
}
