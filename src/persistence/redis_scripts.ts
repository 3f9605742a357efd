/**
 * Lua scripts of the Redis store. Each runs atomically inside Redis (nothing else runs between
 * its commands), so a script is a transaction like MULTI/EXEC that can also check before it
 * writes: every task of a batch exists, the previous state whose index entry must move, the
 * current owner of a run. One round trip each.
 *
 * Keys under the prefix `P` (ARGV[1]):
 * - `P run:<runId>`                 hash of the run's fields
 * - `P runs`, `P runs:state:<s>`, `P runs:name:<workflowName>`   sorted sets of run ids by createdAt
 * - `P run:<runId>:tasks`           sorted set of task ids by workflow position
 * - `P task:<runId>:<taskId>`       hash of the task's fields, plus `_rc` (the run's createdAt)
 *                                   and `_m` (its member in the cross-run task indexes)
 * - `P tasks`, `P tasks:state:<s>`  sorted sets of `_m` by `_rc` (see redis_store.ts)
 * - `P taskid`                      hash: global task id -> `<runId>:<taskId>`
 * - `P attempts:<runId>:<taskId>`   hash: `<n>:state`, `<n>:startedAt`, `<n>:finishedAt`, ...
 *
 * @module
 */

/** Values per start in START_ATTEMPTS's ARGV. */
export const START_FIELDS = 5;

/**
 * ARGV: prefix, then per start: runId, taskId, attempt, at, owner ('' = none, else 'o' + owner).
 * Starts are independent: returns per start 1 (done) or 0 (no such task).
 */
export const START_ATTEMPTS = `
local p = ARGV[1]
local out = {}
for b = 2, #ARGV, ${START_FIELDS} do
  local key = p .. 'task:' .. ARGV[b] .. ':' .. ARGV[b + 1]
  local s = redis.call('HMGET', key, 'state', '_m', '_rc')
  if not s[1] then
    out[#out + 1] = 0
  else
    local n, at = ARGV[b + 2], ARGV[b + 3]
    redis.call('HSET', key, 'state', 'running', 'attempts', n, 'startedAt', at)
    redis.call('HDEL', key, 'error')
    if s[1] ~= 'running' then
      redis.call('ZREM', p .. 'tasks:state:' .. s[1], s[2])
      redis.call('ZADD', p .. 'tasks:state:running', s[3], s[2])
    end
    local akey = p .. 'attempts:' .. ARGV[b] .. ':' .. ARGV[b + 1]
    redis.call('HDEL', akey, n .. ':finishedAt', n .. ':owner', n .. ':error')
    local owner = ARGV[b + 4]
    if owner == '' then
      redis.call('HSET', akey, n .. ':state', 'running', n .. ':startedAt', at)
    else
      redis.call('HSET', akey, n .. ':state', 'running', n .. ':startedAt', at,
        n .. ':owner', string.sub(owner, 2))
    end
    out[#out + 1] = 1
  end
end
return out
`;

/** Values per finish in FINISH_TASKS's ARGV. */
export const FINISH_FIELDS = 11;

/**
 * ARGV: prefix, then per finish: runId, taskId, state, at, attempt ('' none), attemptState,
 * hasResult, result ('' = clear), error ('' none), hasReason, reason.
 * Checks that every task exists before it writes anything.
 */
export const FINISH_TASKS = `
local p = ARGV[1]
local n = (#ARGV - 1) / ${FINISH_FIELDS}
local keys, olds = {}, {}
for i = 0, n - 1 do
  local b = 1 + i * ${FINISH_FIELDS}
  local key = p .. 'task:' .. ARGV[b + 1] .. ':' .. ARGV[b + 2]
  local s = redis.call('HMGET', key, 'state', '_m', '_rc')
  if not s[1] then return redis.error_reply('GZ_NOT_FOUND ' .. i) end
  keys[i], olds[i] = key, s
end
for i = 0, n - 1 do
  local b = 1 + i * ${FINISH_FIELDS}
  local key, s = keys[i], olds[i]
  local state, at, err = ARGV[b + 3], ARGV[b + 4], ARGV[b + 9]
  local set = { 'state', state }
  if state ~= 'retry_pending' and state ~= 'queued' then
    set[#set + 1] = 'finishedAt'; set[#set + 1] = at
  end
  if ARGV[b + 7] == '1' then
    if ARGV[b + 8] == '' then redis.call('HDEL', key, 'result')
    else set[#set + 1] = 'result'; set[#set + 1] = ARGV[b + 8] end
  end
  if err ~= '' then set[#set + 1] = 'error'; set[#set + 1] = err end
  if ARGV[b + 10] == '1' then set[#set + 1] = 'reason'; set[#set + 1] = ARGV[b + 11] end
  redis.call('HSET', key, unpack(set))
  if s[1] ~= state then
    redis.call('ZREM', p .. 'tasks:state:' .. s[1], s[2])
    redis.call('ZADD', p .. 'tasks:state:' .. state, s[3], s[2])
  end
  local a = ARGV[b + 5]
  if a ~= '' then
    local akey = p .. 'attempts:' .. ARGV[b + 1] .. ':' .. ARGV[b + 2]
    if redis.call('HEXISTS', akey, a .. ':state') == 1 then
      if err ~= '' then
        redis.call('HSET', akey, a .. ':state', ARGV[b + 6], a .. ':finishedAt', at, a .. ':error', err)
      else
        redis.call('HSET', akey, a .. ':state', ARGV[b + 6], a .. ':finishedAt', at)
      end
    end
  end
end
return n
`;

/**
 * KEYS: run. ARGV: commands, each as (argument count, command, arguments...). Runs them all
 * unless the run exists (then GZ_EXISTS): a creation guarded in the same round trip.
 */
export const CREATE_RUN = `
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.error_reply('GZ_EXISTS') end
local i = 1
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  redis.call(unpack(ARGV, i + 1, i + n))
  i = i + n + 1
end
return 1
`;

/** KEYS: run. ARGV: prefix, runId, then triples (op 's'|'d', field, value). */
export const UPDATE_RUN = `
local r = KEYS[1]
local s = redis.call('HMGET', r, 'state', 'createdAt')
if not s[1] then return redis.error_reply('GZ_NOT_FOUND') end
for i = 3, #ARGV, 3 do
  if ARGV[i] == 's' then redis.call('HSET', r, ARGV[i + 1], ARGV[i + 2])
  else redis.call('HDEL', r, ARGV[i + 1]) end
end
local now = redis.call('HGET', r, 'state')
if now ~= s[1] then
  redis.call('ZREM', ARGV[1] .. 'runs:state:' .. s[1], ARGV[2])
  redis.call('ZADD', ARGV[1] .. 'runs:state:' .. now, s[2], ARGV[2])
end
return 1
`;

/** KEYS: run. ARGV: owner, at, staleBefore. Returns 1 when claimed, 0 when held by another. */
export const CLAIM_RUN = `
local r = KEYS[1]
local s = redis.call('HMGET', r, 'state', 'owner', 'heartbeatAt')
if not s[1] then return redis.error_reply('GZ_NOT_FOUND') end
local terminal = s[1] == 'completed' or s[1] == 'failed' or s[1] == 'cancelled'
local free = (not s[2]) or s[2] == ARGV[1] or terminal or
  tonumber(s[3] or '0') < tonumber(ARGV[3])
if not free then return 0 end
redis.call('HSET', r, 'owner', ARGV[1], 'heartbeatAt', ARGV[2])
return 1
`;
