#!/usr/bin/env bash
# Runs the whole test suite the way CI does:
#   - Deno 2.9 (from PATH, or fetched once from the npm registry),
#   - bubblewrap for the Python sandbox (installed with apt-get when missing and we are root),
#   - Redis on 127.0.0.1:6379 (started when it is not running and redis-server exists),
# then `deno test` over tests/, ending with one line "N passed, N failed".
#   scripts/test.sh [deno test args...]     e.g. scripts/test.sh tests/engine/
set -uo pipefail
ROOT="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$ROOT"
source scripts/deno.sh
DENO="$(find_deno)" || exit 3
export GLEITZEIT_DENO="$DENO"
PATH="$(dirname "$DENO"):$PATH"

say() { echo "[test] $*" >&2; }

# bubblewrap for the Python sandbox, and ps (procps) for the escape suite's scoped-permission
# driver: their tests fail, never skip, without them
missing=()
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
command -v ps >/dev/null 2>&1 || missing+=(procps)
if [[ ${#missing[@]} -gt 0 ]]; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    say "installing ${missing[*]} (apt-get)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") >/dev/null 2>&1 ||
      say "could not install ${missing[*]}; the sandbox tests will fail: apt-get install ${missing[*]}"
  else
    say "${missing[*]} missing; the sandbox tests will fail: sudo apt-get install ${missing[*]}"
  fi
fi

# Redis on 127.0.0.1:6379: the Redis store tests use the real server
redis_up() { (exec 3<>/dev/tcp/127.0.0.1/6379 && printf 'PING\r\n' >&3 && timeout 2 head -c 5 <&3 | grep -q PONG) 2>/dev/null; }
if ! redis_up; then
  if command -v redis-server >/dev/null 2>&1; then
    say "starting redis-server on 127.0.0.1:6379"
    mkdir -p /tmp/gleitzeit-redis
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
      --dir /tmp/gleitzeit-redis --logfile /tmp/gleitzeit-redis/redis.log >/dev/null
    for _ in $(seq 1 50); do redis_up && break; sleep 0.1; done
  fi
  redis_up || say "Redis is not reachable at 127.0.0.1:6379; Redis tests will fail (install redis-server)"
fi

args=("$@")
[[ ${#args[@]} -eq 0 ]] && args=(tests/)
files="$(find "${args[@]}" -name '*_test.ts' 2>/dev/null | wc -l)"
say "deno test over ${args[*]}: $files test files (the whole suite takes ~5 minutes on 2 CPUs);" \
  "Redis at 127.0.0.1:6379 is $(redis_up && echo up || echo down); the LLM tests start the Ollama" \
  "test server (../shared/ollama-test-server) on 127.0.0.1:${GLEITZEIT_TEST_OLLAMA_PORT:-11435}" \
  "(GLEITZEIT_TEST_OLLAMA_PORT to change), left running for the next run"
log="$(mktemp)"
"$DENO" test --allow-all --no-prompt --parallel "${args[@]}" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
summary="$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -E '^(ok|FAILED) \| [0-9]+ passed' | tail -n 1)"
passed="$(sed -E 's/.* ([0-9]+) passed.*/\1/' <<<"$summary")"
failed="$(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$summary")"
rm -f "$log"
if [[ -z $summary ]]; then
  passed=0
  failed=1
  say "deno test ended without a summary (exit $status)"
fi
[[ $status -ne 0 && $failed -eq 0 ]] && failed=1
echo "$passed passed, $failed failed"
exit "$status"
