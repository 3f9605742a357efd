#!/usr/bin/env bash
# Release artefacts: dist/gleitzeit.js (deno bundle; runs anywhere Deno 2.9 is) and, where Deno can
# download its runtime base (denort), the single binary dist/gleitzeit with the permissions baked in.
set -euo pipefail
ROOT="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)"
source "$ROOT/scripts/deno.sh"
source "$ROOT/scripts/flags.sh"
DENO="$(find_deno)"
cd "$ROOT"
"$DENO" bundle --quiet --platform=deno -o dist/gleitzeit.js src/main.ts
echo "built dist/gleitzeit.js (run: deno run ${GLEITZEIT_DENO_FLAGS[*]} dist/gleitzeit.js)"
if [[ ${1:-} == --binary ]]; then
  "$DENO" compile "${GLEITZEIT_DENO_FLAGS[@]}" -o dist/gleitzeit src/main.ts
  echo "built dist/gleitzeit"
fi
