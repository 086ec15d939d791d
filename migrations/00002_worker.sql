-- +goose Up
-- What the worker pool needs beyond the request itself.
ALTER TABLE replications
    -- Which step table the request is in; a failed request resumes its phase on retry.
    ADD COLUMN phase text NOT NULL DEFAULT 'provision' CHECK (phase IN ('provision', 'deprovision')),
    -- When the current phase run began; retrying stops at BB_REQUEST_DEADLINE after it.
    ADD COLUMN phase_started_at timestamptz NOT NULL DEFAULT now(),
    -- A caller asked to cancel a running request; its worker stops after the current step.
    ADD COLUMN cancel_requested boolean NOT NULL DEFAULT false,
    -- What steps learned that later steps need (see provision.Facts).
    ADD COLUMN facts jsonb NOT NULL DEFAULT '{}';

-- +goose Down
ALTER TABLE replications
    DROP COLUMN facts,
    DROP COLUMN cancel_requested,
    DROP COLUMN phase_started_at,
    DROP COLUMN phase;
