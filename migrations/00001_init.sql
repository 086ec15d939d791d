-- +goose Up
CREATE TYPE replication_state AS ENUM (
    'pending', 'running', 'succeeded', 'failed', 'cancelled', 'deprovisioning', 'deprovisioned'
);

CREATE TABLE replications (
    id                        uuid PRIMARY KEY,
    state                     replication_state NOT NULL DEFAULT 'pending',
    source_account_id         text NOT NULL,
    source_region             text NOT NULL,
    source_bucket             text NOT NULL,
    source_kms_key_arn        text NOT NULL,
    destination_account_id    text NOT NULL,
    destination_region        text NOT NULL,
    destination_bucket        text NOT NULL,
    destination_kms_key_arn   text NOT NULL,
    rule_prefix               text NOT NULL DEFAULT '',
    delete_marker_replication boolean NOT NULL DEFAULT false,
    replica_modifications     boolean NOT NULL DEFAULT false,
    storage_class             text NOT NULL DEFAULT 'STANDARD',
    replication_time_control  boolean NOT NULL DEFAULT false,
    enable_versioning         boolean NOT NULL DEFAULT false,
    verify                    boolean NOT NULL DEFAULT true,
    ticket                    text NOT NULL DEFAULT '',
    callback_url              text NOT NULL DEFAULT '',
    requested_by              text NOT NULL,
    current_step              text NOT NULL DEFAULT '',
    attempt                   integer NOT NULL DEFAULT 0,
    next_run_at               timestamptz NOT NULL DEFAULT now(),
    lease_owner               text,
    lease_until               timestamptz,
    last_error                jsonb,
    created_at                timestamptz NOT NULL DEFAULT now(),
    updated_at                timestamptz NOT NULL DEFAULT now(),
    finished_at               timestamptz,
    CONSTRAINT replications_finished_at_iff_terminal CHECK (
        (state IN ('succeeded', 'failed', 'cancelled', 'deprovisioned')) = (finished_at IS NOT NULL)
    ),
    CONSTRAINT replications_distinct_buckets CHECK (source_bucket <> destination_bucket)
);

-- A bucket pair + prefix may have one live request: one whose rule may exist
-- or may yet be written (everything but cancelled and deprovisioned).
CREATE UNIQUE INDEX replications_one_live_per_route
    ON replications (source_bucket, destination_bucket, rule_prefix)
    WHERE state NOT IN ('cancelled', 'deprovisioned');

-- Serves the workers' claim query: runnable requests by next_run_at.
CREATE INDEX replications_runnable
    ON replications (next_run_at)
    WHERE state IN ('pending', 'running', 'deprovisioning');

-- Serves listing, newest first, with a keyset cursor.
CREATE INDEX replications_created ON replications (created_at DESC, id DESC);
CREATE INDEX replications_source_account ON replications (source_account_id, created_at DESC, id DESC);
CREATE INDEX replications_destination_account ON replications (destination_account_id, created_at DESC, id DESC);
CREATE INDEX replications_ticket ON replications (ticket, created_at DESC, id DESC) WHERE ticket <> '';

CREATE TABLE replication_steps (
    replication_id uuid NOT NULL REFERENCES replications (id) ON DELETE CASCADE,
    phase          text NOT NULL CHECK (phase IN ('provision', 'deprovision')),
    name           text NOT NULL,
    status         text NOT NULL CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'skipped')),
    attempts       integer NOT NULL DEFAULT 0,
    started_at     timestamptz,
    finished_at    timestamptz,
    changed        boolean NOT NULL DEFAULT false,
    before         jsonb,
    after          jsonb,
    error          jsonb,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (replication_id, phase, name)
);

CREATE TABLE replication_events (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    replication_id uuid NOT NULL REFERENCES replications (id) ON DELETE CASCADE,
    at             timestamptz NOT NULL DEFAULT now(),
    type           text NOT NULL,
    state          replication_state,
    step           text NOT NULL DEFAULT '',
    message        text NOT NULL,
    detail         jsonb
);
CREATE INDEX replication_events_timeline ON replication_events (replication_id, id);

-- Idempotency-Key (IETF draft-ietf-httpapi-idempotency-key-header): the
-- first answer to a key, replayed to every retry with the same body.
CREATE TABLE idempotency_keys (
    caller         text NOT NULL,
    key            text NOT NULL,
    request_hash   bytea NOT NULL,
    replication_id uuid REFERENCES replications (id) ON DELETE CASCADE,
    response       jsonb,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (caller, key)
);

-- +goose Down
DROP TABLE idempotency_keys;
DROP TABLE replication_events;
DROP TABLE replication_steps;
DROP TABLE replications;
DROP TYPE replication_state;
