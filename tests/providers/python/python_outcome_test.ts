import { equal, match, throws } from "node:assert/strict";
import type { GleitzeitError } from "../../../src/core/errors.ts";
import { toResult } from "../../../src/providers/python/python_outcome.ts";
import { DEFAULT_LIMITS } from "../../../src/providers/python/sandbox_policy.ts";

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

/** The error toResult throws for an exception in a bubblewrap sandbox without network. */
function sandboxed(type: string, message: string, traceback = ""): GleitzeitError {
  try {
    toResult(
      { ok: false, kind: "exception", type, message, traceback, execution_time_ms: 1 },
      { code: 0, signal: null },
      quiet,
      quiet,
      { ...DEFAULT_LIMITS, mode: "bwrap", network: false, grants: [] },
    );
  } catch (e) {
    return e as GleitzeitError;
  }
  throw new Error("no failure");
}

Deno.test("network failures of common libraries in a sandbox without network: a hint, no retry", () => {
  for (
    const [type, message] of [
      [
        "urllib3.exceptions.NewConnectionError",
        "Failed to establish a new connection: [Errno 111] Connection refused",
      ],
      [
        "urllib3.exceptions.NameResolutionError",
        "Failed to resolve 'example.com' ([Errno -5] No address associated with hostname)",
      ],
      ["aiohttp.client_exceptions.ClientConnectorError", "Cannot connect to host example.com:80"],
      ["httpx.ConnectError", "All connection attempts failed"],
      ["socket.gaierror", "[Errno -3] Temporary failure in name resolution"],
    ]
  ) {
    const e = sandboxed(type!, `${type}: ${message}`);
    match(e.hint ?? "", /no network/, type);
    equal(e.retryable, false, type);
  }
});

Deno.test("a task's own ConnectionError that says 'refused' stays retryable in a sandbox without network", () => {
  for (
    const [type, message] of [
      ["ConnectionError", "service at 10.0.0.1:8080 refused the connection"],
      ["ConnectionError", "the server is unreachable"],
      ["ConnectionError", "name resolution of the service failed"],
    ]
  ) {
    const e = sandboxed(type!, `${type}: ${message}`);
    equal(e.retryable, true, message);
  }
  const real = sandboxed(
    "ConnectionRefusedError",
    "ConnectionRefusedError: [Errno 111] Connection refused",
  );
  equal(real.retryable, false);
  match(real.hint ?? "", /no network/);
});

Deno.test("EAGAIN that is not a fork or thread start names no process limit", () => {
  const read = sandboxed(
    "BlockingIOError",
    "BlockingIOError: [Errno 11] Resource temporarily unavailable",
    '  File "<task>", line 5, in start\n    os.read(fd, 10)\n',
  );
  equal(read.hint, undefined);
  const fork = sandboxed(
    "BlockingIOError",
    "BlockingIOError: [Errno 11] Resource temporarily unavailable",
    '  File "<task>", line 3, in <module>\n    os.fork()\n',
  );
  equal((fork.details as Record<string, unknown>).limit, "max_processes");
});

Deno.test("writing outside the work directory and the write grants: a hint naming sandbox: {write}", () => {
  const e = sandboxed(
    "OSError",
    "OSError: [Errno 30] Read-only file system: 'data/x.txt'",
    "  File \"<task>\", line 1, in <module>\n    open('data/x.txt', 'w')\n",
  );
  match(e.hint ?? "", /to write data\/x\.txt, add it \(or its directory\) there/);
  match(e.hint ?? "", /sandbox: \{write: \[\.\.\.\]\}/);
});

Deno.test("writing to /tmp in the sandbox: a hint to use the work directory, not a grant", () => {
  const e = sandboxed("OSError", "OSError: [Errno 30] Read-only file system: '/tmp/x'");
  match(e.hint ?? "", /^\/tmp is read-only in the task's sandbox: write to its work directory/);
});
