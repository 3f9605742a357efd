/** Group commit of task finishes: everything finished in one tick is written in one commit. @module */

import type { Store, TaskFinish } from "../persistence/store.ts";

/**
 * Collects finishes and writes them with one `store.finishTasks` call per flush. While a write
 * is in flight, new finishes wait and go out together in the next one.
 */
export class WriteBatcher {
  #pending: { finish: TaskFinish; resolve: () => void; reject: (e: unknown) => void }[] = [];
  #scheduled = false;
  #writing = false;

  constructor(readonly store: Store) {}

  /** Resolves once `finish` is durable. */
  write(finish: TaskFinish): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#pending.push({ finish, resolve, reject });
      this.#schedule();
    });
  }

  #schedule(): void {
    if (this.#scheduled || this.#writing) return;
    this.#scheduled = true;
    queueMicrotask(() => {
      this.#scheduled = false;
      void this.#flush();
    });
  }

  async #flush(): Promise<void> {
    if (this.#pending.length === 0) return;
    const batch = this.#pending;
    this.#pending = [];
    this.#writing = true;
    try {
      await this.store.finishTasks(batch.map((b) => b.finish));
      for (const b of batch) b.resolve();
    } catch (e) {
      for (const b of batch) b.reject(e);
    } finally {
      this.#writing = false;
      if (this.#pending.length > 0) this.#schedule();
    }
  }
}
