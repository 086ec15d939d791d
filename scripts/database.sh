#!/usr/bin/env bash
# Prints the URL of database NAME on the Postgres server DATABASE_URL points
# at, creating the database when it is missing. With --reset it drops it
# first (ending its open connections), which is how `make reset-dev` forgets
# everything dev mode stored.
# Usage: scripts/database.sh NAME [--reset]
set -euo pipefail
name="${1:?usage: scripts/database.sh NAME [--reset]}"
reset="${2:-}"
if [[ ! "$name" =~ ^[a-z_][a-z0-9_]*$ ]]; then
  echo "database name $name: want lower-case letters, digits and underscores" >&2
  exit 1
fi
url="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}"
# DROP … IF EXISTS of a missing database is no news.
export PGOPTIONS="-c client_min_messages=warning"

# Same server, user and options; another database path.
query=""
case "$url" in *\?*) query="?${url#*\?}" ;; esac
noquery="${url%%\?*}"
scheme="${noquery%%://*}"
rest="${noquery#*://}"
authority="${rest%%/*}"
target="${scheme}://${authority}/${name}${query}"

if [ "$reset" = "--reset" ]; then
  psql -X -q -v ON_ERROR_STOP=1 -d "$url" -c "DROP DATABASE IF EXISTS ${name} WITH (FORCE)" >&2
  echo "dropped database ${name}" >&2
fi
if [ "$(psql -X -tA -d "$url" -c "SELECT 1 FROM pg_database WHERE datname = '${name}'")" != "1" ]; then
  # Another caller may create it at the same moment: check again on failure.
  psql -X -q -d "$url" -c "CREATE DATABASE ${name}" >/dev/null 2>&1 \
    || [ "$(psql -X -tA -d "$url" -c "SELECT 1 FROM pg_database WHERE datname = '${name}'")" = "1" ]
  echo "created database ${name}" >&2
fi
echo "$target"
