#!/usr/bin/env bash
# `make run-moto`: the server with BB_CLOUD=aws against moto, holding dev
# mode's demo world. It starts Postgres and moto when they are not running,
# seeds the demo world into moto (cmd/seed-moto prints the keys' ARNs: moto
# makes up key IDs), and runs the server with moto's dummy credentials on
# its own database, MOTO_DATABASE (default bucketbridge_moto).
#
# moto keeps its state only in memory, so the database follows it: when
# moto had to be started (it holds nothing yet), the database is emptied
# too, and requests never point at buckets, roles or keys moto has lost.
# moto stays up after the server stops, so the next run finds both as they
# were; `make stop-moto` stops it.
set -euo pipefail
here="$(dirname "$0")"
export MOTO_URL="${MOTO_URL:-http://127.0.0.1:5000}"
db="${MOTO_DATABASE:-bucketbridge_moto}"

"$here/ensure-postgres.sh"
started="$(mktemp)"
BB_STARTED_FILE="$started" "$here/ensure-moto.sh"
reset=
if grep -q '^moto ' "$started"; then
  reset=--reset
  echo "moto started empty, so database $db starts empty too" >&2
fi
rm -f "$started"
db_url="$("$here/database.sh" "$db" $reset)"

echo "seeding the demo world into moto at $MOTO_URL; the demo keys in moto are:" >&2
go run ./cmd/seed-moto -endpoint "$MOTO_URL"
echo "moto stays up at $MOTO_URL when the server stops; stop it with: make stop-moto" >&2

# Only moto's dummy credentials and endpoint: nothing of the machine's own
# AWS configuration (profiles, config files, per-service endpoints) applies.
exec env -u AWS_PROFILE -u AWS_DEFAULT_PROFILE -u AWS_SESSION_TOKEN -u AWS_ROLE_ARN -u AWS_WEB_IDENTITY_TOKEN_FILE \
  -u AWS_ENDPOINT_URL_STS -u AWS_ENDPOINT_URL_IAM -u AWS_ENDPOINT_URL_KMS -u AWS_ENDPOINT_URL_S3 \
  -u AWS_IGNORE_CONFIGURED_ENDPOINT_URLS -u AWS_DEFAULT_REGION \
  AWS_ENDPOINT_URL="$MOTO_URL" AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 \
  AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true \
  DATABASE_URL="$db_url" BB_CLOUD=aws \
  BB_API_TOKENS="${BB_API_TOKENS:-dev:dev-token-for-moto}" BB_EXTERNAL_ID="${BB_EXTERNAL_ID:-bucketbridge-dev}" \
  BB_AUTHZ_FILE="${BB_AUTHZ_FILE:-dev/authz.yaml}" \
  go run ./cmd/server "$@"
