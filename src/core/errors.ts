/**
 * One error hierarchy for the whole product. Every error has a stable name
 * (`ErrorCode`), a JSON-RPC compatible number, a retryable flag and a CLI exit
 * code, all from the exhaustive table below: adding a code without filling
 * every column fails to compile.
 *
 * @module
 */

/** CLI exit codes (SPEC section 7). */
export type ExitCode = 0 | 1 | 2 | 3 | 130;

interface CodeInfo {
  readonly code: number;
  readonly retryable: boolean;
  readonly exit: ExitCode;
}

/** The table of every error the product raises (SPEC section 10). */
export const ERROR_CODES = {
  // JSON-RPC 2.0 standard
  PARSE_ERROR: { code: -32700, retryable: false, exit: 2 },
  INVALID_REQUEST: { code: -32600, retryable: false, exit: 2 },
  METHOD_NOT_FOUND: { code: -32601, retryable: false, exit: 2 },
  INVALID_PARAMS: { code: -32602, retryable: false, exit: 2 },
  INTERNAL_ERROR: { code: -32603, retryable: false, exit: 1 },
  // -31xxx system
  SYSTEM_ERROR: { code: -31000, retryable: false, exit: 1 },
  CONFIG_ERROR: { code: -31001, retryable: false, exit: 2 },
  RESOURCE_EXHAUSTED: { code: -31002, retryable: true, exit: 1 },
  RATE_LIMITED: { code: -31003, retryable: true, exit: 1 },
  USAGE_ERROR: { code: -31004, retryable: false, exit: 2 },
  INTERRUPTED: { code: -31005, retryable: false, exit: 130 },
  SANDBOX_UNAVAILABLE: { code: -31006, retryable: false, exit: 3 },
  // -30xxx provider / protocol
  PROVIDER_NOT_FOUND: { code: -30000, retryable: false, exit: 2 },
  PROVIDER_UNAVAILABLE: { code: -30001, retryable: true, exit: 3 },
  PROVIDER_UNHEALTHY: { code: -30002, retryable: true, exit: 3 },
  PROVIDER_TIMEOUT: { code: -30003, retryable: true, exit: 1 },
  PROVIDER_OVERLOADED: { code: -30004, retryable: true, exit: 1 },
  METHOD_NOT_SUPPORTED: { code: -30005, retryable: false, exit: 2 },
  PROTOCOL_NOT_FOUND: { code: -30006, retryable: false, exit: 2 },
  PROVIDER_ERROR: { code: -30007, retryable: false, exit: 1 },
  MODEL_NOT_FOUND: { code: -30008, retryable: false, exit: 1 },
  // -29xxx task
  TASK_VALIDATION_ERROR: { code: -29000, retryable: false, exit: 2 },
  TASK_EXECUTION_FAILED: { code: -29001, retryable: false, exit: 1 },
  TASK_TIMEOUT: { code: -29002, retryable: true, exit: 1 },
  TASK_CANCELLED: { code: -29003, retryable: false, exit: 130 },
  TASK_DEPENDENCY_FAILED: { code: -29004, retryable: false, exit: 1 },
  TASK_PARAMETER_ERROR: { code: -29005, retryable: false, exit: 1 },
  TASK_RETRIES_EXHAUSTED: { code: -29006, retryable: false, exit: 1 },
  TASK_NOT_FOUND: { code: -29007, retryable: false, exit: 2 },
  TASK_RESULT_ERROR: { code: -29008, retryable: false, exit: 1 },
  // -28xxx workflow
  WORKFLOW_VALIDATION_ERROR: { code: -28000, retryable: false, exit: 2 },
  WORKFLOW_NOT_FOUND: { code: -28001, retryable: false, exit: 2 },
  WORKFLOW_FAILED: { code: -28002, retryable: false, exit: 1 },
  WORKFLOW_TIMEOUT: { code: -28003, retryable: false, exit: 1 },
  WORKFLOW_CANCELLED: { code: -28004, retryable: false, exit: 130 },
  WORKFLOW_CYCLE: { code: -28005, retryable: false, exit: 2 },
  WORKFLOW_FILE_ERROR: { code: -28006, retryable: false, exit: 2 },
  // -27xxx queue
  QUEUE_ERROR: { code: -27000, retryable: true, exit: 3 },
  QUEUE_FULL: { code: -27001, retryable: true, exit: 1 },
  LEASE_EXPIRED: { code: -27002, retryable: true, exit: 1 },
  // -26xxx persistence
  PERSISTENCE_ERROR: { code: -26000, retryable: false, exit: 3 },
  PERSISTENCE_UNAVAILABLE: { code: -26001, retryable: true, exit: 3 },
  RUN_NOT_FOUND: { code: -26002, retryable: false, exit: 2 },
  // -25xxx network
  NETWORK_ERROR: { code: -25000, retryable: true, exit: 3 },
  CONNECTION_REFUSED: { code: -25001, retryable: true, exit: 3 },
} as const satisfies Record<string, CodeInfo>;

