-- 0011_rotation: claims rotate between the campaigns of a tenant (issue 7).
--
-- Until now the scheduler's claim walked each tenant's due work through
-- messages_tenant_due in (priority, send_at) order, so the campaign posted
-- first took every token of the tenant's numbers until it drained, and a
-- second campaign (or low-priority messages sent one by one) waited behind
-- its whole backlog. Now a tenant's due work is walked as streams: its
-- messages outside campaigns (messages_tenant_due, which no longer holds
-- campaign messages) and each of its campaigns being sent (through
-- messages_campaign_open, which gains send_at). The claim takes turns
-- between streams of one priority, least recently served first
-- (services/scheduler).

-- Outside campaigns only. Campaign messages are walked per campaign, so
-- a 100 000-message audience is one stream and not 100 000 entries in
-- front of the tenant's reminders; and an audience upload writes one
-- index entry fewer per message.
DROP INDEX messages_tenant_due;
CREATE INDEX messages_tenant_due ON messages (tenant_id, priority, send_at)
    WHERE status = 'pending' AND campaign_id IS NULL;

-- A campaign's open messages (0010), now also in send_at order within a
-- status: the claim's walk of one campaign's due messages is one index
-- range, stopping at the first not yet due.
DROP INDEX messages_campaign_open;
CREATE INDEX messages_campaign_open ON messages (campaign_id, status, send_at)
    WHERE campaign_id IS NOT NULL
      AND status IN ('pending', 'paused', 'sending', 'unknown');

-- The campaigns that may hold pending or paused messages: the claim
-- walks a tenant's scheduled and running ones, an opt-out looks in these
-- and the paused ones. Completed and cancelled campaigns pile up over the
-- months and are never read on those paths.
CREATE INDEX campaigns_open ON campaigns (tenant_id)
    WHERE state IN ('scheduled', 'running', 'paused');

-- A message of a completed campaign back in 'pending' (a dead letter
-- replayed) reopens its campaign: the claim walks only scheduled and
-- running campaigns, and recovery completes it again once the message
-- is settled. Paused and cancelled hold the message as before (0010).
CREATE OR REPLACE FUNCTION rcd_campaign_hold() RETURNS trigger
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
    ELSIF st = 'completed' THEN
        UPDATE campaigns
           SET state = 'running', completed_at = NULL, sent_messages = NULL,
               first_sent_at = NULL, last_sent_at = NULL
         WHERE id = NEW.campaign_id AND state = 'completed';
    END IF;
    RETURN NEW;
END
$$;

-- The opt-out (0007) blocks the contact's pending and paused messages.
-- Found by tenant and phone they were a walk of every pending message of
-- the tenant (a campaign's 100 000 of them, for each opt-out); now the
-- messages outside campaigns are walked through messages_tenant_due
-- (reminders: a few per contact) and those of the tenant's open
-- campaigns are one probe each of messages_campaign (campaign, phone).
CREATE OR REPLACE FUNCTION rcd_opt_out(p_tenant bigint, p_phone text,
                                       p_detail text)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    blocked integer;
BEGIN
    INSERT INTO contacts AS c (tenant_id, phone, opted_out, opted_out_at)
    VALUES (p_tenant, p_phone, true, now())
    ON CONFLICT (tenant_id, phone) DO UPDATE SET
        opted_out = true,
        opted_out_at = CASE WHEN c.opted_out THEN c.opted_out_at
                            ELSE now() END,
        updated_at = CASE WHEN c.opted_out THEN c.updated_at ELSE now() END;
    WITH upd AS (
        UPDATE messages m SET status = 'blocked', updated_at = now(),
                              last_error = p_detail
         WHERE m.id IN (
                 SELECT d.id FROM messages d
                  WHERE d.tenant_id = p_tenant AND d.to_phone = p_phone
                    AND d.status = 'pending' AND d.campaign_id IS NULL
                 UNION ALL
                 SELECT k.id FROM campaigns g JOIN messages k
                     ON k.campaign_id = g.id AND k.to_phone = p_phone
                  WHERE g.tenant_id = p_tenant
                    AND g.state IN ('scheduled', 'running', 'paused')
                    AND k.status IN ('pending', 'paused'))
           AND m.status IN ('pending', 'paused')
        RETURNING m.id
    )
    INSERT INTO message_history (tenant_id, message_id, status, detail)
    SELECT p_tenant, id, 'blocked', p_detail FROM upd;
    GET DIAGNOSTICS blocked = ROW_COUNT;
    RETURN blocked;
END
$$;
