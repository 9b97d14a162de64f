-- 0010_campaigns: campaigns, a template sent to an audience (issue 7).
--
-- A campaign is a parent row with one message per (campaign, contact):
-- the unique index messages_campaign makes a re-posted audience add
-- nothing.
--
-- Pausing is a message status, not a flag the claim would have to read:
-- pause moves the campaign's pending messages to 'paused', which the
-- scheduler's claim (status = 'pending', through the partial due index)
-- never sees, and resume moves them back. A claim costs nothing more,
-- paused campaign or not. A message that comes back to 'pending' on its
-- own while its campaign is paused or cancelled (a retry after a
-- transient failure, an expired lease, a replay) is turned into
-- 'paused' / 'cancelled' by messages_campaign_hold, so the scheduler,
-- senders and recovery need not know campaigns exist.
--
-- Progress is NOT kept on the campaign row by a per-message trigger as a
-- billing cycle's is (0003): a cycle has at most 10 reminders, a
-- campaign 100 000 messages whose outcomes arrive 500 a statement. Every
-- one of them updating the one campaign row made 100 000 outcomes cost
-- 10.1 s instead of 1.2 s (measured on PostgreSQL 15: 500 versions of
-- one row per transaction, beyond HOT, each found through a longer
-- chain) and would serialise the senders on that row. Instead,
-- messages_campaign_open indexes a campaign's open messages, so its
-- counts are read from its messages and rcd_campaign_complete marks it
-- completed with one index probe once none is left.

CREATE TABLE campaigns (
    id              bigserial PRIMARY KEY,
    tenant_id       bigint NOT NULL REFERENCES tenants(id),
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    template        text NOT NULL CHECK (length(template) BETWEEN 1 AND 100),
    state           text NOT NULL CHECK (state IN ('draft', 'scheduled',
                        'running', 'paused', 'completed', 'cancelled')),
    priority        smallint NOT NULL DEFAULT 2 CHECK (priority IN (0, 1, 2)),
    send_at         timestamptz NOT NULL DEFAULT now(),
    -- what the audience uploads did, summed over every POST
    messages        integer NOT NULL DEFAULT 0,  -- stored
    duplicates      integer NOT NULL DEFAULT 0,  -- already there, or
                                                 -- repeated in a POST
    invalid         integer NOT NULL DEFAULT 0,  -- unusable phone numbers
    opted_out       integer NOT NULL DEFAULT 0,  -- contacts who opted out
    -- written when it completes, so retention may remove its messages
    sent_messages   integer,        -- reached the gateway
    first_sent_at   timestamptz,
    last_sent_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    paused_at       timestamptz,
    completed_at    timestamptz,
    cancelled_at    timestamptz,
    UNIQUE (tenant_id, name)
);

ALTER TABLE campaigns ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_wall ON campaigns TO recado_tenant
    USING (tenant_id = rcd_session_tenant())
    WITH CHECK (tenant_id = rcd_session_tenant());
-- UPDATE also covers the row locks the ingestor and the hold trigger
-- take (FOR UPDATE, FOR NO KEY UPDATE, FOR KEY SHARE).
GRANT SELECT, INSERT, UPDATE ON campaigns TO recado_tenant;
GRANT USAGE ON SEQUENCE campaigns_id_seq TO recado_tenant;

-- messages.tenant_id loses its foreign key, as message_history and
-- webhook_events never had one: its check is a per-row trigger (an SPI
-- lookup and a KEY SHARE lock on the tenant row for every message),
-- 0.8 of the 4.5 s that storing 100 000 campaign messages took. Every
-- message is inserted by the ingestor for the authenticated tenant of
-- its request, under the tenant wall (tenant_id = the session's tenant),
-- and tenants are never deleted.
ALTER TABLE messages DROP CONSTRAINT messages_tenant_id_fkey;

-- No foreign key, as billing_cycle_id: the only writer inserts a
-- campaign's messages in the transaction that holds the campaign row,
-- and the per-row check would be 100 000 lookups per audience.
-- Adding a nullable column with no default changes only the catalogue.
ALTER TABLE messages ADD COLUMN campaign_id bigint;
-- One message per (campaign, contact): a re-post inserts ON CONFLICT DO
-- NOTHING. Partial, so messages outside campaigns pay nothing for it;
-- it is also the path to a campaign's messages (pause, resume, cancel,
-- counts by status).
CREATE UNIQUE INDEX messages_campaign ON messages (campaign_id, to_phone)
    WHERE campaign_id IS NOT NULL;
