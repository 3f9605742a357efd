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
 * - `P task:<runId>:<taskId>`       hash of one task (the run and task ids are in its key):
 *     - `f`       JSON of the fields that never change: {id, name, protocol, method, priority,
 *                 createdAt, wf (the workflow name)}, written once at creation
 *     - `state`, `attempts`, and when set `startedAt`, `finishedAt`, `result` (JSON), `error`
 *                 (JSON), `reason`: the fields that change, one hash field each so that a claim
 *                 or a finish writes only what it changes
 *     - `_m`, `_rc` its member in and score of the task state index (below), read by the
 *                 scripts that move it from one state to another
 *     - `<n>:state`, `<n>:startedAt`, `<n>:finishedAt`, `<n>:owner`, `<n>:error`: attempt n
 * - `P tasks:state:<s>`             sorted sets of `_m` by `_rc`: the run's createdAt, then
 *                                   `<runId> NUL <1e9 - position, 10 digits> NUL <taskId>`, so
 *                                   that reversed they list newest run first, workflow order
 * - `P taskid`                      hash: global task id -> `<runId> NUL <taskId>`
 *
 * @module
 */

/**
 * Lua shared by START_ATTEMPTS and FINISH_TASKS: index moves of a batch, applied once per
 * state at the end (one ZREM and one ZADD per state instead of per task). A task that changes
 * state more than once in a batch moves once, from its first state to its last.
 */
const MOVES = `
local moveFrom, moveTo, moveScore, moveOrder = {}, {}, {}, {}
local function move(m, score, from, to)
  if moveFrom[m] == nil then
    moveFrom[m], moveScore[m] = from, score
    moveOrder[#moveOrder + 1] = m
  end
  moveTo[m] = to
end
local function applyMoves(p)
  local rem, add = {}, {}
  for _, m in ipairs(moveOrder) do
    local from, to = moveFrom[m], moveTo[m]
    if from ~= to then
      local r = rem[from]
      if not r then r = {}; rem[from] = r end
      r[#r + 1] = m
      local a = add[to]
      if not a then a = {}; add[to] = a end
      a[#a + 1] = moveScore[m]; a[#a + 1] = m
    end
  end
  for state, list in pairs(rem) do
    for j = 1, #list, 1000 do
      redis.call('ZREM', p .. 'tasks:state:' .. state, unpack(list, j, math.min(j + 999, #list)))
    end
  end
  for state, list in pairs(add) do
    for j = 1, #list, 2000 do
      redis.call('ZADD', p .. 'tasks:state:' .. state, unpack(list, j, math.min(j + 1999, #list)))
    end
  end
end
`;

/** Values per start in START_ATTEMPTS's ARGV. */
export const START_FIELDS = 6;

/**
 * ARGV: prefix, then per start: runId, taskId, attempt, at, owner ('' = none, else 'o' + owner),
 * ifOwner (the same encoding: written only while the run is that owner's).
 * Starts are independent: returns per start 1 (done), 0 (no such task) or 'L' followed by
 * the run's owner now (not ifOwner's any more). Fields left from an earlier try (the task's
 * error, the same attempt's end) are deleted only when present.
 */
export const START_ATTEMPTS = `${MOVES}
local p = ARGV[1]
local out = {}
for b = 2, #ARGV, ${START_FIELDS} do
  local key = p .. 'task:' .. ARGV[b] .. ':' .. ARGV[b + 1]
  local n, at, owner, guard = ARGV[b + 2], ARGV[b + 3], ARGV[b + 4], ARGV[b + 5]
  local lost = nil
  if guard ~= '' then
    local now = redis.call('HGET', p .. 'run:' .. ARGV[b], 'owner')
    if now ~= string.sub(guard, 2) then lost = now or '' end
  end
  local s = redis.call('HMGET', key, 'state', '_m', '_rc', 'error', n .. ':state', 'finishedAt')
  if lost then
    out[#out + 1] = 'L' .. lost
  elseif not s[1] then
    out[#out + 1] = 0
  else
    if s[4] or s[5] or s[6] then
      redis.call('HDEL', key, 'error', 'finishedAt', n .. ':finishedAt', n .. ':owner',
        n .. ':error')
    end
    if owner == '' then
      redis.call('HSET', key, 'state', 'running', 'attempts', n, 'startedAt', at,
        n .. ':state', 'running', n .. ':startedAt', at)
    else
      redis.call('HSET', key, 'state', 'running', 'attempts', n, 'startedAt', at,
        n .. ':state', 'running', n .. ':startedAt', at, n .. ':owner', string.sub(owner, 2))
    end
    move(s[2], s[3], s[1], 'running')
    out[#out + 1] = 1
  end
end
applyMoves(p)
return out
`;

/** Values per finish in FINISH_TASKS's ARGV. */
export const FINISH_FIELDS = 12;

/**
 * ARGV: prefix, then per finish: runId, taskId, state, at, attempt ('' none), attemptState,
 * hasResult, result ('' = clear), error ('' none), hasReason, reason, ifOwner ('' none, else
 * 'o' + owner). Checks that every task exists, and every guarded run is still its owner's
 * (else GZ_LOST <index> <owner now>), before it writes anything. The attempt's fields are
 * written only when that attempt was started.
 */
