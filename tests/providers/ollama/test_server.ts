/**
 * Helpers for tests against `../shared/ollama-test-server` (an Ollama-compatible server with a
 * tiny real model). `startTestServer` is idempotent per port; a test never skips when the
 * server cannot start, it fails saying what is missing.
 *
 * @module
 */

import assert from "node:assert/strict";
import { GleitzeitError } from "../../../src/core/errors.ts";
import type { CallContext } from "../../../src/providers/provider.ts";

const SERVER_DIR = new URL("../../../../shared/ollama-test-server/", import.meta.url).pathname;

/**
 * The port every test file shares: the server's default, 11435, or GLEITZEIT_TEST_OLLAMA_PORT
 * (where another program holds 11435). The server stays up after the run, for the next one.
 */
export const SHARED_PORT = Number(Deno.env.get("GLEITZEIT_TEST_OLLAMA_PORT") || 11435);

/** Starts (or finds running) the test server on `port`; resolves with its URL. */
export async function startTestServer(port = SHARED_PORT): Promise<string> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command("bash", {
      args: [`${SERVER_DIR}start.sh`, String(port)],
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (e) {
    throw new Error(`cannot run bash to start the Ollama test server: ${(e as Error).message}`);
  }
  const stdout = new TextDecoder().decode(out.stdout);
  const line = stdout.split("\n").find((l) => l.startsWith("OLLAMA_URL="));
  if (!out.success || !line) {
    throw new Error(
      `the Ollama test server (${SERVER_DIR}start.sh ${port}) did not start; it needs Linux ` +
        `x86_64, bash and Node >= 20 with npm (install them):\n${stdout}\n` +
        new TextDecoder().decode(out.stderr),
    );
  }
  return line.slice("OLLAMA_URL=".length).trim();
}

/** Stops the test server on `port` (only for ports a test file started for itself). */
export async function stopTestServer(port: number): Promise<void> {
  await new Deno.Command("bash", { args: [`${SERVER_DIR}stop.sh`, String(port)] }).output();
}

/** A free TCP port on 127.0.0.1 where nothing listens (for "server down" tests). */
export function deadPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** The server's scheduler state (`GET /_test/config`). */
export interface ServerConfig {
  num_parallel: number;
  max_queue: number;
  runners: Record<string, { loaded: boolean; active: number; queued: number }>;
}

/** Reads `/_test/config`. */
export async function serverConfig(url: string): Promise<ServerConfig> {
  const r = await fetch(`${url}/_test/config`);
  return await r.json();
}

/** Changes limits through `POST /_test/config`. */
export async function setServerConfig(
  url: string,
  config: { num_parallel?: number; max_queue?: number },
): Promise<void> {
  const r = await fetch(`${url}/_test/config`, { method: "POST", body: JSON.stringify(config) });
  await r.body?.cancel();
  if (!r.ok) throw new Error(`POST /_test/config answered ${r.status}`);
}

/** Restores the start-up limits (`DELETE /_test/config`). */
export async function resetServerConfig(url: string): Promise<void> {
  const r = await fetch(`${url}/_test/config`, { method: "DELETE" });
  await r.body?.cancel();
}

/** One request as the server recorded it. */
export interface RecordedRequest {
  id: number;
  time: string;
  method: string;
  path: string;
  headers: Record<string, string>;
  body: Record<string, unknown> | null;
}

/** Reads `/_test/requests`, optionally filtered by path. */
export async function recordedRequests(url: string, path?: string): Promise<RecordedRequest[]> {
  const q = path ? `?path=${encodeURIComponent(path)}` : "";
  const r = await fetch(`${url}/_test/requests${q}`);
  const body = await r.json();
  return Array.isArray(body) ? body : body.requests;
}

/** A call context with a fresh signal; progress chunks are collected in `chunks`. */
export function testContext(
  overrides: Partial<CallContext> = {},
): CallContext & { chunks: string[]; controller: AbortController } {
  const controller = new AbortController();
  const chunks: string[] = [];
  return {
    signal: controller.signal,
    runId: "run-test",
    taskId: "task-test",
    attempt: 1,
    onProgress: (c) => chunks.push(c),
    ...overrides,
    chunks,
    controller,
  };
}

/** Polls `check` every 10 ms until it is true or `timeoutMs` passes. */
export async function waitFor(
  check: () => Promise<boolean> | boolean,
  timeoutMs = 5_000,
  what = "condition",
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/** Awaits `p`, which must reject with a GleitzeitError, and returns that error. */
export async function rejects(p: Promise<unknown>): Promise<GleitzeitError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof GleitzeitError, `expected a GleitzeitError, got ${e}`);
    return e;
  }
  throw new Error("expected a rejection");
}
