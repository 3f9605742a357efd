/**
 * The server side of JSON-RPC 2.0: turns request text into response text following the
 * specification to the letter (parse errors, invalid requests, notifications that are
 * never answered, batches answered as an array without the notifications' entries, an
 * empty batch answered with one Invalid Request). Used to serve Gleitzeit methods over
 * HTTP and by the tests as the reference peer.
 *
 * @module
 */

import { GleitzeitError } from "../../core/errors.ts";
import {
  failure,
  JSONRPC_ERROR,
  type JsonRpcParams,
  type JsonRpcResponse,
  parseJson,
  requestProblem,
  success,
} from "./messages.ts";
import { toRpcError } from "./rpc_errors.ts";

/** Implements one method; throws a GleitzeitError (or anything) to fail. */
export type MethodHandler = (params: JsonRpcParams | undefined) => unknown | Promise<unknown>;

/** Dispatches parsed or textual JSON-RPC 2.0 messages to method handlers. */
export class JsonRpcDispatcher {
  #methods: Map<string, MethodHandler>;

  constructor(methods: Record<string, MethodHandler> = {}) {
    this.#methods = new Map(Object.entries(methods));
  }

  /** Adds or replaces a method. */
  register(name: string, handler: MethodHandler): void {
    this.#methods.set(name, handler);
  }

  /** Answers a text payload; `undefined` means nothing is sent back (notifications only). */
  async handleText(text: string): Promise<string | undefined> {
    const parsed = parseJson(text);
    if (!parsed.ok) return JSON.stringify(failure(null, JSONRPC_ERROR.PARSE_ERROR));
    const out = await this.handle(parsed.value);
    return out === undefined ? undefined : JSON.stringify(out);
  }

  /** Answers a parsed payload (one message or a batch). */
  async handle(value: unknown): Promise<JsonRpcResponse | JsonRpcResponse[] | undefined> {
    if (Array.isArray(value)) {
      if (value.length === 0) return failure(null, JSONRPC_ERROR.INVALID_REQUEST);
      const all = await Promise.all(value.map((v) => this.#one(v)));
      const answered = all.filter((r): r is JsonRpcResponse => r !== undefined);
      return answered.length > 0 ? answered : undefined;
    }
    return await this.#one(value);
  }

  async #one(v: unknown): Promise<JsonRpcResponse | undefined> {
    if (requestProblem(v) !== undefined) return failure(null, JSONRPC_ERROR.INVALID_REQUEST);
    const msg = v as { id?: string | number | null; method: string; params?: JsonRpcParams };
    const isNotification = !("id" in msg);
    const id = msg.id ?? null;
    const handler = this.#methods.get(msg.method);
    if (!handler) {
      return isNotification ? undefined : failure(id, JSONRPC_ERROR.METHOD_NOT_FOUND);
    }
    try {
      const result = await handler(msg.params);
      return isNotification ? undefined : success(id, result);
    } catch (e) {
      if (isNotification) return undefined;
      const err = toRpcError(e);
      return failure(id, err.code, err.message, err.data);
    }
  }

  /** A `Deno.serve` handler: POST a payload, get the answer (204 when there is none). */
  httpHandler(): (req: Request) => Promise<Response> {
    return async (req) => {
      if (req.method !== "POST") {
        return new Response("JSON-RPC 2.0: use POST", { status: 405, headers: { allow: "POST" } });
      }
      const answer = await this.handleText(await req.text());
      if (answer === undefined) return new Response(null, { status: 204 });
      return new Response(answer, { headers: { "content-type": "application/json" } });
    };
  }
}

/** Throws the standard Invalid params error (for handlers). */
export function invalidParams(message = "Invalid params"): never {
  throw new GleitzeitError("INVALID_PARAMS", message);
}
