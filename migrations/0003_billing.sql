-- 0003_billing: message templates and billing cycles (API.md "billing
-- cycle").
--
-- A template is a list of variations; the ingestor renders a message's
-- text once, at ingest, so a retry sends exactly the same text.

CREATE TABLE templates (
    tenant_id       bigint NOT NULL REFERENCES tenants(id),
    key             text NOT NULL CHECK (length(key) BETWEEN 1 AND 100),
    variations      text[] NOT NULL
                    CHECK (cardinality(variations) BETWEEN 1 AND 20),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key)
);

-- One invoice and its reminders. Only one cycle per external id may be
-- active: the partial unique index makes two concurrent uploads of the
-- same id create one cycle. A complete or cancelled cycle frees the id.
CREATE TABLE billing_cycles (
    id              bigserial PRIMARY KEY,
    tenant_id       bigint NOT NULL REFERENCES tenants(id),
    external_billing_id text NOT NULL
                    CHECK (length(external_billing_id) BETWEEN 1 AND 200),
    phone           text NOT NULL,
    contact_name    text,
    amount_cents    bigint NOT NULL CHECK (amount_cents > 0),
    currency        text NOT NULL DEFAULT 'BRL',
    due_date        date NOT NULL,
    template        text,                   -- the key asked for, if any
    vars            jsonb NOT NULL DEFAULT '{}',
    offsets_days    integer[] NOT NULL,
    status          text NOT NULL DEFAULT 'active'
                    CHECK (status IN ('active', 'complete', 'cancelled')),
    -- reminders not yet terminal; kept by messages_cycle_progress
    open_messages   integer NOT NULL DEFAULT 0 CHECK (open_messages >= 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz,
    cancelled_at    timestamptz
);
CREATE UNIQUE INDEX billing_cycles_active
    ON billing_cycles (tenant_id, external_billing_id)
    WHERE status = 'active';
CREATE INDEX billing_cycles_external
    ON billing_cycles (tenant_id, external_billing_id, id);

-- No foreign key on billing_cycle_id: the only writer inserts a cycle and
-- its reminders in one statement, and the check's per-row lookup was a
-- measurable share of ingesting a batch (3 reminders a cycle).
ALTER TABLE messages
    ADD COLUMN billing_cycle_id bigint,
    ADD COLUMN offset_days integer;
CREATE INDEX messages_billing_cycle ON messages (billing_cycle_id)
    WHERE billing_cycle_id IS NOT NULL;

-- Open statuses: a reminder in one of them may still be sent.
CREATE FUNCTION rcd_status_open(status text) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT status IN ('pending', 'sending', 'unknown')
$$;

-- A cycle is complete when its last reminder reaches a terminal status,
-- whoever moved it (sender, recovery, expiry, opt-out, cancel). The count
-- of open reminders is kept on the cycle row: the row lock serialises
-- concurrent moves, where a NOT EXISTS look at the siblings would let two
-- concurrent last moves each see the other still open. A replay that
-- reopens a reminder counts it back but leaves the cycle's status alone
-- (its id may already belong to a newer active cycle).
CREATE FUNCTION rcd_cycle_progress() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    delta integer := CASE WHEN rcd_status_open(NEW.status) THEN 1 ELSE -1 END;
BEGIN
    UPDATE billing_cycles
       SET open_messages = open_messages + delta,
           status = CASE WHEN status = 'active'
                          AND open_messages + delta = 0
                         THEN 'complete' ELSE status END,
           completed_at = CASE WHEN status = 'active'
                                AND open_messages + delta = 0
                               THEN now() ELSE completed_at END
     WHERE id = NEW.billing_cycle_id;
    RETURN NULL;
END
$$;

-- The WHEN clause is evaluated without calling the function, so messages
-- outside cycles (and moves between two open or two terminal statuses)
-- pay nothing.
CREATE TRIGGER messages_cycle_progress
    AFTER UPDATE OF status ON messages
    FOR EACH ROW
    WHEN (NEW.billing_cycle_id IS NOT NULL
          AND rcd_status_open(OLD.status) <> rcd_status_open(NEW.status))
    EXECUTE FUNCTION rcd_cycle_progress();
