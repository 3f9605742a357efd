#!/usr/bin/env bash
# Prints the path of a Deno 2.9.x binary: the one on PATH, or Deno 2.9.6 fetched once from the
# npm registry with npx (cached in ~/.cache/gleitzeit/deno-path). Sourced (defines find_deno, and
# leaves the caller's shell options alone) or run (prints the path).
GLEITZEIT_DENO_VERSION=2.9.6
find_deno() {
  if [[ -n ${GLEITZEIT_DENO:-} ]]; then echo "$GLEITZEIT_DENO"; return; fi
  if command -v deno >/dev/null 2>&1 && deno --version 2>/dev/null | head -n1 | grep -q '^deno 2\.9\.'; then
    command -v deno; return
  fi
  local cache="${XDG_CACHE_HOME:-$HOME/.cache}/gleitzeit/deno-path" cached
  cached="$(cat "$cache" 2>/dev/null || true)"
  if [[ -n $cached && -x $cached ]] && "$cached" --version 2>/dev/null | grep -q "^deno $GLEITZEIT_DENO_VERSION"; then
    echo "$cached"; return
  fi
  command -v npx >/dev/null 2>&1 || { echo "error: Deno is not installed and npx is missing; hint: install Node.js/npm, or Deno $GLEITZEIT_DENO_VERSION" >&2; exit 3; }
  echo "gleitzeit: fetching deno@$GLEITZEIT_DENO_VERSION from the npm registry (first use)" >&2
  cached="$(npm_config_update_notifier=false npx -y "deno@$GLEITZEIT_DENO_VERSION" eval 'console.log(Deno.execPath())' | tail -n 1)"
  [[ -x $cached ]] || { echo "error: could not obtain deno@$GLEITZEIT_DENO_VERSION via npx; hint: npm install -g deno@$GLEITZEIT_DENO_VERSION" >&2; exit 3; }
  mkdir -p "$(dirname "$cache")" && echo "$cached" >"$cache"
  echo "$cached"
}
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  set -euo pipefail
  find_deno
fi
