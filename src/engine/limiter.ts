/** The engine's global concurrency limit, shared by all runs. @module */

/** Counts slots; runs that find none register a wake-up callback. No timers, no polling. */
export class Limiter {
  #active = 0;
  #waiters: (() => void)[] = [];

  constructor(readonly limit: number) {}

  get active(): number {
    return this.#active;
  }

  tryAcquire(): boolean {
    if (this.#active >= this.limit) return false;
    this.#active++;
    return true;
  }

  /** Frees a slot and wakes waiters until one of them takes it. */
  release(): void {
    this.#active--;
    while (this.#active < this.limit && this.#waiters.length > 0) this.#waiters.shift()!();
  }

  /** Calls `fn` once when a slot frees. */
  onRelease(fn: () => void): void {
    if (!this.#waiters.includes(fn)) this.#waiters.push(fn);
  }
}
