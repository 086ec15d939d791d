-- +goose Up
-- Callbacks to a request's callback_url: a transactional outbox, written in
-- the transaction of the state change each one announces, and delivered at
-- least once by the dispatchers.
CREATE TABLE webhook_deliveries (
    -- Also the webhook-id header: the same on every attempt and redelivery,
    -- so a receiver can drop duplicates.
    id              uuid PRIMARY KEY,
    replication_id  uuid NOT NULL REFERENCES replications (id) ON DELETE CASCADE,
    -- Orders one request's deliveries as its events happened; a delivery is
    -- sent only when no earlier one of its request is still pending.
    seq             integer NOT NULL,
    type            text NOT NULL,
    -- The request's callback_url when the delivery was queued.
    url             text NOT NULL,
    -- The Standard Webhooks payload: {"type", "timestamp", "data"}.
    payload         jsonb NOT NULL,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    -- Attempts since the delivery was last queued; the backoff grows with it.
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz DEFAULT now(),
    lease_owner     text,
    lease_until     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- When it was created or last redelivered; the maximum age counts from it.
    queued_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    last_status     integer,
    last_error      text,
    CONSTRAINT webhook_deliveries_seq UNIQUE (replication_id, seq),
    CONSTRAINT webhook_deliveries_next_attempt_iff_pending CHECK ((status = 'pending') = (next_attempt_at IS NOT NULL)),
    CONSTRAINT webhook_deliveries_delivered_at_iff_delivered CHECK ((status = 'delivered') = (delivered_at IS NOT NULL))
);

-- Serves the dispatchers' claim query: pending deliveries by due time.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
-- Serves the claim query's "no earlier pending delivery of the same request".
CREATE INDEX webhook_deliveries_pending_seq ON webhook_deliveries (replication_id, seq) WHERE status = 'pending';

-- Every attempt of every delivery, for GET /v1/replications/{id}/deliveries.
CREATE TABLE webhook_attempts (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id uuid NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    at          timestamptz NOT NULL,
    -- The receiver's HTTP status; NULL when no answer came.
    status_code integer,
    -- Why the attempt failed; '' when it succeeded.
    error       text NOT NULL DEFAULT '',
    duration_ms double precision NOT NULL
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, id);

-- +goose Down
DROP TABLE webhook_attempts;
DROP TABLE webhook_deliveries;
