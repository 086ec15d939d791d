#!/usr/bin/env bash
# Makes sure moto, the AWS emulator the conformance and provisioning tests
# talk to, answers at MOTO_URL, starting it in the background when nothing
# answers. Its log goes to $TMPDIR/bucketbridge-moto-<port>.log.
#
# When it starts moto it says so, writes moto's pid to
# $TMPDIR/bucketbridge-moto-<port>.pid (what scripts/stop-moto.sh reads) and,
# when BB_STARTED_FILE names a file, appends "moto <pid>" to it, so that
# scripts/with-services.sh stops exactly the moto it started. A moto that
# already answers is left alone and recorded nowhere.
set -euo pipefail
url="${MOTO_URL:-http://127.0.0.1:5000}"

answers() { curl -fsS -o /dev/null --max-time 2 "$url/moto-api/" 2>/dev/null; }

if answers; then
  exit 0
fi
if ! python3 -c 'import moto' 2>/dev/null; then
  echo "moto is not answering at MOTO_URL ($url) and is not installed for python3." >&2
  echo "Install it (pip install 'moto[server]') or point MOTO_URL at a running moto." >&2
  exit 1
fi
hostport="${url#*://}"
host="${hostport%%:*}"
port="${hostport##*:}"
port="${port%%/*}"
log="${TMPDIR:-/tmp}/bucketbridge-moto-${port}.log"
# setsid and closed descriptors: moto must not hold the caller's terminal or
# pipes. setsid execs moto in place (the script's children lead no process
# group), so $! is moto's own pid.
setsid python3 -m moto.server -H "$host" -p "$port" </dev/null >"$log" 2>&1 &
pid=$!
echo "$pid" >"${TMPDIR:-/tmp}/bucketbridge-moto-${port}.pid"
if [ -n "${BB_STARTED_FILE:-}" ]; then
  echo "moto $pid" >>"$BB_STARTED_FILE"
fi
echo "started moto on ${host}:${port} (pid $pid, log: $log)" >&2
for _ in $(seq 1 60); do
  if answers; then
    exit 0
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "moto exited at start-up; see $log." >&2
    exit 1
  fi
  sleep 0.5
done
echo "moto did not come up at $url within 30 s; see $log." >&2
exit 1
