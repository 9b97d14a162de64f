-- 0006_api_rate_limit: the tenant API's rate limit (issue 4), and the
-- index the dead-letter listing pages on.

-- One token bucket per tenant (a tenant has one API key), shared by every
-- ingestor replica. Each tenant request takes a token with ONE statement
-- (INSERT ... ON CONFLICT DO UPDATE: refill since refilled_at at the
-- configured rate, capped at the burst, then take one if there is one),
-- so the row lock serialises concurrent requests of a tenant and two
-- replicas never hand out the same token. The clock is PostgreSQL's, one
-- for every replica.
-- UNLOGGED: a bucket is worth a few seconds, not WAL, and a commit that
-- wrote no WAL does not wait for a flush, so a request pays a round trip
-- and no fsync. After a PostgreSQL crash the table is empty: every tenant
-- starts again from a full burst, once.
-- allowed: whether the statement that wrote the row took a token (what
-- RETURNING answers; the old token count is not visible there).
CREATE UNLOGGED TABLE api_rate_buckets (
    tenant_id   bigint PRIMARY KEY REFERENCES tenants(id),
    tokens      double precision NOT NULL,
    refilled_at timestamptz NOT NULL,
    allowed     boolean NOT NULL
) WITH (fillfactor = 50);  -- room for HOT updates: one per request

-- The ingestor takes tokens as recado_tenant, under the tenant wall like
-- every other tenant statement: a tenant session can only touch its own
-- bucket. ON CONFLICT DO UPDATE needs SELECT as well.
GRANT SELECT, INSERT, UPDATE ON api_rate_buckets TO recado_tenant;
ALTER TABLE api_rate_buckets ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_wall ON api_rate_buckets TO recado_tenant
    USING (tenant_id = rcd_session_tenant())
    WITH CHECK (tenant_id = rcd_session_tenant());

-- GET /v1/dead-letters pages through a tenant's dead letters by id (keyset
-- pagination, like GET /v1/messages on messages_tenant).
CREATE INDEX dead_letters_tenant_id ON dead_letters (tenant_id, id);