export const FINISH_TASKS = `${MOVES}
local p = ARGV[1]
local n = (#ARGV - 1) / ${FINISH_FIELDS}
local keys, olds = {}, {}
for i = 0, n - 1 do
  local b = 1 + i * ${FINISH_FIELDS}
  local key = p .. 'task:' .. ARGV[b + 1] .. ':' .. ARGV[b + 2]
  local s = redis.call('HMGET', key, 'state', '_m', '_rc', ARGV[b + 5] .. ':state')
  if not s[1] then return redis.error_reply('GZ_NOT_FOUND ' .. i) end
  local guard = ARGV[b + 12]
  if guard ~= '' then
    local now = redis.call('HGET', p .. 'run:' .. ARGV[b + 1], 'owner')
    if now ~= string.sub(guard, 2) then
      return redis.error_reply('GZ_LOST ' .. i .. ' ' .. (now or ''))
    end
  end
  keys[i], olds[i] = key, s
end
for i = 0, n - 1 do
  local b = 1 + i * ${FINISH_FIELDS}
  local key, s = keys[i], olds[i]
  local state, at, a, err = ARGV[b + 3], ARGV[b + 4], ARGV[b + 5], ARGV[b + 9]
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
  if a ~= '' and s[4] then
    set[#set + 1] = a .. ':state'; set[#set + 1] = ARGV[b + 6]
    set[#set + 1] = a .. ':finishedAt'; set[#set + 1] = at
    if err ~= '' then set[#set + 1] = a .. ':error'; set[#set + 1] = err end
  end
  redis.call('HSET', key, unpack(set))
  move(s[2], s[3], s[1], state)
end
applyMoves(p)
return n
`;

/** Values per task in CREATE_RUN's ARGV, before its extra field pairs. */
export const CREATE_TASK_FIELDS = 6;

/**
 * KEYS: run. ARGV: prefix, runId, createdAt, workflowName, state, k, then the run hash's k
 * field/value arguments, then per task in workflow order: taskId, global id, `f` (see above),
 * state, attempts, e, and e more field/value arguments (mutable fields already set, usually
 * none). Writes the run, its tasks and every index entry, unless the run exists (then
 * GZ_EXISTS): a creation guarded in the same round trip.
 */
export const CREATE_RUN = `
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.error_reply('GZ_EXISTS') end
local p, runId, rc, k = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[6])
redis.call('HSET', KEYS[1], unpack(ARGV, 7, 6 + k))
redis.call('ZADD', p .. 'runs', rc, runId)
redis.call('ZADD', p .. 'runs:state:' .. ARGV[5], rc, runId)
redis.call('ZADD', p .. 'runs:name:' .. ARGV[4], rc, runId)
local tkey = p .. 'task:' .. runId .. ':'
local order, ids, byState = {}, {}, {}
local i, seq = 7 + k, 0
while i <= #ARGV do
  local taskId, state, e = ARGV[i], ARGV[i + 3], tonumber(ARGV[i + 5])
  local m = runId .. '\\0' .. string.format('%010d', 1e9 - seq) .. '\\0' .. taskId
  if e == 0 then
    redis.call('HSET', tkey .. taskId, 'f', ARGV[i + 2], 'state', state,
      'attempts', ARGV[i + 4], '_m', m, '_rc', rc)
  else
    redis.call('HSET', tkey .. taskId, 'f', ARGV[i + 2], 'state', state,
      'attempts', ARGV[i + 4], '_m', m, '_rc', rc, unpack(ARGV, i + 6, i + 5 + e))
  end
  order[#order + 1] = seq; order[#order + 1] = taskId
  ids[#ids + 1] = ARGV[i + 1]; ids[#ids + 1] = runId .. '\\0' .. taskId
  local st = byState[state]
  if not st then st = {}; byState[state] = st end
  st[#st + 1] = rc; st[#st + 1] = m
  seq = seq + 1
  i = i + ${CREATE_TASK_FIELDS} + e
end
-- in slices that stay well inside Lua's unpack limit
local function bulk(cmd, key, list)
  for j = 1, #list, 2000 do
    redis.call(cmd, key, unpack(list, j, math.min(j + 1999, #list)))
  end
end
bulk('ZADD', p .. 'run:' .. runId .. ':tasks', order)
bulk('HSET', p .. 'taskid', ids)
for state, list in pairs(byState) do bulk('ZADD', p .. 'tasks:state:' .. state, list) end
return 1
`;

/**
 * KEYS: run. ARGV: prefix, runId, ifOwner ('' none, else 'o' + owner: written only while the
 * run is that owner's, else GZ_LOST <owner now>), then triples (op 's'|'d', field, value).
 */
export const UPDATE_RUN = `
local r = KEYS[1]
local s = redis.call('HMGET', r, 'state', 'createdAt', 'owner')
if not s[1] then return redis.error_reply('GZ_NOT_FOUND') end
if ARGV[3] ~= '' and s[3] ~= string.sub(ARGV[3], 2) then
  return redis.error_reply('GZ_LOST 0 ' .. (s[3] or ''))
end
for i = 4, #ARGV, 3 do
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

/**
 * KEYS: run. ARGV: owner, at, staleBefore, leaseMs ("" for none). Returns 1 when claimed, 0
 * when held by another.
 */
export const CLAIM_RUN = `
local r = KEYS[1]
local s = redis.call('HMGET', r, 'state', 'owner', 'heartbeatAt')
if not s[1] then return redis.error_reply('GZ_NOT_FOUND') end
local terminal = s[1] == 'completed' or s[1] == 'failed' or s[1] == 'cancelled'
local free = (not s[2]) or s[2] == ARGV[1] or terminal or
  tonumber(s[3] or '0') < tonumber(ARGV[3])
if not free then return 0 end
redis.call('HSET', r, 'owner', ARGV[1], 'heartbeatAt', ARGV[2])
if ARGV[4] and ARGV[4] ~= '' then
  redis.call('HSET', r, 'leaseMs', ARGV[4])
else
  redis.call('HDEL', r, 'leaseMs')
end
return 1
`;
