#!/usr/bin/env bash
# Makes sure Postgres answers at DATABASE_URL, starting the local cluster
# (Debian's pg_ctlcluster) when nothing answers.
#
# When it starts the cluster it says so and, when BB_STARTED_FILE names a
# file, appends "postgres <version> <cluster>" to it, so that
# scripts/with-services.sh stops exactly the cluster it started. A Postgres
# that already answers is left alone and recorded nowhere.
set -euo pipefail
url="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}"

if pg_isready -q -d "$url" 2>/dev/null; then
  exit 0
fi
if ! command -v pg_ctlcluster >/dev/null; then
  echo "Postgres is not answering at DATABASE_URL and pg_ctlcluster is not installed." >&2
  echo "Start Postgres yourself, or point DATABASE_URL at one (e.g. docker compose up -d postgres)." >&2
  exit 1
fi
version="$(ls /etc/postgresql | sort -n | tail -n 1)"
# pg_ctlcluster fails when the cluster already runs (answering elsewhere
# than DATABASE_URL, or still starting): then it is not ours to stop.
if pg_ctlcluster --skip-systemctl-redirect "$version" main start </dev/null >/dev/null 2>&1; then
  echo "started Postgres cluster ${version}/main" >&2
  if [ -n "${BB_STARTED_FILE:-}" ]; then
    echo "postgres $version main" >>"$BB_STARTED_FILE"
  fi
fi
for _ in $(seq 1 60); do
  if pg_isready -q -d "$url" 2>/dev/null; then
    exit 0
  fi
  sleep 0.5
done
echo "Postgres did not come up at DATABASE_URL within 30 s; see /var/log/postgresql/." >&2
exit 1
