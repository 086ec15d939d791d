# The two commands of the README: `make run` and `make test`.
SHELL := /bin/bash
export DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable
export MOTO_URL ?= http://127.0.0.1:5000
REDOCLY := node_modules/.bin/redocly

.PHONY: run test lint bench postgres moto

## run: the server in dev mode (in-memory AWS) against local Postgres.
run: postgres
	BB_CLOUD=fake go run ./cmd/server

## test: the whole suite against real Postgres and moto, then the linters.
test: postgres moto
	go test -race -count=1 ./...
	$(MAKE) lint

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

## bench: benchmarks (not run by CI); results go to docs/BENCHMARKS.md.
bench: postgres
	go test -run='^$$' -bench=BenchmarkAPI -benchtime=2000x ./internal/api
	go test -run='^$$' -bench=BenchmarkProvision -benchtime=3x ./internal/provision

postgres:
	@scripts/ensure-postgres.sh

moto:
	@scripts/ensure-moto.sh
