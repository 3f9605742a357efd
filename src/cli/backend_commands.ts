/** `backend get-stats | list-tasks | list-workflows | get-task | get-workflow | get-result | get-results-by-workflow`: the store, raw @module */

import type { Command } from "@commander-js/extra-typings";
import type { ExitCode } from "../core/errors.ts";
import { GleitzeitError } from "../core/errors.ts";
import { displayState } from "../engine/liveness.ts";
import { out, printJson } from "./output.ts";
import { taskJson } from "./run_commands.ts";
import {
  globalsOf,
  limitOf,
  type ListOptions,
  listOptions,
  listRuns,
  listTasks,
  mustRun,
  mustTask,
  printRuns,
  printTasks,
  runJson,
  withStore,
} from "./stored_state.ts";

/** Registers `backend get-stats | list-tasks | list-workflows | get-task | get-workflow | get-result | get-results-by-workflow`. */
export function registerBackendCommands(program: Command, setExit: (code: ExitCode) => void): void {
  const backend = program.command("backend").description("inspect the persistence backend");
  const bStats = backend.command("get-stats").description("counts of runs and tasks by state");
  bStats.action(async () => {
    await withStore(globalsOf(bStats), async (store) => {
      const stats = await store.stats();
      if (globalsOf(bStats).json) return printJson(stats);
      out(`backend: ${stats.backend}`);
      out(
        `runs: ${stats.totalRuns}  ${
          Object.entries(stats.runs).map(([k, v]) => `${k}=${v}`).join(" ")
        }`,
      );
      out(
        `tasks: ${stats.totalTasks}  ${
          Object.entries(stats.tasks).map(([k, v]) => `${k}=${v}`).join(" ")
        }`,
      );
    });
    setExit(0);
  });
  const bTasks = listOptions(backend.command("list-tasks").description("stored tasks"), true);
  bTasks.action(async () => {
    await withStore(
      globalsOf(bTasks),
      async (store) =>
        printTasks(
          await listTasks(store, bTasks.opts() as ListOptions),
          globalsOf(bTasks).json === true,
        ),
    );
    setExit(0);
  });
  const bRuns = listOptions(backend.command("list-workflows").description("stored runs"), false);
  bRuns.action(async () => {
    await withStore(
      globalsOf(bRuns),
      async (store) =>
        printRuns(
          await listRuns(store, bRuns.opts() as ListOptions),
          globalsOf(bRuns).json === true,
        ),
    );
    setExit(0);
  });
  const bTask = backend.command("get-task").description("one task as JSON").argument("<task-id>");
  bTask.action(async (id) => {
    await withStore(globalsOf(bTask), async (store) => {
      const t = await mustTask(store, id);
      printJson({ run_id: t.runId, ...taskJson(t) });
    });
    setExit(0);
  });
  const bRun = backend.command("get-workflow").description("one run as JSON").argument("<run-id>");
  bRun.action(async (id) => {
    await withStore(globalsOf(bRun), async (store) => {
      const run = await mustRun(store, id);
      const tasks = await store.listTasks({ runId: id });
      printJson({ ...runJson(run), tasks: tasks.map(taskJson) });
    });
    setExit(0);
  });
  const bResult = backend.command("get-result").description("one task's result as JSON").argument(
    "<task-id>",
  );
  bResult.action(async (id) => {
    await withStore(globalsOf(bResult), async (store) => {
      const t = await mustTask(store, id);
      printJson({
        task_id: t.id,
        state: t.state,
        result: t.result ?? null,
        error: t.error ?? null,
      });
    });
    setExit(0);
  });
  const bByName = backend.command("get-results-by-workflow")
    .description("results of the latest run of a workflow (by name)").argument("<name>")
    .option("--limit <n>", "runs to include (newest first)", "1");
  bByName.action(async (name, opts) => {
    await withStore(globalsOf(bByName), async (store) => {
      // the newest finished runs (a queued or running run has no results yet)
      const all = await store.listRuns({ workflowName: name });
      const finished = all.filter((r) => r.state === "completed" || r.state === "failed");
      const runs = (finished.length > 0 ? finished : all).slice(0, limitOf(opts, 1));
      if (runs.length === 0) {
        throw new GleitzeitError("WORKFLOW_NOT_FOUND", `no runs of workflow '${name}'`, {
          hint: "names are exact; see `gleitzeit workflow list`",
        });
      }
      const out = [];
      for (const run of runs) {
        const tasks = await store.listTasks({ runId: run.id });
        const results: Record<string, unknown> = {};
        for (const t of tasks) {
          results[t.taskId] = t.state === "completed" ? t.result ?? null : null;
        }
        out.push({ run_id: run.id, state: displayState(run), results });
      }
      printJson(out);
    });
    setExit(0);
  });
}