/** Stable name of an error. */
export type ErrorCode = keyof typeof ERROR_CODES;

const BY_NUMBER = new Map<number, ErrorCode>(
  (Object.entries(ERROR_CODES) as [ErrorCode, CodeInfo][]).map(([name, info]) => [info.code, name]),
);

/** Serialisable form of an error, as stored and as sent in JSON-RPC `error.data`. */
export interface ErrorData {
  code: ErrorCode;
  message: string;
  retryable: boolean;
  details?: Record<string, unknown>;
  hint?: string;
}

/** Options for {@link GleitzeitError}. */
export interface GleitzeitErrorOptions {
  details?: Record<string, unknown>;
  /** Overrides the table's retryable flag (a provider may mark one failure retryable). */
  retryable?: boolean;
  hint?: string;
  cause?: unknown;
}

/** The base error: a stable code, a retryable flag, structured details. */
export class GleitzeitError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly details: Record<string, unknown>;
  readonly hint?: string;

  constructor(code: ErrorCode, message: string, options: GleitzeitErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "GleitzeitError";
    this.code = code;
    this.retryable = options.retryable ?? ERROR_CODES[code].retryable;
    this.details = options.details ?? {};
    if (options.hint !== undefined) this.hint = options.hint;
  }

  /** The JSON-RPC numeric code. */
  get rpcCode(): number {
    return ERROR_CODES[this.code].code;
  }

  /** The CLI exit code this error maps to. */
  get exitCode(): ExitCode {
    return ERROR_CODES[this.code].exit;
  }

  /** Plain data, for storage and the wire. */
  toData(): ErrorData {
    const data: ErrorData = { code: this.code, message: this.message, retryable: this.retryable };
    if (Object.keys(this.details).length > 0) data.details = this.details;
    if (this.hint !== undefined) data.hint = this.hint;
    return data;
  }

  /** Rebuilds an error from its data form. */
  static fromData(data: ErrorData): GleitzeitError {
    const code = data.code in ERROR_CODES ? data.code : "INTERNAL_ERROR";
    return new GleitzeitError(code, data.message, {
      retryable: data.retryable,
      details: data.details,
      hint: data.hint,
    });
  }
}

/** The name for a JSON-RPC numeric code, if it is one of ours. */
export function codeFromNumber(n: number): ErrorCode | undefined {
  return BY_NUMBER.get(n);
}

/** Turns anything thrown into a GleitzeitError, keeping it if it already is one. */
export function toGleitzeitError(
  e: unknown,
  fallback: ErrorCode = "INTERNAL_ERROR",
): GleitzeitError {
  if (e instanceof GleitzeitError) return e;
  if (e instanceof Error) {
    return new GleitzeitError(fallback, e.message, { cause: e });
  }
  return new GleitzeitError(fallback, String(e));
}

/** One problem found while validating a file, with where it is. */
export interface Issue {
  /** Path inside the document, e.g. `tasks[2].dependencies[0]`. */
  path: string;
  message: string;
  line?: number;
  column?: number;
  hint?: string;
}

/** Formats a path array as `tasks[2].dependencies[0]`. */
export function formatPath(path: readonly (string | number)[]): string {
  let out = "";
  for (const p of path) {
    if (typeof p === "number") out += `[${p}]`;
    else out += out === "" ? p : `.${p}`;
  }
  return out;
}

/** An invalid workflow file: every problem at once. */
export class WorkflowValidationError extends GleitzeitError {
  readonly issues: Issue[];
  readonly file: string;

  constructor(file: string, issues: Issue[]) {
    const first = issues[0];
    const summary = issues.length === 1 && first ? first.message : `${issues.length} problems`;
    super("WORKFLOW_VALIDATION_ERROR", `${file}: ${summary}`, {
      details: { file, issues },
      hint: "fix the problems listed above (each gives its file:line:column)",
    });
    this.name = "WorkflowValidationError";
    this.issues = issues;
    this.file = file;
  }
}

/**
 * The answer for an attempt whose worker stopped answering (its lease ran out) while it
 * executed it: the worker that takes the attempt's entry over sends this to the run's
 * coordinator, which records the attempt as interrupted and starts another. A worker that is
 * being stopped (`stopped`) sends it itself for what it was executing.
 */
export function workerLostError(worker: string, what: string, stopped = false): GleitzeitError {
  return new GleitzeitError(
    "LEASE_EXPIRED",
    stopped
      ? `worker ${worker} was stopped (SIGTERM) while executing ${what}`
      : `worker ${worker} died while executing ${what} (its lease ran out)`,
    { details: { worker, worker_lost: true, ...(stopped ? { stopped: true } : {}) } },
  );
}

/** Whether `error` says the attempt's worker was lost (see {@link workerLostError}). */
export function isWorkerLost(error: GleitzeitError): boolean {
  return error.code === "LEASE_EXPIRED" && error.details.worker_lost === true;
}
