-- +goose Up
-- The destination owner's consent: a request may wait for it
-- (awaiting_approval) and be refused (rejected). Postgres cannot use a new
-- enum value in the transaction that adds it, hence a migration of its own;
-- the values are placed where they fall in the lifecycle, since the enum's
-- order is the order every listing of states follows.
ALTER TYPE replication_state ADD VALUE IF NOT EXISTS 'awaiting_approval' BEFORE 'pending';
ALTER TYPE replication_state ADD VALUE IF NOT EXISTS 'rejected' AFTER 'cancelled';

-- +goose Down
-- Postgres cannot drop an enum value; the next migration's Down moves every
-- request out of these states, and the first migration's Down drops the type.
SELECT 1;
