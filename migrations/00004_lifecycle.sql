-- +goose Up
-- One lifecycle: the state alone says which step table a request is in.
UPDATE replications SET state = 'deprovision_failed' WHERE state = 'failed' AND phase = 'deprovision';
ALTER TABLE replications
    DROP COLUMN phase,
    DROP CONSTRAINT replications_finished_at_iff_terminal,
    ADD CONSTRAINT replications_finished_at_iff_terminal CHECK (
        (state IN ('succeeded', 'failed', 'cancelled', 'deprovisioned', 'deprovision_failed')) = (finished_at IS NOT NULL)
    ),
    -- How many events the request's timeline holds; the next event's seq.
    ADD COLUMN event_seq bigint NOT NULL DEFAULT 0;

-- The state changes the database accepts: the same rows as
-- provision.Transitions, which a test keeps equal to this table. A NULL
-- from_state is the state a request is created in.
CREATE TABLE replication_transitions (
    from_state replication_state,
    action     text NOT NULL,
    to_state   replication_state NOT NULL,
    UNIQUE NULLS NOT DISTINCT (from_state, action)
);
INSERT INTO replication_transitions (from_state, action, to_state) VALUES
    (NULL, 'create', 'pending'),
    ('pending', 'claim', 'running'),
    ('pending', 'cancel', 'cancelled'),
    ('running', 'complete', 'succeeded'),
    ('running', 'fail', 'failed'),
    ('running', 'cancel', 'cancelled'),
    ('failed', 'retry', 'running'),
    ('succeeded', 'deprovision', 'deprovisioning'),
    ('failed', 'deprovision', 'deprovisioning'),
    ('cancelled', 'deprovision', 'deprovisioning'),
    ('deprovisioning', 'complete', 'deprovisioned'),
    ('deprovisioning', 'fail', 'deprovision_failed'),
    ('deprovision_failed', 'retry', 'deprovisioning'),
    ('deprovision_failed', 'deprovision', 'deprovisioning');

-- +goose StatementBegin
CREATE FUNCTION replications_check_transition() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NOT EXISTS (SELECT 1 FROM replication_transitions WHERE from_state IS NULL AND to_state = NEW.state) THEN
            RAISE EXCEPTION 'a replication cannot be created in state %', NEW.state
                USING ERRCODE = 'check_violation', CONSTRAINT = 'replication_transitions';
        END IF;
    ELSIF NEW.state IS DISTINCT FROM OLD.state THEN
        IF NOT EXISTS (SELECT 1 FROM replication_transitions WHERE from_state = OLD.state AND to_state = NEW.state) THEN
            RAISE EXCEPTION 'replication % cannot move from % to %', OLD.id, OLD.state, NEW.state
                USING ERRCODE = 'check_violation', CONSTRAINT = 'replication_transitions';
        END IF;
    END IF;
    RETURN NEW;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER replications_transition BEFORE INSERT OR UPDATE OF state ON replications
    FOR EACH ROW EXECUTE FUNCTION replications_check_transition();

-- Events say who acted, and count per request so that "after N" means the
-- same for every request.
ALTER TABLE replication_events
    ADD COLUMN actor text NOT NULL DEFAULT 'system',
    ADD COLUMN seq bigint;
UPDATE replication_events e SET seq = n.seq
FROM (SELECT id, row_number() OVER (PARTITION BY replication_id ORDER BY id) AS seq FROM replication_events) n
WHERE e.id = n.id;
UPDATE replications r SET event_seq = (SELECT count(*) FROM replication_events e WHERE e.replication_id = r.id);
-- A cancel asked of a running request was a state event that changed no state.
UPDATE replication_events SET type = 'cancel_requested', state = NULL
WHERE type = 'state' AND message LIKE 'cancel requested%';
DROP INDEX replication_events_timeline;
ALTER TABLE replication_events
    DROP CONSTRAINT replication_events_pkey,
    DROP COLUMN id,
    ALTER COLUMN seq SET NOT NULL,
    ALTER COLUMN actor DROP DEFAULT,
    ADD PRIMARY KEY (replication_id, seq),
    ADD CONSTRAINT replication_events_type CHECK (type IN ('state', 'step', 'retry', 'lease', 'cancel_requested'));

-- Step statuses are exactly what the engine writes.
ALTER TABLE replication_steps
    DROP CONSTRAINT replication_steps_status_check,
    ADD CONSTRAINT replication_steps_status CHECK (status IN ('running', 'succeeded', 'failed', 'skipped'));

-- An Idempotency-Key replays the exact status and body first answered.
ALTER TABLE idempotency_keys
    ADD COLUMN response_status integer,
    ADD COLUMN response_body bytea;
UPDATE idempotency_keys SET response_status = 202, response_body = convert_to(response::text, 'UTF8')
WHERE response IS NOT NULL;
ALTER TABLE idempotency_keys DROP COLUMN response;

-- +goose Down
ALTER TABLE idempotency_keys ADD COLUMN response jsonb;
UPDATE idempotency_keys SET response = convert_from(response_body, 'UTF8')::jsonb WHERE response_body IS NOT NULL;
ALTER TABLE idempotency_keys DROP COLUMN response_status, DROP COLUMN response_body;

ALTER TABLE replication_steps
    DROP CONSTRAINT replication_steps_status,
    ADD CONSTRAINT replication_steps_status_check CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'skipped'));

ALTER TABLE replication_events
    DROP CONSTRAINT replication_events_type,
    DROP CONSTRAINT replication_events_pkey,
    ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    DROP COLUMN seq,
    DROP COLUMN actor;
CREATE INDEX replication_events_timeline ON replication_events (replication_id, id);

DROP TRIGGER replications_transition ON replications;
DROP FUNCTION replications_check_transition();
DROP TABLE replication_transitions;

ALTER TABLE replications
    ADD COLUMN phase text NOT NULL DEFAULT 'provision' CHECK (phase IN ('provision', 'deprovision')),
    DROP COLUMN event_seq,
    DROP CONSTRAINT replications_finished_at_iff_terminal;
UPDATE replications SET phase = 'deprovision' WHERE state IN ('deprovisioning', 'deprovisioned', 'deprovision_failed');
UPDATE replications SET state = 'failed' WHERE state = 'deprovision_failed';
ALTER TABLE replications ADD CONSTRAINT replications_finished_at_iff_terminal CHECK (
    (state IN ('succeeded', 'failed', 'cancelled', 'deprovisioned')) = (finished_at IS NOT NULL)
);
