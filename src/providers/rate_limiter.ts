/** A sliding-window rate limit: at most `requests` starts in any `perMs` window. @module */

/** A rate limit as written in the config file. */
export interface RateLimit {
  requests: number;
  perSeconds: number;
}

/**
 * Counts call starts in a sliding window. One limiter may be shared by several providers
 * (the instances of one configured provider share its limit).
 */
export class RateLimiter {
  readonly requests: number;
  readonly perMs: number;
  #starts: number[] = [];

  constructor(limit: RateLimit) {
    if (!(limit.requests >= 1) || !(limit.perSeconds > 0)) {
      throw new RangeError(`invalid rate limit ${limit.requests}/${limit.perSeconds}s`);
    }
    this.requests = Math.floor(limit.requests);
    this.perMs = limit.perSeconds * 1000;
  }

  #prune(now: number): void {
    while (this.#starts.length > 0 && this.#starts[0]! <= now - this.perMs) this.#starts.shift();
  }

  /** True when a call may start now. */
  available(now: number): boolean {
    this.#prune(now);
    return this.#starts.length < this.requests;
  }

  /** Records a start (call only after {@link available} said yes). */
  take(now: number): void {
    this.#starts.push(now);
  }

  /** When the next call may start (now, if it may). */
  nextAt(now: number): number {
    this.#prune(now);
    if (this.#starts.length < this.requests) return now;
    return this.#starts[this.#starts.length - this.requests]! + this.perMs;
  }

  /** The limit, for display. */
  get limit(): RateLimit {
    return { requests: this.requests, perSeconds: this.perMs / 1000 };
  }
}
