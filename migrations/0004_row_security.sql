-- 0004_row_security: row-level security, the second tenant wall.
--
-- The first wall is every query filtering on tenant_id. Behind it, the
-- ingestor (the only service acting on behalf of one tenant) runs each
-- tenant request as role recado_tenant with the setting recado.tenant_id
-- holding the caller's tenant; the policies below then hide every other
-- tenant's rows and refuse to write one, whatever a query forgets.
--
-- ENABLE, not FORCE: the table owner (the role that migrates, which the
-- scheduler, sender, recovery, monitor and the ingestor's admin routes
-- connect as) bypasses the policies. Those work across tenants, and
-- their tuned plans stay free of an extra qual. Superusers bypass them
-- too. Any other role given rights on these tables later sees no row
-- until it gets a policy of its own.
--
-- tenants itself has no policy: authentication looks a tenant up by the
-- hash of its API key before any tenant is known. recado_tenant may
-- read it and update it (GET/PATCH /v1/tenant), never insert: tenants
-- are created on the admin route, as the owner.

-- The tenant of this session: unset or empty -> NULL, which equals no
-- tenant_id, so a session that forgot to say who it acts for sees
-- nothing and writes nothing (fail closed). One SQL expression, which
-- the planner inlines (EXPLAIN shows the expression itself), so the
-- policy qual costs a setting lookup per row and can serve as an index
-- condition on (tenant_id, ...).
CREATE FUNCTION rcd_session_tenant() RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT nullif(current_setting('recado.tenant_id', true), '')::bigint
$$;

-- Roles belong to the whole cluster, not to this database: another
-- database of the same cluster (tests migrate several at once) may be
-- creating the role right now, so losing that race is not an error.
-- The migrating user must be allowed to SET ROLE recado_tenant: a
-- superuser always is; another one gets membership here, which needs
-- CREATEROLE (or an operator who creates recado_tenant beforehand and
-- grants it to that user).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'recado_tenant') THEN
        BEGIN
            CREATE ROLE recado_tenant NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL; -- created meanwhile by a migration in another database
        END;
    END IF;
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
       AND NOT pg_has_role(current_user, 'recado_tenant',
               -- from PostgreSQL 16 on, membership alone may not allow SET
               CASE WHEN current_setting('server_version_num')::int >= 160000
                    THEN 'SET' ELSE 'MEMBER' END) THEN
        BEGIN
            EXECUTE format('GRANT recado_tenant TO %I', current_user);
        EXCEPTION WHEN unique_violation THEN
            NULL; -- granted meanwhile by a migration in another database
        END;
    END IF;
END
$$;

-- Exactly what the tenant routes do; nothing deletes. A new tenant route
-- that needs more (DELETE, another table) grants it in its migration.
GRANT SELECT, UPDATE ON tenants TO recado_tenant;
GRANT SELECT, INSERT, UPDATE ON instances, contacts, messages, templates,
    billing_cycles TO recado_tenant;
GRANT SELECT, INSERT ON message_history TO recado_tenant;
GRANT SELECT, UPDATE ON dead_letters TO recado_tenant;
-- ids drawn by tenant inserts (column defaults and msg_insert's nextval)
GRANT USAGE ON SEQUENCE instances_id_seq, messages_id_seq,
    message_history_id_seq, billing_cycles_id_seq TO recado_tenant;
-- Functions are executable by PUBLIC by default. rcd_cycle_progress (the
-- messages trigger of 0003) runs with the rights of whoever moves a
-- message, so a tenant cancelling or blocking its reminders updates its
-- own cycle through these policies.

ALTER TABLE instances ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_wall ON instances TO recado_tenant
    USING (tenant_id = rcd_session_tenant())
    WITH CHECK (tenant_id = rcd_session_tenant());

ALTER TABLE contacts ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_wall ON contacts TO recado_tenant
    USING (tenant_id = rcd_session_tenant())
    WITH CHECK (tenant_id = rcd_session_tenant());

ALTER TABLE messages ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_wall ON messages TO recado_tenant
    USING (tenant_id = rcd_session_tenant())
    WITH CHECK (tenant_id = rcd_session_tenant());

ALTER TABLE message_history ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_wall ON message_history TO recado_tenant
    USING (tenant_id = rcd_session_tenant())
    WITH CHECK (tenant_id = rcd_session_tenant());

ALTER TABLE dead_letters ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_wall ON dead_letters TO recado_tenant
    USING (tenant_id = rcd_session_tenant())
    WITH CHECK (tenant_id = rcd_session_tenant());

ALTER TABLE templates ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_wall ON templates TO recado_tenant
    USING (tenant_id = rcd_session_tenant())
    WITH CHECK (tenant_id = rcd_session_tenant());

ALTER TABLE billing_cycles ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_wall ON billing_cycles TO recado_tenant
    USING (tenant_id = rcd_session_tenant())
    WITH CHECK (tenant_id = rcd_session_tenant());
