/** Shared helpers for the loader tests: a real registry with the built-in protocols. @module */

import { deepStrictEqual, fail, ok } from "node:assert/strict";
import { type Issue, WorkflowValidationError } from "../../src/core/errors.ts";
import { parseWorkflow } from "../../src/loader/load_workflow.ts";
import { ECHO_PROTOCOL } from "../../src/providers/echo/echo_provider.ts";
import { MCP_PROTOCOL_FAMILY } from "../../src/providers/mcp/mcp_methods.ts";
import { LLM_PROTOCOL } from "../../src/providers/ollama/llm_methods.ts";
import { PYTHON_PROTOCOL } from "../../src/providers/python/python_methods.ts";
import { ProviderRegistry } from "../../src/providers/registry.ts";

/** A ProviderRegistry that knows echo/v1, python/v1, llm/v1 and mcp/*. */
export function builtinCatalog(): ProviderRegistry {
  const registry = new ProviderRegistry();
  for (const spec of [ECHO_PROTOCOL, PYTHON_PROTOCOL, LLM_PROTOCOL, MCP_PROTOCOL_FAMILY]) {
    registry.registerProtocol(spec);
  }
  return registry;
}

export const catalog = builtinCatalog();

/** Lines joined by newlines, so tests can write YAML without template indentation noise. */
export const yaml = (...lines: string[]) => lines.join("\n") + "\n";

/** Parses text that must be invalid; returns its issues. */
export function issuesOf(text: string, file = "wf.yaml"): Issue[] {
  try {
    parseWorkflow(text, file, catalog);
  } catch (e) {
    if (e instanceof WorkflowValidationError) return e.issues;
    throw e;
  }
  fail("expected a WorkflowValidationError");
}

/** Asserts exactly one issue at `path`, returning it. */
export function issueAt(issues: Issue[], path: string): Issue {
  const found = issues.filter((i) => i.path === path);
  ok(found.length === 1, `expected one issue at ${path}, got ${JSON.stringify(issues, null, 1)}`);
  return found[0]!;
}

/** Asserts where an issue is. */
export function assertAt(issue: Issue, line: number, column: number): void {
  deepStrictEqual({ line: issue.line, column: issue.column }, { line, column }, issue.message);
}
