/**
 * A FIFO limit on concurrent calls to one Ollama host. Ollama serves one request per model
 * at a time by default, so a fan-out of many LLM tasks waits here, in order, instead of
 * piling up in the server's queue (where it would count against `OLLAMA_MAX_QUEUE`).
 *
 * @module
 */

interface Waiter {
  resolve: (release: () => void) => void;
  reject: (reason: unknown) => void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

/** Occupancy of a {@link HostLimiter}. */
export interface LimiterStats {
  limit: number;
  active: number;
  queued: number;
}

/** A counting semaphore with a FIFO queue whose waiters can be cancelled. */
export class HostLimiter {
  readonly limit: number;
  #active = 0;
  #queue: Waiter[] = [];

  constructor(limit: number) {
    if (!Number.isInteger(limit) || limit < 1) {
      throw new RangeError(`maxConcurrent must be an integer >= 1, got ${limit}`);
    }
    this.limit = limit;
  }

  /** Calls running now and calls waiting. */
  get stats(): LimiterStats {
    return { limit: this.limit, active: this.#active, queued: this.#queue.length };
  }

  /**
   * Waits for a free slot. Resolves with a release function (call it exactly once; extra
   * calls are ignored). If `signal` aborts while waiting, the waiter leaves the queue and the
   * promise rejects with the signal's reason.
   */
  acquire(signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    const release = this.tryAcquire();
    if (release) return Promise.resolve(release);
    return new Promise((resolve, reject) => {
      const waiter: Waiter = { resolve, reject, signal };
      if (signal) {
        waiter.onAbort = () => {
          const i = this.#queue.indexOf(waiter);
          if (i >= 0) this.#queue.splice(i, 1);
          reject(signal.reason);
        };
        signal.addEventListener("abort", waiter.onAbort, { once: true });
      }
      this.#queue.push(waiter);
    });
  }

  /**
   * Takes a free slot at once, when there is one and nobody waits (FIFO), without the turn
   * of the event loop that awaiting `acquire` costs; undefined otherwise.
   */
  tryAcquire(): (() => void) | undefined {
    if (this.#active >= this.limit || this.#queue.length > 0) return undefined;
    this.#active++;
    return this.#releaser();
  }

  /** Rejects every waiting call with `reason` (used on close). */
  rejectAll(reason: unknown): void {
    for (const w of this.#queue.splice(0)) {
      if (w.onAbort) w.signal?.removeEventListener("abort", w.onAbort);
      w.reject(reason);
    }
  }

  #releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#active--;
      this.#next();
    };
  }

  #next(): void {
    while (this.#active < this.limit) {
      const w = this.#queue.shift();
      if (!w) return;
      if (w.onAbort) w.signal?.removeEventListener("abort", w.onAbort);
      this.#active++;
      w.resolve(this.#releaser());
    }
  }
}
