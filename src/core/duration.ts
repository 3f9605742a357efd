/** Durations as workflow files write them. @module */

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