-- A campaign's open messages: what pause, resume and cancel move, and
-- what tells whether it is complete. Costs an entry per insert and per
-- update into an open status (the claim) of a campaign message only.
CREATE INDEX messages_campaign_open ON messages (campaign_id, status)
    WHERE campaign_id IS NOT NULL
      AND status IN ('pending', 'paused', 'sending', 'unknown');

-- 'paused': a campaign message held back by a paused campaign. Open (it
-- may still be sent), never claimed. The CHECK is replaced NOT VALID, as
-- in 0008, so the migration does not scan the hot table: every row
-- already there passed the old, narrower list, and new rows and updates
-- are checked against this one.
ALTER TABLE messages DROP CONSTRAINT messages_status_check;
ALTER TABLE messages ADD CONSTRAINT messages_status_check CHECK (status IN (
    'pending', 'paused', 'sending', 'unknown', 'sent', 'delivered', 'read',
    'failed', 'cancelled', 'expired', 'blocked', 'skipped')) NOT VALID;

-- Open statuses (0003): a paused message may still be sent.
CREATE OR REPLACE FUNCTION rcd_status_open(status text) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT status IN ('pending', 'paused', 'sending', 'unknown')
$$;

-- Marks campaign p_id completed when it is scheduled or running, has
-- messages and none of them is open any more; answers whether it did.
-- The ingestor calls it when a campaign is read; any service may call it
-- periodically for the running ones (one index probe each). The first
-- probe takes no lock, so a campaign still sending costs a read. Then
-- the row is locked FOR UPDATE, which waits for an audience upload in
-- flight (it holds the row until it commits) and for state
-- changes, and the probe is repeated in a new snapshot that sees what
-- they stored. completed_at is when its last message left the queue.
CREATE FUNCTION rcd_campaign_complete(p_id bigint) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM messages
                WHERE campaign_id = p_id
                  AND status IN ('pending', 'paused', 'sending', 'unknown'))
    THEN
        RETURN false;
    END IF;
    PERFORM 1 FROM campaigns
      WHERE id = p_id AND state IN ('scheduled', 'running') AND messages > 0
      FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF EXISTS (SELECT 1 FROM messages
                WHERE campaign_id = p_id
                  AND status IN ('pending', 'paused', 'sending', 'unknown'))
    THEN
        RETURN false;
    END IF;
    UPDATE campaigns c
       SET state = 'completed',
           completed_at = coalesce(m.last_moved, now()),
           sent_messages = m.sent, first_sent_at = m.first_sent,
           last_sent_at = m.last_sent
      FROM (SELECT count(*) FILTER (WHERE status IN ('sent', 'delivered',
                                                     'read')) AS sent,
                   min(sent_at) AS first_sent, max(sent_at) AS last_sent,
                   max(CASE WHEN status IN ('sent', 'delivered', 'read')
                            THEN sent_at ELSE updated_at END) AS last_moved
              FROM messages WHERE campaign_id = p_id) m
     WHERE c.id = p_id;
    RETURN true;
END
$$;

-- A campaign message coming back to 'pending' (retry, expired lease,
-- unknown outcome retried, replay) while its campaign is paused stays
-- held ('paused'); while it is cancelled, it is cancelled. Resume (the
-- one move from 'paused' to 'pending') has just set the state itself
-- and pays nothing. The KEY SHARE lock waits for a pause, resume or
-- cancel in flight (they lock the row FOR UPDATE and then move the
-- messages in a second statement) and then reads the state they
-- committed, so a message is never left pending in a paused campaign;
-- it waits for nothing else. Measured: 100 000 campaign messages
-- requeued 500 a statement took 3.7 s instead of 2.5 s; a requeue is a
-- retry, rare next to sends.
CREATE FUNCTION rcd_campaign_hold() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    st text;
BEGIN
    SELECT state INTO st FROM campaigns
     WHERE id = NEW.campaign_id FOR KEY SHARE;
    IF st IN ('paused', 'cancelled') THEN
        NEW.status := st;
        INSERT INTO message_history (tenant_id, message_id, status, detail)
        VALUES (NEW.tenant_id, NEW.id, st, 'campaign ' || st);
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER messages_campaign_hold
    BEFORE UPDATE OF status ON messages
    FOR EACH ROW
    WHEN (NEW.campaign_id IS NOT NULL AND NEW.status = 'pending'
          AND OLD.status NOT IN ('pending', 'paused'))
    EXECUTE FUNCTION rcd_campaign_hold();
