# The two commands of the README: `make run` and `make test`.
SHELL := /bin/bash
# The Postgres server everything uses; its database is the tests' admin
# database, from which each test creates its own.
export DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable
export MOTO_URL ?= http://127.0.0.1:5000
# make run keeps dev mode's requests, and its in-memory AWS, in a database
# of their own, so that make reset-dev can drop it without touching
# anything else.
DEV_DATABASE ?= bucketbridge_dev
REDOCLY := node_modules/.bin/redocly

.PHONY: run run-moto reset-dev stop-moto test lint bench acceptance postgres moto

## run: the server in dev mode (in-memory AWS, kept in the database) against local Postgres.
run: postgres
	DATABASE_URL="$$(scripts/database.sh $(DEV_DATABASE))" BB_CLOUD=fake go run ./cmd/server

## run-moto: the server with BB_CLOUD=aws against moto seeded with the demo world.
run-moto:
	@scripts/run-moto.sh

## reset-dev: start dev mode over: forget its requests and its in-memory AWS (stop make run first).
reset-dev: postgres
	@scripts/database.sh $(DEV_DATABASE) --reset >/dev/null

## stop-moto: stop the moto that make run-moto (or scripts/ensure-moto.sh) started.
stop-moto:
	@scripts/stop-moto.sh

## test: the whole suite against real Postgres and moto, then the linters.
## Postgres and moto are started when they are not running, and stopped
## again at the end (also on failure); ones already running are left alone.
test:
	@scripts/with-services.sh go test -race -count=1 ./...
	@$(MAKE) --no-print-directory lint

## lint: go vet, gofmt and the OpenAPI linter.
# Redocly is told to skip its update notice and its usage report: the linter's
# output should be the lint result and nothing else.
lint: $(REDOCLY)
	go vet ./...
	@unformatted="$$(gofmt -l .)"; if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	REDOCLY_SUPPRESS_UPDATE_NOTICE=true REDOCLY_TELEMETRY=off $(REDOCLY) lint --format=stylish openapi.yaml

$(REDOCLY): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

## acceptance: the whole flow against real AWS, in the two accounts of the
## profiles BB_ACCEPTANCE_SOURCE_PROFILE and BB_ACCEPTANCE_DESTINATION_PROFILE
## (README, Acceptance run on real AWS). Not part of make test. Without the
## profiles it says what it needs and exits 0, claiming nothing.
acceptance:
	go run ./cmd/acceptance

## bench: benchmarks (not run by CI), each against a baseline of the same run; results go to docs/BENCHMARKS.md.
bench: postgres
	go run ./scripts/bench $(BENCH_FLAGS)

postgres:
	@scripts/ensure-postgres.sh

moto:
	@scripts/ensure-moto.sh
