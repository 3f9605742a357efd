/**
 * JSON-RPC 2.0 message types and their validation, as the specification
 * (https://www.jsonrpc.org/specification) defines them: requests, notifications,
 * responses with exactly one of `result` (which may be `null`) or `error`, and batches.
 *
 * @module
 */

/** A request id: string, number or (discouraged, but legal in responses) null. */
export type JsonRpcId = string | number | null;

/** Params are by-position (array) or by-name (object), or absent. */
export type JsonRpcParams = unknown[] | Record<string, unknown>;

/** A call that expects a response. */
export interface JsonRpcRequest {
  jsonrpc: "2.0";
  id: string | number | null;
  method: string;
  params?: JsonRpcParams;
}

/** A call without an id: the server never answers it. */
export interface JsonRpcNotification {
  jsonrpc: "2.0";
  method: string;
  params?: JsonRpcParams;
}

/** The `error` member of a failed response. */
export interface JsonRpcErrorObject {
  code: number;
  message: string;
  data?: unknown;
}

/** A successful response; `result` may be `null`. */
export interface JsonRpcSuccess {
  jsonrpc: "2.0";
  id: JsonRpcId;
  result: unknown;
}

/** A failed response. */
export interface JsonRpcFailure {
  jsonrpc: "2.0";
  id: JsonRpcId;
  error: JsonRpcErrorObject;
}

/** Either kind of response. */
export type JsonRpcResponse = JsonRpcSuccess | JsonRpcFailure;

/** Any single message. */
export type JsonRpcMessage = JsonRpcRequest | JsonRpcNotification | JsonRpcResponse;

/** The error codes the specification reserves (-32768..-32000). */
export const JSONRPC_ERROR = {
  PARSE_ERROR: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  INTERNAL_ERROR: -32603,
} as const;

/** The messages the specification pairs with its codes. */
export const JSONRPC_ERROR_MESSAGE: Record<number, string> = {
  [-32700]: "Parse error",
  [-32600]: "Invalid Request",
  [-32601]: "Method not found",
  [-32602]: "Invalid params",
  [-32603]: "Internal error",
};

/** True for a code in the implementation-defined server error range. */
export function isServerErrorCode(code: number): boolean {
  return code >= -32099 && code <= -32000;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function isId(v: unknown): v is JsonRpcId {
  return v === null || typeof v === "string" || (typeof v === "number" && Number.isFinite(v));
}

/** Why a value is not a valid request or notification, or undefined when it is one. */
export function requestProblem(v: unknown): string | undefined {
  if (!isObject(v)) return "a request must be an object";
  if (v.jsonrpc !== "2.0") return `"jsonrpc" must be exactly "2.0"`;
  if (typeof v.method !== "string") return `"method" must be a string`;
  if ("id" in v && !isId(v.id)) return `"id" must be a string, a number or null`;
  if ("params" in v && !(Array.isArray(v.params) || isObject(v.params))) {
    return `"params" must be an array or an object`;
  }
  return undefined;
}

/** Why a value is not a valid response, or undefined when it is one. */
export function responseProblem(v: unknown): string | undefined {
  if (!isObject(v)) return "a response must be an object";
  if (v.jsonrpc !== "2.0") return `"jsonrpc" must be exactly "2.0"`;
  if (!("id" in v) || !isId(v.id)) return `"id" must be a string, a number or null`;
  const hasResult = "result" in v;
  const hasError = "error" in v;
  if (hasResult === hasError) return `a response must have exactly one of "result" and "error"`;
  if (hasError) {
    const e = v.error;
    if (!isObject(e)) return `"error" must be an object`;
    if (typeof e.code !== "number" || !Number.isInteger(e.code)) {
      return `"error.code" must be an integer`;
    }
    if (typeof e.message !== "string") return `"error.message" must be a string`;
  }
  return undefined;
}

/** A request (with id) or a notification (without). */
export function isRequest(v: unknown): v is JsonRpcRequest | JsonRpcNotification {
  return requestProblem(v) === undefined;
}

/** A call that carries an id and so expects a response. */
export function isCallWithId(v: unknown): v is JsonRpcRequest {
  return isRequest(v) && "id" in (v as object);
}

/** A valid response. */
export function isResponse(v: unknown): v is JsonRpcResponse {
  return responseProblem(v) === undefined;
}

/** A failed response. */
export function isFailure(v: JsonRpcResponse): v is JsonRpcFailure {
  return "error" in v;
}

/** Builds a request. */
export function request(
  id: string | number,
  method: string,
  params?: JsonRpcParams,
): JsonRpcRequest {
  return params === undefined
    ? { jsonrpc: "2.0", id, method }
    : { jsonrpc: "2.0", id, method, params };
}

/** Builds a notification. */
export function notification(method: string, params?: JsonRpcParams): JsonRpcNotification {
  return params === undefined ? { jsonrpc: "2.0", method } : { jsonrpc: "2.0", method, params };
}

/** Builds a successful response (`result` may be `null`, never undefined). */
export function success(id: JsonRpcId, result: unknown): JsonRpcSuccess {
  return { jsonrpc: "2.0", id, result: result === undefined ? null : result };
}

/** Builds a failed response; `message` defaults to the specification's text for the code. */
export function failure(
  id: JsonRpcId,
  code: number,
  message?: string,
  data?: unknown,
): JsonRpcFailure {
  const error: JsonRpcErrorObject = {
    code,
    message: message ?? JSONRPC_ERROR_MESSAGE[code] ?? "Server error",
  };
  if (data !== undefined) error.data = data;
  return { jsonrpc: "2.0", id, error };
}

/** The outcome of parsing one line or body of text. */
export type Parsed =
  | { ok: true; value: unknown }
  | { ok: false; error: string };

/** Parses JSON text without throwing. */
export function parseJson(text: string): Parsed {
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (e) {
    return { ok: false, error: e instanceof Error ? e.message : String(e) };
  }
}
