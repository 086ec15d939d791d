#!/usr/bin/env bash
# Plays a hostile client against a dev-mode server (BB_CLOUD=fake) on a
# fresh database and prints what it answered; docs/SECURITY.md records the
# figures. It runs the server twice: once with no rate limit, so every
# hostile body reaches the decoder, then with the default BB_RATE_LIMIT, to
# spend one caller's budget. It fails when the probe finds a broken promise
# or the server's log shows a secret or a client's unsafe request id.
#
#   scripts/probe.sh            # port 18473, or PROBE_PORT
set -euo pipefail
cd "$(dirname "$0")/.."

port="${PROBE_PORT:-18473}"
admin="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}"
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  echo "port $port is in use; set PROBE_PORT" >&2
  exit 1
fi
scripts/ensure-postgres.sh
work="$(mktemp -d)"
db="bb_probe_$$"
token="probe-token-0123456789"
token2="limited-token-0123456789"
server_pid=""
cleanup() {
  if [[ -n "$server_pid" ]]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  psql -q -d "$admin" -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

psql -q -d "$admin" -c "CREATE DATABASE $db" >/dev/null
# The same server and options, another database (the URL must name one).
base="${admin%%\?*}"
db_url="${base%/*}/$db${admin#"$base"}"
# PROBE_SERVER runs another build of the server, such as an older one to
# compare with.
server_bin="${PROBE_SERVER:-$work/server}"
if [[ -z "${PROBE_SERVER:-}" ]]; then go build -o "$server_bin" ./cmd/server; fi
go build -o "$work/probe" ./scripts/probe

# serve RATE_LIMIT: starts the server and waits until it is ready.
serve() {
  DATABASE_URL="$db_url" BB_CLOUD=fake BB_LISTEN="127.0.0.1:$port" BB_RATE_LIMIT="$1" \
    BB_API_TOKENS="probe:$token,limited:$token2" BB_WORKERS=2 \
    "$server_bin" 2>>"$work/server.log" &
  server_pid=$!
  for _ in $(seq 1 100); do
    if curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "the server did not become ready; its log:" >&2
  cat "$work/server.log" >&2
  exit 1
}
stop() {
  kill -TERM "$server_pid"
  wait "$server_pid" || { echo "the server did not stop cleanly" >&2; exit 1; }
  server_pid=""
}

status=0
serve 0
"$work/probe" -base "http://127.0.0.1:$port" -token "$token" "$@" || status=1
stop
serve 600
"$work/probe" -base "http://127.0.0.1:$port" -token "$token" -token2 "$token2" -only rate -rate-limit 600 || status=1
stop

for leak in "$token" "$token2" 'msg=\"forged' '<script>' 'jndi'; do
  if grep -qF -- "$leak" "$work/server.log"; then
    echo "the server's log shows $leak" >&2
    status=1
  fi
done
echo "server log: $(wc -l <"$work/server.log") lines, $(grep -c '"status":5' "$work/server.log" || true) answers 5xx"
exit "$status"
