#!/bin/sh
# Starts moto in server mode unless something already answers at MOTO_URL
# (default http://127.0.0.1:5000), then waits until it answers. The
# conformance suite of internal/awsfake needs it.
set -eu
url="${MOTO_URL:-http://127.0.0.1:5000}"
hostport="${url#*://}"
host="${hostport%:*}"
port="${hostport##*:}"
answers() { curl -fsS -o /dev/null "$url/moto-api/" 2>/dev/null; }
if answers; then
	exit 0
fi
log="${MOTO_LOG:-${TMPDIR:-/tmp}/moto.log}"
nohup python3 -m moto.server -H "$host" -p "$port" >"$log" 2>&1 &
i=0
until answers; do
	i=$((i + 1))
	if [ "$i" -ge 100 ]; then
		echo "moto did not start at $url; see $log" >&2
		exit 1
	fi
	sleep 0.1
done
echo "moto started at $url (pid $!, log $log)"
