-- 0012_part_ids: the gateway ids of a long text's earlier parts (issue 7).
--
-- A text sent in parts (0009) gets a gateway id per part, and the gateway
-- sends an echo and receipts for every one of them. Only the last part's
-- id was kept (provider_message_id), so the events of the others found
-- no message: stored 'unmatched' and tried again by recovery every 1, 2,
-- 4 ... 60 s for webhook_window_ms (10 min), some fifteen times each,
-- for every part of every long message of a campaign. Now the sender
-- keeps the ids of the parts before the last in part_ids, in order, as
-- each is accepted, and such an event is recorded with outcome 'part':
-- it matched its message and moves nothing (a receipt of one part says
-- nothing of the rest; the last part's receipts move the message).

ALTER TABLE messages ADD COLUMN part_ids text[];
-- Only messages sent in parts have an entry.
CREATE INDEX messages_part_ids ON messages USING gin (part_ids)
    WHERE part_ids IS NOT NULL;

-- An event is applied as in 0007 (rcd_webhook_apply); one left unmatched
-- is then looked up among the earlier parts' ids before it is left for
-- recovery. The two callers of 0007 (storing an event, recovery's second
-- look) call this instead.
CREATE FUNCTION rcd_webhook_apply_any(e webhook_events, OUT outcome text,
                                      OUT message_id bigint,
                                      OUT blocked integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_id bigint;
BEGIN
    SELECT a.outcome, a.message_id, a.blocked
      INTO outcome, message_id, blocked
      FROM rcd_webhook_apply(e) a;
    IF outcome = 'unmatched' AND e.kind IN ('echo', 'receipt')
       AND e.provider_message_id IS NOT NULL THEN
        SELECT m.id INTO v_id FROM messages m
         WHERE m.tenant_id = e.tenant_id
           AND m.part_ids @> ARRAY[e.provider_message_id]
           AND m.part_ids IS NOT NULL
         LIMIT 1;
        IF FOUND THEN
            outcome := 'part';
            message_id := v_id;
            UPDATE webhook_events w SET outcome = 'part', message_id = v_id,
                   retry_at = NULL
             WHERE w.id = e.id;
        END IF;
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION rcd_webhook_rematch(p_window_ms bigint,
                                               p_limit integer,
                                               OUT tried integer,
                                               OUT matched integer)
LANGUAGE plpgsql AS $$
DECLARE
    ev webhook_events;
    result text;
BEGIN
    tried := 0;
    matched := 0;
    UPDATE webhook_events SET retry_at = NULL
     WHERE retry_at IS NOT NULL
       AND received_at <= now() - p_window_ms * interval '1 millisecond';
    FOR ev IN
        SELECT * FROM webhook_events
         WHERE retry_at <= now()
         ORDER BY retry_at LIMIT p_limit
         FOR UPDATE SKIP LOCKED
    LOOP
        SELECT a.outcome INTO result FROM rcd_webhook_apply_any(ev) a;
        tried := tried + 1;
        IF result <> 'unmatched' THEN
            matched := matched + 1;
        END IF;
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION rcd_webhook_record(p_tenant bigint,
    p_instance bigint, p_provider text, p_kind text, p_key text,
    p_provider_message_id text, p_status text, p_phone text, p_body text,
    p_reason text, p_occurred_at timestamptz, p_payload jsonb,
    OUT outcome text, OUT message_id bigint, OUT blocked integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    e webhook_events;
BEGIN
    INSERT INTO webhook_events (tenant_id, instance_id, provider, kind,
                                event_key, provider_message_id, status,
                                phone, body, reason, occurred_at, payload)
    VALUES (p_tenant, p_instance, p_provider, p_kind, p_key,
            p_provider_message_id, p_status, p_phone, p_body, p_reason,
            p_occurred_at, p_payload)
    ON CONFLICT DO NOTHING
    RETURNING * INTO e;
    IF e.id IS NULL THEN
        outcome := 'duplicate';
        blocked := 0;
        RETURN;
    END IF;
    SELECT a.outcome, a.message_id, a.blocked
      INTO outcome, message_id, blocked
      FROM rcd_webhook_apply_any(e) a;
END
$$;
