import { equal, throws } from "node:assert/strict";
import type { GleitzeitError } from "../../../src/core/errors.ts";
import { toResult } from "../../../src/providers/python/python_outcome.ts";

const quiet = { text: "", bytes: 0, truncated: false };

function failureOf(type: string): GleitzeitError {
  let caught: unknown;
  throws(() => {
    try {
      toResult(
        { ok: false, kind: "exception", type, message: `${type}: boom`, execution_time_ms: 1 },
        { code: 0, signal: null },
        quiet,
        quiet,
      );
    } catch (e) {
      caught = e;
      throw e;
    }
  });
  return caught as GleitzeitError;
}

Deno.test("transient Python exceptions are retryable; other exceptions are not", () => {
  for (
    const t of ["ConnectionError", "ConnectionRefusedError", "TimeoutError", "BrokenPipeError"]
  ) {
    const e = failureOf(t);
    equal(e.code, "TASK_EXECUTION_FAILED");
    equal(e.retryable, true, t);
  }
  for (const t of ["ValueError", "KeyError", "ZeroDivisionError", "RuntimeError"]) {
    equal(failureOf(t).retryable, false, t);
  }
});
