-- +goose Up
-- Who consented for the destination account, or who refused and why.
ALTER TABLE replications
    ADD COLUMN approved_by text NOT NULL DEFAULT '',
    ADD COLUMN approved_at timestamptz,
    ADD COLUMN rejected_by text NOT NULL DEFAULT '',
    ADD COLUMN rejected_at timestamptz,
    ADD COLUMN rejection_reason text NOT NULL DEFAULT '',
    DROP CONSTRAINT replications_finished_at_iff_terminal,
    ADD CONSTRAINT replications_finished_at_iff_terminal CHECK (
        (state IN ('succeeded', 'failed', 'cancelled', 'rejected', 'deprovisioned', 'deprovision_failed')) = (finished_at IS NOT NULL)
    ),
    -- A rejection is final, so a request carries a rejection exactly when
    -- it is rejected.
    ADD CONSTRAINT replications_rejected_iff_rejection CHECK (
        (state = 'rejected') = (rejected_at IS NOT NULL AND rejected_by <> '' AND rejection_reason <> '')
    );

-- A request awaiting approval is live: its route is taken while the
-- destination owner decides. A rejected one is not: nothing was written,
-- and the requester may ask again.
DROP INDEX replications_one_live_per_route;
CREATE UNIQUE INDEX replications_one_live_per_route
    ON replications (source_bucket, destination_bucket, rule_prefix)
    WHERE state NOT IN ('cancelled', 'rejected', 'deprovisioned');

INSERT INTO replication_transitions (from_state, action, to_state) VALUES
    (NULL, 'submit', 'awaiting_approval'),
    ('awaiting_approval', 'approve', 'pending'),
    ('awaiting_approval', 'reject', 'rejected'),
    ('awaiting_approval', 'cancel', 'cancelled');

-- Callers are now identities: every caller so far presented a static API
-- token, which is now named token:<name>. Renaming them keeps their
-- Idempotency-Keys working and the audit trail naming one caller one way.
UPDATE replications SET requested_by = 'token:' || requested_by;
UPDATE idempotency_keys SET caller = 'token:' || caller;
UPDATE replication_events SET actor = 'token:' || actor
WHERE actor <> 'system' AND actor NOT LIKE 'worker:%';

-- +goose Down
UPDATE replication_events SET actor = substr(actor, length('token:') + 1) WHERE actor LIKE 'token:%';
UPDATE idempotency_keys SET caller = substr(caller, length('token:') + 1) WHERE caller LIKE 'token:%';
UPDATE replications SET requested_by = substr(requested_by, length('token:') + 1) WHERE requested_by LIKE 'token:%';

-- Without consent, nothing that waits for it may run: such requests are
-- cancelled, and rejected ones too, the nearest state the older lifecycle
-- has. The trigger would refuse rejected -> cancelled, which the older
-- lifecycle never needed.
ALTER TABLE replications DISABLE TRIGGER replications_transition;
UPDATE replications SET state = 'cancelled', finished_at = COALESCE(finished_at, now()), updated_at = now()
WHERE state IN ('awaiting_approval', 'rejected');
ALTER TABLE replications ENABLE TRIGGER replications_transition;

DELETE FROM replication_transitions WHERE from_state = 'awaiting_approval' OR to_state = 'awaiting_approval';

DROP INDEX replications_one_live_per_route;
CREATE UNIQUE INDEX replications_one_live_per_route
    ON replications (source_bucket, destination_bucket, rule_prefix)
    WHERE state NOT IN ('cancelled', 'deprovisioned');

ALTER TABLE replications
    DROP CONSTRAINT replications_rejected_iff_rejection,
    DROP CONSTRAINT replications_finished_at_iff_terminal,
    ADD CONSTRAINT replications_finished_at_iff_terminal CHECK (
        (state IN ('succeeded', 'failed', 'cancelled', 'deprovisioned', 'deprovision_failed')) = (finished_at IS NOT NULL)
    ),
    DROP COLUMN rejection_reason,
    DROP COLUMN rejected_at,
    DROP COLUMN rejected_by,
    DROP COLUMN approved_at,
    DROP COLUMN approved_by;
