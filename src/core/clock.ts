/** Time as a dependency, so retry delays and timeouts are testable without sleeping. @module */

/** A cancellable timer handle. */
export interface Timer {
  cancel(): void;
}

/** Source of time for the engine. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Calls `fn` after `ms`; the returned handle cancels it. */
  setTimer(ms: number, fn: () => void): Timer;
}

/** The longest delay `setTimeout` keeps: a longer one (~24.9 days) fires at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * `setTimeout` for a delay of any length (a timeout of `30d` is a user's right): one longer
 * than {@link MAX_TIMER_MS} is waited for in steps. Returns what cancels it.
 */
export function setLongTimeout(fn: () => void, ms: number): () => void {
  const due = performance.now() + ms;
  let id: ReturnType<typeof setTimeout>;
  const arm = (left: number) => {
    id = left > MAX_TIMER_MS
      ? setTimeout(() => arm(due - performance.now()), MAX_TIMER_MS)
      : setTimeout(fn, Math.max(0, left));
  };
  arm(ms);
  return () => clearTimeout(id);
}

/** The real clock. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer(ms, fn) {
    return { cancel: setLongTimeout(fn, ms) };
  },
};

/** Resolves after `ms` on `clock`, or rejects with the signal's reason when it aborts. */
export function sleep(clock: Clock, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      timer.cancel();
      reject(signal?.reason);
    };
    const timer = clock.setTimer(ms, () => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    });
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * A clock that only moves when told. Timers fire in due order during `advance`.
 * Used by engine tests to check retry delays and timeouts without waiting.
 */
export class FakeClock implements Clock {
  #now: number;
  #timers: { at: number; seq: number; fn: () => void; live: boolean }[] = [];
  #seq = 0;

  constructor(start = 1_700_000_000_000) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimer(ms: number, fn: () => void): Timer {
    const t = { at: this.#now + Math.max(0, ms), seq: this.#seq++, fn, live: true };
    this.#timers.push(t);
    return { cancel: () => void (t.live = false) };
  }

  /** Number of timers that have not fired or been cancelled. */
  get pending(): number {
    return this.#timers.filter((t) => t.live).length;
  }

  /** Moves time forward by `ms`, firing due timers in order and letting promises settle between them. */
  async advance(ms: number): Promise<void> {
    const target = this.#now + ms;
    for (;;) {
      await flushMicrotasks();
      const due = this.#timers
        .filter((t) => t.live && t.at <= target)
        .sort((a, b) => a.at - b.at || a.seq - b.seq)[0];
      if (!due) break;
      due.live = false;
      this.#now = Math.max(this.#now, due.at);
      due.fn();
    }
    this.#now = target;
    this.#timers = this.#timers.filter((t) => t.live);
    await flushMicrotasks();
  }
}

async function flushMicrotasks(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
  await new Promise((r) => setTimeout(r, 0));
}
