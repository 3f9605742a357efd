/** Built-in `echo/v1`: smoke tests and demos that need no outside service. @module */

import { sleep, systemClock } from "../../core/clock.ts";
import { GleitzeitError } from "../../core/errors.ts";
import type { CallContext, ProtocolSpec, Provider } from "../provider.ts";

/** The methods of `echo/v1`. */
export const ECHO_PROTOCOL: ProtocolSpec = {
  protocol: "echo/v1",
  description: "Built-in test protocol",
  methods: [
    {
      name: "echo",
      description: "Returns its params as the result",
      params: { type: "object" },
    },
    { name: "ping", description: "Returns {pong: true}", params: { type: "object" } },
    {
      name: "delay",
      description: "Waits `seconds`, then returns {slept}",
      params: {
        type: "object",
        properties: { seconds: { type: "number", minimum: 0 } },
        required: ["seconds"],
        additionalProperties: false,
      },
    },
    {
      name: "error",
      description: "Fails with `message`; retryable when asked",
      params: {
        type: "object",
        properties: { message: { type: "string" }, retryable: { type: "boolean" } },
        additionalProperties: false,
      },
    },
  ],
};

/** The built-in echo provider. */
export class EchoProvider implements Provider {
  readonly id = "echo";
  readonly protocol = "echo/v1";

  async call(method: string, params: Record<string, unknown>, ctx: CallContext): Promise<unknown> {
    switch (method) {
      case "echo":
        return params;
      case "ping":
        return { pong: true };
      case "delay": {
        const seconds = Number(params.seconds);
        await sleep(systemClock, seconds * 1000, ctx.signal);
        return { slept: seconds };
      }
      case "error":
        throw new GleitzeitError(
          "TASK_EXECUTION_FAILED",
          String(params.message ?? "requested error"),
          { retryable: params.retryable === true },
        );
      default:
        throw new GleitzeitError("METHOD_NOT_SUPPORTED", `echo/v1 has no method ${method}`);
    }
  }
}
