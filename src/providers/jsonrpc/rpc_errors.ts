/**
 * Mapping between JSON-RPC error objects and GleitzeitError, both ways, so a failure keeps
 * its code and retryable flag across a process boundary. On the wire the numeric code is
 * ours (SPEC section 10) and `error.data` carries {@link ErrorData} (`code` name,
 * `retryable`, `details`, `hint`). Errors from providers that know nothing of Gleitzeit
 * still map: a known number becomes its name, anything else becomes PROVIDER_ERROR with
 * the original number kept in `details.rpcCode`.
 *
 * @module
 */

import {
  codeFromNumber,
  ERROR_CODES,
  type ErrorCode,
  type ErrorData,
  GleitzeitError,
  toGleitzeitError,
} from "../../core/errors.ts";
import type { JsonRpcErrorObject } from "./messages.ts";

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** The JSON-RPC error object for any thrown value. */
export function toRpcError(e: unknown): JsonRpcErrorObject {
  const err = toGleitzeitError(e);
  const data: ErrorData = err.toData();
  const rpcCode = typeof err.details.rpcCode === "number" ? err.details.rpcCode : err.rpcCode;
  return { code: rpcCode, message: err.message, data };
}

/**
 * The GleitzeitError for a JSON-RPC error object received from `source` (a provider id,
 * used in the message). `error.data.retryable` (boolean) overrides the table's flag.
 */
export function fromRpcError(error: JsonRpcErrorObject, source?: string): GleitzeitError {
  const data = isObject(error.data) ? error.data : undefined;
  const named = typeof data?.code === "string" && data.code in ERROR_CODES
    ? data.code as ErrorCode
    : undefined;
  const code: ErrorCode = named ?? codeFromNumber(error.code) ?? "PROVIDER_ERROR";
  const details: Record<string, unknown> = isObject(data?.details) ? { ...data.details } : {};
  details.rpcCode = error.code;
  if (source !== undefined) details.provider = source;
  if (error.data !== undefined && !named) details.data = error.data;
  const retryable = typeof data?.retryable === "boolean" ? data.retryable : undefined;
  const hint = typeof data?.hint === "string" ? data.hint : undefined;
  const message = source !== undefined && !error.message.startsWith(source)
    ? `${source}: ${error.message}`
    : error.message;
  return new GleitzeitError(code, message, { details, retryable, hint });
}
