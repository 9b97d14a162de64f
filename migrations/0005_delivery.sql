-- 0005_delivery: what delivery under real gateway behaviour needs to
-- remember (issue 4): per-instance usage against its caps, the circuit's
-- reason, recipient pacing, and indexes for per-tenant claiming and for
-- the reconciliation of unknown outcomes.

-- Caps are counted durably, at claim time, by the active scheduler: a
-- restart or a failover continues from these counters instead of
-- starting a fresh hour. hour_start / day_start name the period the
-- counter belongs to (the hour in UTC, the day in the tenant's time
-- zone); a counter whose period has passed reads as 0.
ALTER TABLE instances
    ADD COLUMN hour_start        timestamptz,
    ADD COLUMN hour_used         integer NOT NULL DEFAULT 0,
    ADD COLUMN day_start         timestamptz,
    ADD COLUMN day_used          integer NOT NULL DEFAULT 0,
    ADD COLUMN circuit_reason    text,
    ADD COLUMN circuit_opened_at timestamptz;

-- Recipient pacing: the earliest time a recipient of a tenant may be
-- claimed again, written by the claim that picks a message for it.
-- UNLOGGED: a row is only worth its interval (seconds), so it is not
-- worth WAL; after a PostgreSQL crash the table is empty, which lets at
-- most one message per recipient through early once. Rows whose time
-- has passed are deleted by recovery.
CREATE UNLOGGED TABLE recipient_pacing (
    tenant_id   bigint NOT NULL,
    phone       text NOT NULL,
    next_at     timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, phone)
);
CREATE INDEX recipient_pacing_next ON recipient_pacing (next_at);
ALTER TABLE recipient_pacing ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_wall ON recipient_pacing TO recado_tenant
    USING (tenant_id = rcd_session_tenant())
    WITH CHECK (tenant_id = rcd_session_tenant());

-- Claiming walks each tenant's due work on its own, so one tenant's
-- backlog (closed hours, an instance out of budget) is never walked on
-- behalf of another.
CREATE INDEX messages_tenant_due ON messages (tenant_id, priority, send_at)
    WHERE status = 'pending';

-- Reconciliation: messages waiting in 'unknown', oldest first.
CREATE INDEX messages_unknown ON messages (updated_at)
    WHERE status = 'unknown';
