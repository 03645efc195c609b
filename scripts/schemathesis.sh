#!/usr/bin/env bash
# Fuzz the live example project with schemathesis against its own OpenAPI schema
# (/api/schema/): no response may be a 500, and every response must match the schema.
# Self-contained: a fresh SQLite database and cache in a temporary folder, gunicorn on
# 127.0.0.1:$SCHEMATHESIS_PORT (default 8400), stopped on exit. Exits non-zero on failure.
#   SCHEMATHESIS_MAX_EXAMPLES (default 60)  test cases per operation and phase
#   SCHEMATHESIS_MAX_TIME (default 120)     seconds for all but logout/all (30 more for it)
# Extra arguments go to `schemathesis run`.
set -euo pipefail
. "$(dirname "$0")/_venv.sh" schema

port=${SCHEMATHESIS_PORT:-8400}
base="http://127.0.0.1:$port"
workdir=$(mktemp -d)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null; fi
  rm -rf "$workdir"
}
trap cleanup EXIT

export DJANGO_SETTINGS_MODULE=example_project.settings
export DJANGO_DEBUG=0
DJANGO_SECRET_KEY=$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(50))')
export DJANGO_SECRET_KEY
export DATABASE_URL="sqlite:///$workdir/db.sqlite3"
export CACHE_DIR="$workdir/cache"
# Long enough for the access token below to outlive the run; throttles off, so that the
# examples reach the views instead of stopping at 429.
export ACCESS_TOKEN_SECONDS=3600 LOGIN_THROTTLE_RATE="" REFRESH_THROTTLE_RATE=""

.venv/bin/python manage.py migrate --noinput >/dev/null
.venv/bin/gunicorn example_project.wsgi --bind "127.0.0.1:$port" --workers 2 \
  --log-level warning --error-logfile "$workdir/gunicorn.log" &
server_pid=$!
for _ in $(seq 50); do
  .venv/bin/python - "$base/api/schema/" <<'EOF' && break
import sys, urllib.request
try:
    urllib.request.urlopen(sys.argv[1], timeout=1)
except Exception:
    sys.exit(1)
EOF
  sleep 0.2
done

# An access token of the demo user alice, for the endpoints that need one.
access=$(.venv/bin/python - "$base/api/auth/token/" <<'EOF'
import json, sys, urllib.request
body = json.dumps({"username": "alice", "password": "alice-password"}).encode()
request = urllib.request.Request(sys.argv[1], body, {"Content-Type": "application/json"})
print(json.load(urllib.request.urlopen(request, timeout=10))["access"])
EOF
)

status=0
# A "Runtime Error" with no failure beside it is schemathesis failing in itself (seen:
# hypothesis describing a lambda hit CPython 3.11's "AST constructor recursion depth
# mismatch"), not a finding about the API: that run is made once more, with another
# seed, and both outputs stay in the log. Any failure, or a second error, fails the step.
run() {
  local out="$workdir/schemathesis.out" code
  for attempt in 1 2; do
    code=0
    .venv/bin/schemathesis --config-file scripts/schemathesis.toml run "$base/api/schema/" \
      --header "Authorization: Bearer $access" \
      --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-60}" \
      --request-timeout 10 \
      --seed "${SCHEMATHESIS_SEED:-$RANDOM}" \
      --workers 2 \
      "$@" 2>&1 | tee "$out" || code=$?
    if [ "$code" -ne 0 ] && [ "$attempt" -eq 1 ] && grep -q "Runtime Error" "$out" \
      && ! grep -q "FAILURES" "$out"; then
      echo "schemathesis failed in itself (a Runtime Error, no failure): running it once more." >&2
      continue
    fi
    break
  done
  [ "$code" -eq 0 ] || status=$code
}
# logout/all revokes the family of the access token, after which every authenticated
# request is a 401: test it last, on its own.
run --exclude-operation-id logout_all --max-time "${SCHEMATHESIS_MAX_TIME:-120}" "$@"
run --include-operation-id logout_all --max-time 30 "$@"
if grep -q "Traceback" "$workdir/gunicorn.log"; then
  echo "The server logged tracebacks:" >&2
  cat "$workdir/gunicorn.log" >&2
  status=1
fi
exit "$status"
