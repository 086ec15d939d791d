#!/usr/bin/env bash
# Runs a command (its arguments) with Postgres and moto answering, then stops
# exactly what it had to start for it: also when the command fails or is
# interrupted. A Postgres or moto that was running before is left running,
# and the last lines say which services were left up and which were stopped.
set -euo pipefail
here="$(dirname "$0")"
started="$(mktemp)"
postgres_up=
moto_up=

cleanup() {
  local status=$?
  set +e
  # Stop in reverse order of starting.
  while read -r what a b; do
    case "$what" in
      moto)
        "$here/stop-moto.sh" "$a"
        ;;
      postgres)
        echo "stopping Postgres cluster $a/$b, started for this run" >&2
        pg_ctlcluster --skip-systemctl-redirect "$a" "$b" stop </dev/null >/dev/null 2>&1 \
          || echo "could not stop Postgres cluster $a/$b; stop it with: pg_ctlcluster $a $b stop" >&2
        ;;
    esac
  done < <(tac "$started")
  if [ -n "$postgres_up" ] && ! grep -q '^postgres ' "$started"; then
    echo "Postgres at DATABASE_URL was running before and is left running." >&2
  fi
  if [ -n "$moto_up" ] && ! grep -q '^moto ' "$started"; then
    echo "moto at ${MOTO_URL:-http://127.0.0.1:5000} was running before and is left running." >&2
  fi
  rm -f "$started"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

BB_STARTED_FILE="$started" "$here/ensure-postgres.sh"
postgres_up=1
BB_STARTED_FILE="$started" "$here/ensure-moto.sh"
moto_up=1
"$@"
