#!/usr/bin/env bash
# Stops a moto that scripts/ensure-moto.sh started: the pid given as the
# argument, or else the one it recorded for MOTO_URL's port. It checks that
# the pid still belongs to a moto server before signalling it, so a moto
# someone started by hand, or a process that reused the pid, is never hit.
set -euo pipefail
url="${MOTO_URL:-http://127.0.0.1:5000}"
hostport="${url#*://}"
port="${hostport##*:}"
port="${port%%/*}"
pidfile="${TMPDIR:-/tmp}/bucketbridge-moto-${port}.pid"

pid="${1:-}"
want="moto.server"
if [ -z "$pid" ]; then
  if [ ! -f "$pidfile" ]; then
    echo "no moto started by this project's scripts is recorded for port $port; nothing stopped." >&2
    exit 0
  fi
  pid="$(cat "$pidfile")"
  # A pid file may outlive its moto: the pid must still be a moto on this port.
  want="moto.server .*-p $port\b"
fi
is_moto() { [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qE "$want"; }
# forget removes the pid files that record this pid, whichever port.
forget() {
  local f
  for f in "${TMPDIR:-/tmp}"/bucketbridge-moto-*.pid; do
    if [ -f "$f" ] && [ "$(cat "$f")" = "$pid" ]; then
      rm -f "$f"
    fi
  done
}
if ! is_moto; then
  echo "moto (pid $pid) is no longer running; nothing stopped." >&2
  forget
  exit 0
fi
kill -TERM "$pid"
for _ in $(seq 1 40); do
  if ! is_moto; then
    break
  fi
  sleep 0.25
done
if is_moto; then
  kill -KILL "$pid"
fi
forget
echo "stopped moto (pid $pid)" >&2
