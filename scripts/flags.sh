# The permissions gleitzeit runs with, in one place: sourced by ./gleitzeit, scripts/compile.sh,
# and read by the tests that run the bundle. No FFI; environment limited to what gleitzeit reads.
GLEITZEIT_ENV_VARS="HOME,PATH,NO_COLOR,TERM,GLEITZEIT_PERSISTENCE_BACKEND,GLEITZEIT_SQLITE_PATH,GLEITZEIT_REDIS_URL,GLEITZEIT_REDIS_PREFIX,GLEITZEIT_OLLAMA_URL,GLEITZEIT_MAX_CONCURRENT_TASKS,GLEITZEIT_PYTHON,GLEITZEIT_MIN_SANDBOX,GLEITZEIT_ALLOW_GRANTS,GLEITZEIT_LOG_LEVEL,GLEITZEIT_CONFIG"
GLEITZEIT_DENO_FLAGS=(--no-prompt --ignore-env "--allow-env=$GLEITZEIT_ENV_VARS" --allow-read --allow-write --allow-run --allow-net "--allow-sys=hostname,osRelease")
