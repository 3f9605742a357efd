/**
 * The work shared by `gleitzeit worker` processes through Redis streams with one consumer group:
 *
 *   <prefix>queue:runs    runs to coordinate (`--detach` adds them); a worker that takes one
 *                         executes it with the engine, whose tasks go to the stream below
 *   <prefix>queue:tasks:<protocol>  task attempts of one protocol to execute: method, resolved
 *                         params, context; a worker reads the streams of the protocols it has
 *                         a healthy provider of (see ProviderRegistry.protocolHealth)
 *   <prefix>queue:tasks   the one tasks stream of older versions: still read (and taken over
 *                         from) by every worker, so that attempts queued there are not lost
 *   <prefix>queue:task-streams  set of the protocols that have a stream above
 *   <prefix>replies:<owner>  outcomes, read by the coordinator that dispatched them
 *   <prefix>cancel:<dispatch id>  set when the coordinator aborts an attempt
 *   <prefix>cancel-run:<run id>   set by `workflow cancel` for the worker coordinating the run
 *   <prefix>workers:<owner>       present while that worker lives (expires after 2 leases), with
 *                                 the protocols it takes tasks of now (`protocols`)
 *
 * An entry stays pending (XPENDING) until the worker that read it is done and acknowledges it.
 * A working worker touches its pending entries (XCLAIM ... JUSTID resets their idle time) every
 * few seconds; entries idle longer than the lease belong to a worker that died, and the next
 * worker to look takes them over (XAUTOCLAIM).
 *
 * @module
 */

import { type ErrorData, GleitzeitError, isWorkerLost } from "../core/errors.ts";
import type { Dispatcher } from "../engine/run_execution.ts";
import type { CallContext } from "../providers/provider.ts";
import type { RedisStore } from "../persistence/redis_store.ts";

/** The consumer group every worker joins. */
export const GROUP = "workers";

/** Stream and key names under one prefix. */
export interface QueueKeys {
  runs: string;
  /** The stream of the task attempts of `protocol`. */
  tasks(protocol: string): string;
  /** The single tasks stream of older versions (drained, never added to). */
  legacyTasks: string;
  /** Set of the protocols whose stream exists (for looking at all of them). */
  taskStreams: string;
  replies(owner: string): string;
  cancel(dispatchId: string): string;
  cancelRun(runId: string): string;
  /** Present (with a TTL) while the worker lives. */
  worker(owner: string): string;
  /**
   * Present while the worker's own lease runs: renewed every third of it, with the lease as
   * its TTL (kept by Redis: no clock of ours is compared). Once it is gone, what the worker
   * held may be taken over.
   */
  lease(owner: string): string;
  /** Sorted set of workers by when their registration expires (ms). */
  workers: string;
}

/** The key names of the queues under `prefix`. */
export function queueKeys(prefix: string): QueueKeys {
  return {
    runs: `${prefix}queue:runs`,
    tasks: (protocol) => `${prefix}queue:tasks:${protocol}`,
    legacyTasks: `${prefix}queue:tasks`,
    taskStreams: `${prefix}queue:task-streams`,
    replies: (owner) => `${prefix}replies:${owner}`,
    cancel: (id) => `${prefix}cancel:${id}`,
    cancelRun: (id) => `${prefix}cancel-run:${id}`,
    worker: (owner) => `${prefix}workers:${owner}`,
    lease: (owner) => `${prefix}lease:${owner}`,
    workers: `${prefix}workers`,
  };
}

/** One stream entry: its id and fields (and its stream, when read from several). */
export interface StreamEntry {
  id: string;
  fields: Record<string, string>;
  stream?: string;
}

/** A task attempt as it travels to a worker: the call, and its context without the signal. */
export interface TaskJob {
  protocol: string;
  method: string;
  params: Record<string, unknown>;
  ctx: Pick<CallContext, "runId" | "taskId" | "attempt" | "timeoutMs" | "baseDir" | "sandbox">;
}

/** Replies are kept this long when nobody reads them (a coordinator that died). */
export const REPLY_TTL_SECONDS = 3600;

