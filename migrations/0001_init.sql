-- 0001_init: tenants, sender instances, contacts, messages and their history.
-- Every table holding tenant data carries tenant_id and is queried by it
-- first (the tenant wall).

CREATE TABLE tenants (
    id              bigserial PRIMARY KEY,
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    timezone        text NOT NULL DEFAULT 'America/Sao_Paulo',
    business_hours  jsonb,                 -- NULL: always open
    api_key_hash    bytea NOT NULL UNIQUE, -- sha256 of the key
    webhook_token   text NOT NULL,
    generic_template text,
    optout_keywords text[] NOT NULL DEFAULT '{SAIR,PARAR,STOP,CANCELAR}',
    default_offsets_days int[] NOT NULL DEFAULT '{-3,0,3}',
    reminder_time   time NOT NULL DEFAULT '09:00',
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE instances (
    id              bigserial PRIMARY KEY,
    tenant_id       bigint NOT NULL REFERENCES tenants(id),
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    provider        text NOT NULL CHECK (provider IN ('evolution', 'meta')),
    base_url        text NOT NULL,
    api_key         text,       -- evolution
    access_token    text,       -- meta
    phone_number_id text,       -- meta
    app_secret      text,       -- meta
    verify_token    text,       -- meta
    api_version     text NOT NULL DEFAULT 'v21.0',
    rate_per_second double precision NOT NULL CHECK (rate_per_second > 0),
    hourly_cap      integer CHECK (hourly_cap > 0),
    daily_cap       integer CHECK (daily_cap > 0),
    enabled         boolean NOT NULL DEFAULT true,
    health          text NOT NULL DEFAULT 'unknown',
    health_at       timestamptz,
    circuit_state   text NOT NULL DEFAULT 'closed'
                    CHECK (circuit_state IN ('closed', 'open', 'half_open')),
    circuit_failures integer NOT NULL DEFAULT 0,
    circuit_until   timestamptz,
    paused_until    timestamptz,            -- gateway throttle
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name)
);
CREATE UNIQUE INDEX instances_meta_phone ON instances (phone_number_id)
    WHERE provider = 'meta';

CREATE TABLE contacts (
    tenant_id       bigint NOT NULL REFERENCES tenants(id),
    phone           text NOT NULL,          -- E.164, canonical
    name            text,
    vars            jsonb NOT NULL DEFAULT '{}',
    opted_out       boolean NOT NULL DEFAULT false,
    opted_out_at    timestamptz,
    last_instance_id bigint,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, phone)
);

-- The hot table. Terminal rows leave it by retention; the due index is
-- partial so it holds only pending work.
CREATE TABLE messages (
    id              bigserial PRIMARY KEY,
    tenant_id       bigint NOT NULL REFERENCES tenants(id),
    to_phone        text NOT NULL,
    body            text NOT NULL CHECK (octet_length(body) BETWEEN 1 AND 65536),
    priority        smallint NOT NULL DEFAULT 1 CHECK (priority IN (0, 1, 2)),
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN (
                        'pending', 'sending', 'unknown', 'sent', 'delivered',
                        'read', 'failed', 'cancelled', 'expired', 'blocked',
                        'skipped')),
    send_at         timestamptz NOT NULL DEFAULT now(),
    valid_until     timestamptz,
    instance_id     bigint REFERENCES instances(id),
    pinned          boolean NOT NULL DEFAULT false,
    attempts        integer NOT NULL DEFAULT 0,
    max_attempts    integer NOT NULL DEFAULT 5,
    lease_until     timestamptz,
    delay_ms        integer NOT NULL DEFAULT 0,
    idempotency_key text,
    provider_message_id text,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    delivered_at    timestamptz,
    read_at         timestamptz
) WITH (fillfactor = 80);
CREATE INDEX messages_due ON messages (priority, send_at)
    WHERE status = 'pending';
-- Leases: lease_until is set only while a message is 'sending'. Keyed on
-- lease_until rather than status, so the planner never prefers it for the
-- senders' fenced "id = ? AND status = 'sending'" updates (a status-keyed
-- partial index with stale statistics made them scan every leased row).
CREATE INDEX messages_leased ON messages (lease_until)
    WHERE lease_until IS NOT NULL;
CREATE INDEX messages_valid_until ON messages (valid_until)
    WHERE status = 'pending' AND valid_until IS NOT NULL;
CREATE INDEX messages_tenant ON messages (tenant_id, id);
CREATE UNIQUE INDEX messages_idempotency ON messages (tenant_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX messages_provider_id ON messages (provider_message_id)
    WHERE provider_message_id IS NOT NULL;

-- Every state change that matters to a person, oldest first.
CREATE TABLE message_history (
    id              bigserial PRIMARY KEY,
    tenant_id       bigint NOT NULL,
    message_id      bigint NOT NULL,
    at              timestamptz NOT NULL DEFAULT clock_timestamp(),
    status          text NOT NULL,
    detail          text
);
CREATE INDEX message_history_message ON message_history (message_id);

CREATE TABLE dead_letters (
    id              bigserial PRIMARY KEY,
    tenant_id       bigint NOT NULL REFERENCES tenants(id),
    message_id      bigint NOT NULL,
    reason          text NOT NULL,
    attempts        integer NOT NULL,
    gateway_answer  text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    replayed_at     timestamptz
);
CREATE INDEX dead_letters_tenant ON dead_letters (tenant_id, created_at);
