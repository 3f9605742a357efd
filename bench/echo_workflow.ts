/** The workflow the benchmarks run: `n` no-op echo/v1 tasks, independent or chained. @module */

import { NO_RETRY } from "../src/core/retry.ts";
import type { Workflow } from "../src/core/workflow.ts";

/** `n` echo tasks `t0..t(n-1)`, each depending on the previous one when `chained`. */
export function echoWorkflow(
  n: number,
  options: { chained?: boolean; name?: string; params?: (i: number) => Record<string, unknown> } =
    {},
): Workflow {
  return {
    name: options.name ?? `bench-${n}`,
    params: {},
    onFailure: "fail_fast",
    tasks: Array.from({ length: n }, (_, i) => ({
      id: `t${i}`,
      name: `t${i}`,
      protocol: "echo/v1",
      method: "echo",
      params: options.params?.(i) ?? {},
      dependencies: options.chained && i > 0 ? [`t${i - 1}`] : [],
      priority: 50,
      retry: NO_RETRY,
      continueOnFailure: false,
    })),
  };
}