/**
 * Consecutive failures of one kind of Redis call, and whether to give up: after `giveUpMs`
 * counted from the first failure (not from the last success: a process that was itself
 * stopped, SIGSTOP or a paused VM, tries again first), and three tries at least.
 */
export class FailureStreak {
  #since: number | undefined;
  #count = 0;

  constructor(readonly giveUpMs: number) {}

  /** One more failure; true when it is time to give up. */
  failed(): boolean {
    this.#since ??= Date.now();
    this.#count++;
    return this.#count >= 3 && Date.now() - this.#since > this.giveUpMs;
  }

  /** A success; true when it ends a streak of failures. */
  succeeded(): boolean {
    const ended = this.#count > 0;
    this.#since = undefined;
    this.#count = 0;
    return ended;
  }
}

/** Creates the consumer group of `stream` (and the stream) unless it exists. */
export async function ensureGroup(store: RedisStore, stream: string): Promise<void> {
  try {
    await store.command(["XGROUP", "CREATE", stream, GROUP, "0", "MKSTREAM"]);
  } catch (e) {
    if (!String((e as Error).message).includes("BUSYGROUP")) throw e;
  }
}

/** Puts a stored run on the queue of runs for workers to coordinate. */
export async function enqueueRun(store: RedisStore, runId: string): Promise<void> {
  const keys = queueKeys(store.prefix);
  await ensureGroup(store, keys.runs);
  await store.command(["XADD", keys.runs, "*", "run", runId]);
}

/** Parses the entries of an XREADGROUP / XREAD / XAUTOCLAIM reply's entry list. */
export function parseEntries(raw: unknown): StreamEntry[] {
  if (!Array.isArray(raw)) return [];
  const out: StreamEntry[] = [];
  for (const item of raw) {
    // XAUTOCLAIM on Redis < 7 lists deleted entries as nil
    if (!Array.isArray(item) || !Array.isArray(item[1])) continue;
    const flat = item[1] as string[];
    const fields: Record<string, string> = {};
    for (let i = 0; i + 1 < flat.length; i += 2) fields[String(flat[i])] = String(flat[i + 1]);
    out.push({ id: String(item[0]), fields });
  }
  return out;
}

/** Whether a reply stream's entry is an attempt's answer (not a notice that it began). */
export function isAnswer(entry: StreamEntry): boolean {
  return entry.fields.ok !== undefined;
}

/** Entries of every stream of an XREADGROUP or XREAD reply, each with its stream. */
export function readStreams(raw: unknown): StreamEntry[] {
  if (!Array.isArray(raw)) return [];
  const out: StreamEntry[] = [];
  for (const item of raw) {
    if (!Array.isArray(item)) continue;
    const stream = String(item[0]);
    for (const entry of parseEntries(item[1])) out.push({ ...entry, stream });
  }
  return out;
}

/** Every tasks stream of this store: the protocols' streams, and the older single one. */
export async function allTaskStreams(store: RedisStore): Promise<string[]> {
  const keys = queueKeys(store.prefix);
  const protocols = await store.command(["SMEMBERS", keys.taskStreams]) as string[];
  return [keys.legacyTasks, ...protocols.sort().map((p) => keys.tasks(p))];
}

/** Entries of one stream from an XREADGROUP or XREAD reply. */
export function readReply(raw: unknown): StreamEntry[] {
  if (!Array.isArray(raw) || raw.length === 0) return [];
  const first = raw[0] as unknown[];
  return parseEntries(first?.[1]);
}

/** Options of a {@link RemoteDispatcher}. */
export interface RemoteDispatcherOptions {
  /** Reading replies failing this long (ms, three tries at least) fails the attempts. */
  giveUpMs?: number;
  /**
   * An attempt that no live worker can take (none has a healthy provider of its protocol)
   * for this long (ms) is withdrawn and fails, retryable (PROVIDER_UNHEALTHY when a worker
   * has an unhealthy one, else PROVIDER_UNAVAILABLE). Default {@link UNSERVED_MS}.
   */
  unservedMs?: number;
  /**
   * Which tasks stream an attempt goes to: its protocol, or a part of it that only some
   * workers serve (see ProviderRegistry.routeOf). Default: its protocol.
   */
  routeOf?: (protocol: string, ctx: CallContext) => string;
}

