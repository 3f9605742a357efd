/** Bounded capture of a child's stdout/stderr that keeps draining past the limit. @module */

/** What was captured from one stream. */
export interface CapturedOutput {
  /** UTF-8 decoded text of the first `limit` bytes. */
  text: string;
  /** Total bytes the stream produced. */
  bytes: number;
  /** True when `bytes` exceeded the limit and `text` is only the beginning. */
  truncated: boolean;
}

/**
 * Reads `stream` to its end, keeping at most `limit` bytes. Reading never stops early on
 * its own, so the writer never blocks on a full pipe; `cancel()` stops it (used when a
 * stray process keeps the pipe open after the task ended).
 */
export class BoundedCapture {
  readonly done: Promise<void>;
  #chunks: Uint8Array[] = [];
  #kept = 0;
  #bytes = 0;
  #reader: ReadableStreamDefaultReader<Uint8Array>;

  constructor(stream: ReadableStream<Uint8Array>, readonly limit: number) {
    this.#reader = stream.getReader();
    this.done = this.#pump();
  }

  async #pump(): Promise<void> {
    try {
      while (true) {
        const { value, done } = await this.#reader.read();
        if (done) return;
        this.#bytes += value.byteLength;
        const room = this.limit - this.#kept;
        if (room > 0) {
          const part = value.byteLength <= room ? value : value.subarray(0, room);
          this.#chunks.push(part);
          this.#kept += part.byteLength;
        }
      }
    } catch {
      // Cancelled or the pipe broke: what we have is the output.
    }
  }

  /** Stops reading and releases the pipe. */
  async cancel(): Promise<void> {
    try {
      await this.#reader.cancel();
    } catch {
      // Already closed.
    }
    await this.done;
  }

  /** Waits up to `graceMs` for the end of the stream, then cancels. */
  async finish(graceMs: number): Promise<CapturedOutput> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), graceMs);
    });
    const ended = await Promise.race([this.done.then(() => false), timedOut]);
    clearTimeout(timer);
    if (ended) await this.cancel();
    return this.result();
  }

  /** The captured output so far. */
  result(): CapturedOutput {
    const all = new Uint8Array(this.#kept);
    let at = 0;
    for (const c of this.#chunks) {
      all.set(c, at);
      at += c.byteLength;
    }
    return {
      text: new TextDecoder().decode(all),
      bytes: this.#bytes,
      truncated: this.#bytes > this.limit,
    };
  }
}
