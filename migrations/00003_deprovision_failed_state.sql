-- +goose Up
-- A removal that failed gets its own state, so that the state alone says
-- which step table a request is in. Postgres cannot use a new enum value in
-- the transaction that adds it, hence a migration of its own.
ALTER TYPE replication_state ADD VALUE IF NOT EXISTS 'deprovision_failed';

-- +goose Down
-- Postgres cannot drop an enum value; the next migration's Down moves every
-- request out of it, and the first migration's Down drops the type.
SELECT 1;