/** Default of {@link RemoteDispatcherOptions.unservedMs}: 60 s. */
export const UNSERVED_MS = 60_000;

/** How often the live workers' protocols are looked at while attempts wait (ms, at most). */
const SERVED_CHECK_MS = 1000;
/**
 * How long an attempt of a protocol that every live worker lacks (an MCP server none has
 * configured) waits for one that has it, before it fails (retryable): a worker that has it
 * may be restarting. (At most `unservedMs`.)
 */
const FAMILY_GRACE_MS = 10_000;

/**
 * The engine's dispatcher on a worker: each task attempt goes to its protocol's tasks stream,
 * for any worker that serves the protocol to execute; the outcome comes back on this
 * coordinator's reply stream, after a notice that the attempt began (`began`, see
 * Dispatcher.queues). Aborting an attempt (timeout, cancel) tells the executing worker to
 * stop it. An attempt no live worker can take for `unservedMs` is withdrawn and fails.
 */
export class RemoteDispatcher implements Dispatcher {
  readonly queues = true;
  readonly #store: RedisStore;
  readonly #reader: RedisStore;
  readonly #keys: QueueKeys;
  readonly #replyKey: string;
  readonly #pending = new Map<
    string,
    {
      resolve: (v: unknown) => void;
      reject: (e: unknown) => void;
      /** The attempt's entry in the tasks stream, once added. */
      entry?: string;
      protocol: string;
      /** Its protocol's tasks stream. */
      stream: string;
      /** A worker began it (or answered it), or took its entry: it is not withdrawn. */
      taken?: boolean;
      /** Since when no live worker has served its protocol (ms). */
      unservedSince?: number;
      /** Called once, when a worker begins it (or answers it: a notice can be lost). */
      onBegin?: (executor?: string) => Promise<unknown> | void;
      /** Called as the worker says it waits, or waits no more, for a provider's free place. */
      onWaiting?: (waiting: boolean) => void;
    }
  >();
  #closed = false;
  #loop: Promise<void>;
  #seq = 0;
  /**
   * Makes this dispatcher's dispatch ids its own: another coordinator of the same run (after a
   * takeover) counts from 1 again, and an id's cancel flag must not reach its attempts.
   */
  readonly #nonce = crypto.randomUUID().slice(0, 8);
  /** Attempts being aborted: the worker that began each, should its notice come meanwhile. */
  readonly #aborting = new Map<string, string | undefined>();

  readonly #giveUpMs: number;
  readonly #unservedMs: number;
  readonly #routeOf: (protocol: string, ctx: CallContext) => string;
  #watch: Promise<void>;
  #wakeWatch?: () => void;

  /**
   * `store` sends, `reader` (a connection of its own) blocks on the replies. Attempts in
   * flight fail only once reading has failed for `giveUpMs` (three tries at least; default
   * 15 s).
   */
  constructor(
    store: RedisStore,
    reader: RedisStore,
    owner: string,
    options: RemoteDispatcherOptions = {},
  ) {
    this.#store = store;
    this.#reader = reader;
    this.#giveUpMs = options.giveUpMs ?? 15_000;
    this.#unservedMs = options.unservedMs ?? UNSERVED_MS;
    this.#routeOf = options.routeOf ?? ((protocol) => protocol);
    this.#keys = queueKeys(store.prefix);
    this.#replyKey = this.#keys.replies(owner);
    this.#loop = this.#readReplies();
    this.#watch = this.#watchServed();
  }

