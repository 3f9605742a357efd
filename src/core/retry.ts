/** Retry policy and backoff arithmetic (SPEC section 4). @module */

/** How the delay grows between attempts. */
export type Backoff = "fixed" | "linear" | "exponential";

/** When and how often a failed task is tried again. */
export interface RetryPolicy {
  /** All attempts, the first included (1 = no retry). */
  maxAttempts: number;
  backoff: Backoff;
  baseDelayMs: number;
  maxDelayMs: number;
  /** Randomise the delay inside [delay/2, delay] so that retries spread out. */
  jitter: boolean;
}

/** One attempt, no retry. */
export const NO_RETRY: RetryPolicy = {
  maxAttempts: 1,
  backoff: "exponential",
  baseDelayMs: 1000,
  maxDelayMs: 60_000,
  jitter: false,
};

/**
 * Delay before attempt `failedAttempt + 1`, where `failedAttempt` (1-based) just failed.
 * fixed: base; linear: base*n; exponential: base*2^(n-1); capped at maxDelayMs.
 * With jitter the delay is drawn uniformly from [capped/2, capped], so it never exceeds the cap.
 */
export function retryDelayMs(
  policy: RetryPolicy,
  failedAttempt: number,
  random: () => number = Math.random,
): number {
  const n = Math.max(1, failedAttempt);
  let delay: number;
  switch (policy.backoff) {
    case "fixed":
      delay = policy.baseDelayMs;
      break;
    case "linear":
      delay = policy.baseDelayMs * n;
      break;
    case "exponential":
      delay = policy.baseDelayMs * 2 ** (n - 1);
      break;
  }
  const capped = Math.min(delay, policy.maxDelayMs);
  if (!policy.jitter) return capped;
  return capped / 2 + random() * (capped / 2);
}
