/**
 * Engine overhead: tasks/s of workflows of independent echo/v1 tasks (in-memory store) beside a
 * bare dispatcher loop that calls the same provider directly, measured in the same run.
 *
 *   deno run -A bench/engine_bench.ts [--tasks 100,10000] [--rounds 5]
 */

import { echoWorkflow } from "./echo_workflow.ts";
import { Engine } from "../src/engine/engine.ts";
import { MemoryStore } from "../src/persistence/memory_store.ts";
import { ECHO_PROTOCOL, EchoProvider } from "../src/providers/echo/echo_provider.ts";
import { ProviderRegistry } from "../src/providers/registry.ts";

const arg = (name: string, def: string) => {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 ? Deno.args[i + 1]! : def;
};
const sizes = arg("tasks", "100,10000").split(",").map(Number);
const rounds = Number(arg("rounds", "5"));

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

const registry = new ProviderRegistry();
registry.registerProtocol(ECHO_PROTOCOL);
registry.register(new EchoProvider());
/**
 * The baseline: a bare dispatcher loop: the same registry (params validated against the method's
 * schema, routed to the provider) called once per task in a plain loop, nothing recorded.
 */
async function bareLoop(n: number): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const c = new AbortController();
    await registry.call("echo/v1", "echo", { i }, {
      signal: c.signal,
      runId: "r",
      taskId: `t${i}`,
      attempt: 1,
    });
  }
  return performance.now() - t0;
}

async function engineRun(n: number): Promise<number> {
  const engine = new Engine({ dispatcher: registry, store: new MemoryStore(), maxConcurrency: 64 });
  const wf = echoWorkflow(n, { params: (i) => ({ i }) });
  const t0 = performance.now();
  const out = await engine.run(wf);
  const ms = performance.now() - t0;
  if (out.state !== "completed") throw new Error(`run ${out.state}`);
  return ms;
}

console.log(`engine overhead benchmark (median of ${rounds} rounds, in-memory store, echo/v1)`);
console.log("tasks     bare loop tasks/s   engine tasks/s   ratio (target >= 0.05)");
for (const n of sizes) {
  await bareLoop(n);
  await engineRun(n); // warm-up
  const bare: number[] = [];
  const eng: number[] = [];
  for (let r = 0; r < rounds; r++) {
    bare.push(await bareLoop(n));
    eng.push(await engineRun(n));
  }
  const bareRate = n / (median(bare) / 1000);
  const engRate = n / (median(eng) / 1000);
  console.log(
    `${String(n).padEnd(9)} ${bareRate.toFixed(0).padStart(17)} ${
      engRate.toFixed(0).padStart(16)
    }   ${(engRate / bareRate).toFixed(3)}x`,
  );
}