  async call(
    protocol: string,
    method: string,
    params: Record<string, unknown>,
    ctx: CallContext,
  ): Promise<unknown> {
    const dispatchId = `${ctx.runId}/${ctx.taskId}/${ctx.attempt}/${this.#nonce}.${++this.#seq}`;
    const job: TaskJob = {
      protocol,
      method,
      params,
      ctx: { runId: ctx.runId, taskId: ctx.taskId, attempt: ctx.attempt },
    };
    if (ctx.timeoutMs !== undefined) job.ctx.timeoutMs = ctx.timeoutMs;
    if (ctx.baseDir !== undefined) job.ctx.baseDir = ctx.baseDir;
    if (ctx.sandbox !== undefined) job.ctx.sandbox = ctx.sandbox;
    // (its route: a part of the protocol that only some workers serve, python/v1#basic)
    const route = this.#routeOf(protocol, ctx);
    const stream = this.#keys.tasks(route);
    const outcome = new Promise<unknown>((resolve, reject) => {
      this.#pending.set(dispatchId, {
        resolve,
        reject,
        onBegin: ctx.onBegin,
        ...(ctx.onWaiting ? { onWaiting: ctx.onWaiting } : {}),
        protocol: route,
        stream,
      });
    });
    const onAbort = async () => {
      const reason = ctx.signal.reason;
      const waiting = this.#pending.get(dispatchId);
      this.#pending.delete(dispatchId);
      this.#aborting.set(dispatchId, undefined);
      // The executing worker stops it; but not when this coordinator lost the run (the
      // engine aborts with LEASE_EXPIRED): the run's new coordinator may take its answer.
      if (!(reason instanceof GleitzeitError && reason.code === "LEASE_EXPIRED")) {
        try {
          await this.#store.command(["SET", this.#keys.cancel(dispatchId), "1", "EX", "3600"]);
          // Not begun as far as this process knows: from the flag on, no worker begins it,
          // so a notice that one did is on the reply stream already (the still-wanted check
          // is atomic): then it did start, and is on record so.
          const executor = waiting?.onBegin
            ? this.#aborting.get(dispatchId) ?? await this.#beganNotice(dispatchId)
            : undefined;
          if (executor !== undefined) {
            const onBegin = waiting!.onBegin!;
            waiting!.onBegin = undefined;
            await onBegin(executor);
          } else if (waiting?.entry !== undefined) {
            // not begun: out of its stream unless a worker read it (which then drops it), so
            // that a stream no worker reads now does not keep it
            await this.#store.command([
              "EVAL",
              WITHDRAW,
              "2",
              waiting.stream,
              this.#keys.cancel(dispatchId),
              GROUP,
              waiting.entry,
            ]);
          }
        } catch {
          // Redis failing: the attempt ends here all the same
        }
      }
      this.#aborting.delete(dispatchId);
      waiting?.reject(reason);
    };
    ctx.signal.addEventListener("abort", onAbort, { once: true });
    try {
      const entry = await this.#store.command([
        "EVAL",
        DISPATCH,
        "2",
        stream,
        this.#keys.taskStreams,
        route,
        dispatchId,
        this.#replyKey,
        JSON.stringify(job),
        GROUP,
      ]);
      const waiting = this.#pending.get(dispatchId);
      if (waiting) waiting.entry = String(entry);
      else if (
        ctx.signal.aborted &&
        !(ctx.signal.reason instanceof GleitzeitError && ctx.signal.reason.code === "LEASE_EXPIRED")
      ) {
        // aborted before the entry was there (onAbort had none to withdraw): withdrawn now,
        // unless a worker read it (its cancel flag is set: that worker drops it)
        await this.#store.command([
          "EVAL",
          WITHDRAW,
          "2",
          stream,
          this.#keys.cancel(dispatchId),
          GROUP,
          String(entry),
        ]).catch(() => {});
      }
      return await outcome;
    } finally {
      this.#pending.delete(dispatchId);
      ctx.signal.removeEventListener("abort", onAbort);
    }
  }

  /** The worker that began `dispatchId`, if this coordinator's reply stream says one did. */
  async #beganNotice(dispatchId: string): Promise<string | undefined> {
    const entries = parseEntries(await this.#store.command(["XRANGE", this.#replyKey, "-", "+"]));
    return entries.find((e) => e.fields.d === dispatchId && e.fields.began !== undefined)
      ?.fields.worker;
  }

  async #readReplies(): Promise<void> {
    // The stream is this process's own (the owner id carries a nonce): read it from the start.
    let last = "0-0";
    // The answers wait in the stream: a failed read (a stall, this process stopped and its
    // command timed out meanwhile) is tried again; only a Redis gone for good fails them.
    const streak = new FailureStreak(this.#giveUpMs);
    while (!this.#closed) {
      let raw: unknown;
      try {
        raw = await this.#reader.command([
          "XREAD",
          "COUNT",
          "256",
          "BLOCK",
          "500",
          "STREAMS",
          this.#replyKey,
          last,
        ]);
      } catch (e) {
        if (this.#closed) return;
        if (streak.failed()) {
          // Redis is gone: every attempt in flight fails (retryable); the run stays resumable.
          const err = e instanceof GleitzeitError ? e : new GleitzeitError(
            "PERSISTENCE_UNAVAILABLE",
            `reading task outcomes: ${(e as Error).message}`,
          );
          for (const p of this.#pending.values()) p.reject(err);
          this.#pending.clear();
        }
        await new Promise((r) => setTimeout(r, 500));
        continue;
      }
      if (streak.succeeded()) await this.#checkEntries(raw);
      const entries = readReply(raw);
      // starts being recorded: the stream keeps their notices until they are (should this
      // process die first, the next coordinator finds them there)
      const starts: Promise<unknown>[] = [];
      for (const entry of entries) {
        last = entry.id;
        const waiting = this.#pending.get(entry.fields.d ?? "");
        if (!waiting) {
          // answered already (a task run twice after a reclaim), or aborted: a notice that one
          // being aborted began is kept for its abort to find (the stream is trimmed below)
          if (entry.fields.began !== undefined && this.#aborting.has(entry.fields.d ?? "")) {
            this.#aborting.set(entry.fields.d!, entry.fields.worker ?? "");
          }
          continue;
        }
        const begin = () => {
          waiting.taken = true;
          const onBegin = waiting.onBegin;
          waiting.onBegin = undefined;
          const started = onBegin?.(entry.fields.worker);
          if (started) starts.push(started);
        };
        if (!isAnswer(entry)) {
          if (entry.fields.began !== undefined) begin();
          else if (entry.fields.waiting !== undefined) {
            waiting.onWaiting?.(entry.fields.waiting === "1");
          }
          continue;
        }
        this.#pending.delete(entry.fields.d!);
        try {
          const body = JSON.parse(entry.fields.body ?? "null");
          if (entry.fields.ok === "1") {
            begin();
            waiting.resolve(body);
          } else {
            const error = GleitzeitError.fromData(body as ErrorData);
            if (!isWorkerLost(error)) begin(); // (one lost before it began never did)
            else {
              // a worker only paused (SIGSTOP, a partition) stops it once it goes on
              this.#store.command(["SET", this.#keys.cancel(entry.fields.d!), "1", "EX", "3600"])
                .catch(() => {});
            }
            waiting.reject(error);
          }
        } catch (e) {
          begin();
          waiting.reject(e);
        }
      }
      if (entries.length > 0) {
        await Promise.allSettled(starts);
        await this.#reader.command(["XTRIM", this.#replyKey, "MINID", entries.at(-1)!.id])
          .catch(() => {});
      }
    }
  }

  /** Looks at the attempts waiting for a worker every second (or quarter of `unservedMs`). */
  async #watchServed(): Promise<void> {
    const every = Math.min(SERVED_CHECK_MS, Math.max(50, this.#unservedMs / 4));
    while (!this.#closed) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, every);
        this.#wakeWatch = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      if (this.#closed) return;
      await this.#checkServed().catch(() => {}); // (Redis failing: looked at next time)
    }
  }

  /**
   * Attempts that wait for a worker while no live worker serves their protocol (none has a
   * healthy provider of it: see Worker): once that has lasted `unservedMs`, each is withdrawn
   * from its stream, unless a worker took it meanwhile, and fails, retryable (the task's
   * `retry` decides, as for any provider failure), instead of waiting for ever.
   */
  async #checkServed(): Promise<void> {
    const waiting = [...this.#pending].filter(([, p]) => !p.taken && p.entry !== undefined);
    if (waiting.length === 0) return;
    const workers = await listWorkers(this.#store);
    const served = new Set(workers.flatMap((w) => w.protocols ?? []));
    const now = Date.now();
    for (const [id, p] of waiting) {
      if (served.has(p.protocol)) {
        p.unservedSince = undefined;
        continue;
      }
      p.unservedSince ??= now;
      // every live worker cannot serve it because of its configuration (no wait mends that):
      // it fails at once, with that error (as the worker executing it would have failed it).
      // Where some only lack it (an MCP server not configured there: a worker that has it may
      // be restarting), after FAMILY_GRACE_MS and retryable.
      const why = workers.map((w) => unservableFor(w, p.protocol));
      const lacking = why.some((d) => d?.lacking);
      const unservable = workers.length > 0 && why.every((d) => d !== undefined) &&
          (!lacking || now - p.unservedSince >= Math.min(this.#unservedMs, FAMILY_GRACE_MS))
        ? { worker: workers[0]!, data: why[0]!.data, retryable: lacking }
        : undefined;
      if (now - p.unservedSince < this.#unservedMs && !unservable) continue;
      // atomic: a worker reads it before (it is then that worker's) or never; and said again
      // the same when tried again (a reply lost on the way throws here, and the next look
      // tries again: it must not then take the missing entry for one a worker has)
      const withdrawn = await this.#store.command([
        "EVAL",
        WITHDRAW,
        "2",
        p.stream,
        this.#keys.cancel(id),
        GROUP,
        p.entry!,
      ]);
      if (this.#pending.get(id) !== p) continue; // answered or aborted meanwhile
      if (withdrawn !== 1) {
        // a worker has it (it begins or answers it), or it was answered already
        p.taken = true;
        continue;
      }
      this.#pending.delete(id);
      p.reject(
        unservable
          ? unservableError(unservable.worker, unservable.data, unservable.retryable)
          : unservedError(p.protocol, workers, now - p.unservedSince),
      );
    }
  }

  /**
   * After reads failed (Redis restarted, say): attempts whose entry is gone from the tasks
   * stream and that have no answer waiting will never get one (a Redis that lost its data
   * lost them): they fail, retryable, instead of waiting for ever. An entry is removed in the
   * same script that adds its answer, so an answer is there for any entry that is gone: the
   * reply stream is read after the entries are seen gone.
   */
  async #checkEntries(first: unknown): Promise<void> {
    const answered = new Set(readReply(first).filter(isAnswer).map((e) => e.fields.d ?? ""));
    try {
      const gone: string[] = [];
      for (const [id, p] of this.#pending) {
        if (p.entry === undefined || answered.has(id)) continue;
        const found = await this.#reader.command(["XRANGE", p.stream, p.entry, p.entry]);
        if (!Array.isArray(found) || found.length === 0) gone.push(id);
      }
      if (gone.length === 0) return;
      // read after the entries were seen gone: an answer given meanwhile is there (its entry
      // goes in the same script that adds it)
      const more = await this.#reader.command(["XRANGE", this.#replyKey, "-", "+"]);
      for (const e of parseEntries(more)) if (isAnswer(e)) answered.add(e.fields.d ?? "");
      for (const id of gone) {
        const p = this.#pending.get(id);
        if (!p || answered.has(id)) continue;
        this.#pending.delete(id);
        p.reject(
          new GleitzeitError(
            "PERSISTENCE_UNAVAILABLE",
            "the attempt was lost with Redis's data (it restarted empty?)",
            { retryable: true },
          ),
        );
      }
    } catch {
      // Redis failing again: the next good read looks again
    }
  }

  /**
   * Stops reading. Attempts still waiting are left unsettled on purpose: the worker is going
   * away, and whatever it would record now (failures) would be wrong; the runs it coordinated
   * are taken over by other workers.
   */
  async close(): Promise<void> {
    this.#closed = true;
    this.#wakeWatch?.();
    await Promise.all([this.#loop, this.#watch]);
    this.#pending.clear();
  }
}

/**
 * The error of an attempt that no live worker could take for `waitedMs`: PROVIDER_UNHEALTHY
 * when some worker has a provider of `route` that is unhealthy (with the reason the first one
 * gave), else PROVIDER_UNAVAILABLE. One line, and a hint.
 */
function unservedError(route: string, workers: WorkerInfo[], waitedMs: number): GleitzeitError {
  const sick = workers.filter((w) => w.unhealthy?.includes(route));
  const waited = `${Math.round(waitedMs / 100) / 10}s`;
  const [protocol, part] = route.split("#");
  // python/v1#basic: "python/v1 tasks (sandbox basic)"
  const tasks = part === undefined ? `${protocol} tasks` : `${protocol} tasks (sandbox ${part})`;
  const serve = part === undefined ? protocol : `${protocol} in sandbox ${part}`;
  const hint = `start a worker with a healthy provider of ${serve}, or fix the workers' ` +
    `(\`gleitzeit provider health\` with their settings says what is wrong); a task with ` +
    "`retry` tries again";
  const details = {
    protocol,
    ...(part !== undefined ? { route } : {}),
    waited_ms: Math.round(waitedMs),
    unhealthy_on: sick.map((w) => w.owner),
  };
  if (sick.length === 0) {
    return new GleitzeitError(
      "PROVIDER_UNAVAILABLE",
      `no live worker serves ${tasks} (waited ${waited} for one)`,
      { hint, details, retryable: true },
    );
  }
  const owners = sick.map((w) => w.owner);
  const reason = sick.map((w) => w.reasons?.[route]).find((r) => r !== undefined);
  const why = reason === undefined ? "" : `: ${oneLine(reason)}`;
  return new GleitzeitError(
    "PROVIDER_UNHEALTHY",
    `no worker can take ${tasks}: its provider is unhealthy on ${
      owners.length === 1 ? `worker ${owners[0]}` : `workers ${owners.join(", ")}`
    } and no other live worker serves it (waited ${waited})${why}`,
    { hint, details, retryable: true },
  );
}

/**
 * Why `worker` cannot serve `route` because of its configuration, if it cannot: its providers
 * of it could not be made, or it is of a family whose factory makes none there (`mcp/*`: an
 * MCP server `mcp/nosuch` that is not configured there) and nothing else there serves it.
 */
function unservableFor(
  worker: WorkerInfo,
  route: string,
): { data: ErrorData; lacking: boolean } | undefined {
  const own = worker.unservable?.[route];
  if (own !== undefined) return { data: own, lacking: false };
  if (worker.protocols?.includes(route) || worker.unhealthy?.includes(route)) return undefined;
  const protocol = route.split("#")[0]!;
  const slash = protocol.indexOf("/"); // (as the registry finds a protocol's family)
  const family = slash <= 0 ? undefined : worker.unservable?.[`${protocol.slice(0, slash)}/*`];
  // (the family's message names no protocol)
  return family &&
    { data: { ...family, message: `${protocol}: ${family.message}` }, lacking: true };
}

/**
 * The error of an attempt that `worker` (as every live worker) cannot serve because of its
 * configuration (`data`: see unservableFor): the error its providers could not be made
 * with, as it would have failed the attempt with (its code, "on worker ..."); retryable only
 * where a worker merely lacks it (a worker that has it may come: see FAMILY_GRACE_MS).
 */
function unservableError(worker: WorkerInfo, data: ErrorData, retryable: boolean): GleitzeitError {
  return GleitzeitError.fromData({
    ...data,
    message: `${data.message} (on worker ${worker.owner})`,
    details: { ...data.details, worker: worker.owner },
    retryable,
  });
}

/** The first line of `text`, at most 200 characters. */
function oneLine(text: string): string {
  const line = text.split("\n")[0]!.trim();
  return line.length > 200 ? `${line.slice(0, 199)}…` : line;
}

/**
 * An attempt's entry of ARGV[1]'s stream KEYS[1], with `d` ARGV[2], `reply` ARGV[3], `job`
 * ARGV[4], its protocol ARGV[1] added to the set KEYS[2] of protocols with a stream. The
 * stream gets its consumer group (ARGV[5]) in the same step: a stream listed there always has
 * one, so that every worker can look at its pending entries (XPENDING fails on a stream
 * without a group) before any worker has read it.
 */
const DISPATCH = "redis.call('SADD', KEYS[2], ARGV[1])\n" +
  "if redis.call('EXISTS', KEYS[1]) == 0 then\n" +
  "  redis.call('XGROUP', 'CREATE', KEYS[1], ARGV[5], '0', 'MKSTREAM')\n" +
  "else\n" +
  "  redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[5], '0')\n" +
  "end\n" +
  "return redis.call('XADD', KEYS[1], '*', 'd', ARGV[2], 'reply', ARGV[3], 'job', ARGV[4])";

/**
 * Withdraws entry ARGV[2] of stream KEYS[1] unless a worker of group ARGV[1] read it (it is
 * pending): removes it and leaves the attempt's cancel flag KEYS[2] set to `withdrawn`, so
 * that doing it again (its reply was lost) says the same. 1: withdrawn (now or before); 0: a
 * worker has it; 2: gone otherwise (answered, or dropped). (No group: no worker read it.)
 */
const WITHDRAW = "local p = redis.pcall('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)\n" +
  "if type(p) == 'table' and p.err == nil and #p > 0 then return 0 end\n" +
  "if redis.call('XDEL', KEYS[1], ARGV[2]) == 1 or redis.call('GET', KEYS[2]) == 'withdrawn' " +
  "then\n" +
  "  redis.call('SET', KEYS[2], 'withdrawn', 'EX', 3600)\n" +
  "  return 1\n" +
  "end\n" +
  "return 2";

/**
 * Asks the worker that coordinates `runId` to cancel it, when `owner` is a live worker of this
 * store (its lease key is there): "asked". "gone" when the owner is a worker whose lease ran
 * out (it died: nothing executes the run until another worker takes it over); "none" when the
 * owner is not a worker (the caller handles it otherwise). The flag is set either way: a
 * worker taking the run over meanwhile finds it first thing.
 */
export async function requestRunCancel(
  store: RedisStore,
  runId: string,
  owner: string,
  by: string,
): Promise<"asked" | "gone" | "none"> {
  const keys = queueKeys(store.prefix);
  const [worker, lease] = await store.command([
    "EVAL",
    "return {redis.call('EXISTS', KEYS[1]), redis.call('EXISTS', KEYS[2])}",
    "2",
    keys.worker(owner),
    keys.lease(owner),
  ]) as [number, number];
  if (worker !== 1 && lease !== 1) return "none";
  await store.command(["SET", keys.cancelRun(runId), by, "EX", "3600"]);
  return lease === 1 ? "asked" : "gone";
}

/** A live worker as it registered itself: what it runs now, and at most. */
export interface WorkerInfo {
  owner: string;
  since?: number;
  /** Task attempts executing, and runs coordinated, now. */
  tasks?: number;
  runs?: number;
  /** Task attempts and runs it takes at once (absent from workers older than this field). */
  concurrency?: number;
  max_runs?: number;
  /**
   * Protocols it takes tasks of now (a healthy provider), and those whose providers it has
   * are all unhealthy (absent from workers older than these fields: they read only the
   * older single tasks stream).
   */
  protocols?: string[];
  unhealthy?: string[];
  /** Why, for each unhealthy one: what its provider said (its last probe or failed call). */
  reasons?: Record<string, string>;
  /**
   * Those of them it cannot serve because of its configuration (its providers could not be
   * made: `mcp/v1` with several MCP servers), with that error: no wait mends them.
   */
  unservable?: Record<string, ErrorData>;
}

/** The live workers of this store: owner and what each reported last. */
export async function listWorkers(
  store: RedisStore,
): Promise<WorkerInfo[]> {
  const keys = queueKeys(store.prefix);
  const now = String(Date.now());
  await store.command(["ZREMRANGEBYSCORE", keys.workers, "-inf", now]);
  const listed = await store.command(["ZRANGEBYSCORE", keys.workers, now, "+inf"]) as string[];
  // live: its lease key is there (a killed worker's goes after one lease, not two)
  const leases = listed.length === 0
    ? []
    : await store.command(["MGET", ...listed.map((o) => keys.lease(o))]) as (string | null)[];
  const owners = listed.filter((_, i) => leases[i] !== null);
  // one round trip (coordinators look every second while attempts wait: see RemoteDispatcher)
  const texts = owners.length === 0
    ? []
    : await store.command(["MGET", ...owners.map((o) => keys.worker(o))]) as (string | null)[];
  const out: WorkerInfo[] = [];
  owners.forEach((owner, i) => {
    const text = texts[i];
    if (text !== null && text !== undefined) out.push({ owner, ...JSON.parse(text) });
  });
  return out;
}
