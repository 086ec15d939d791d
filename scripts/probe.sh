#!/usr/bin/env bash
# Plays a hostile client against a dev-mode server (BB_CLOUD=fake) on a
# fresh database and prints what it answered; docs/SECURITY.md records the
# figures. It runs the server four times: with no rate limit, so every
# hostile body reaches the decoder; with the default BB_RATE_LIMIT, to
# spend one caller's budget; with no workers and BB_SSE_MAX=15, to flood it
# with event streams and shut it down while they are open; and with 100
# idle streams, to count the database transactions they cost. It fails when
# the probe finds a broken promise, the server does not stop cleanly, or
# its log shows a secret or a client's unsafe request id.
#
#   scripts/probe.sh            # port 18473, or PROBE_PORT
#   PROBE_WINDOW=60 scripts/probe.sh   # seconds per transaction count (30)
#   PROBE_PARTS="streams idle" scripts/probe.sh   # some of: hostile rate streams idle
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

# serve [VAR=value…]: starts the server with those settings besides the
# probe's own and waits until it is ready.
serve() {
  env DATABASE_URL="$db_url" BB_CLOUD=fake BB_LISTEN="127.0.0.1:$port" \
    BB_API_TOKENS="probe:$token,limited:$token2" BB_WORKERS=2 "$@" \
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
status=0
stop() {
  local start=$SECONDS code=0
  kill -TERM "$server_pid"
  wait "$server_pid" || code=$?
  echo "the server stopped $((SECONDS - start)) s after SIGTERM, exit status $code"
  if [[ $code -ne 0 ]]; then echo "the server did not stop cleanly" >&2; status=1; fi
  server_pid=""
}
# wait_for_line FILE TEXT: waits until FILE has a line starting with TEXT.
wait_for_line() {
  for _ in $(seq 1 600); do
    if grep -q "^$2" "$1" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "no \"$2\" in $1 within 60 s" >&2
  return 1
}
# xacts: the transactions committed in the probe's database so far.
xacts() { psql -Atq -d "$admin" -c "SELECT xact_commit FROM pg_stat_database WHERE datname = '$db'"; }
window="${PROBE_WINDOW:-30}"
# rate: transactions per second over the next window.
rate() {
  local a b
  a=$(xacts); sleep "$window"; b=$(xacts)
  awk -v a="$a" -v b="$b" -v w="$window" 'BEGIN { printf "%.1f", (b - a) / w }'
}
probe=("$work/probe" -base "http://127.0.0.1:$port" -token "$token")

parts=" ${PROBE_PARTS:-hostile rate streams idle} "
part() { [[ "$parts" == *" $1 "* ]]; }

if part hostile; then
serve BB_RATE_LIMIT=0
"${probe[@]}" "$@" || status=1
stop
fi
if part rate; then
serve BB_RATE_LIMIT=600
"${probe[@]}" -token2 "$token2" -only rate -rate-limit 600 || status=1
stop
fi

if part streams; then
# Event streams on a request no worker runs: 450 at once by two callers,
# of which the caps let 15 open (10 for the first caller, 5 for the
# second); then a SIGTERM while they are open.
serve BB_RATE_LIMIT=0 BB_WORKERS=0 BB_SSE_MAX=15
"${probe[@]}" -token2 "$token2" -only streams -streams 450 -expect-open 15 >"$work/streams.out" 2>&1 &
probe_pid=$!
wait_for_line "$work/streams.out" "holding" || status=1
echo "SIGTERM with the streams open:"
stop
wait "$probe_pid" || status=1
cat "$work/streams.out"
fi

if part idle; then
# What 100 idle streams cost the database.
serve BB_RATE_LIMIT=0 BB_WORKERS=0 BB_SSE_MAX_PER_CALLER=100
idle=$(rate)
"${probe[@]}" -token2 "$token2" -only streams -streams 100 -expect-open 100 -hold 10m >"$work/idle.out" 2>&1 &
probe_pid=$!
wait_for_line "$work/idle.out" "holding" || status=1
following=$(rate)
echo "database transactions per second: $idle with no stream, $following with 100 idle streams open (${window} s each)"
stop
wait "$probe_pid" || status=1
grep -v '^|' "$work/idle.out" | grep -v '^$' || true
fi

for leak in "$token" "$token2" 'msg=\"forged' '<script>' 'jndi'; do
  if grep -qF -- "$leak" "$work/server.log"; then
    echo "the server's log shows $leak" >&2
    status=1
  fi
done
echo "server log: $(wc -l <"$work/server.log") lines, $(grep -c '"status":5' "$work/server.log" || true) answers 5xx"
exit "$status"
