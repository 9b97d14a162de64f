-- 0012_part_ids: the gateway's events of a long text's parts (issue 7).
--
-- A text sent in parts (0009) gets a gateway id per part, and the gateway
-- sends an echo and receipts for every one of them.
--
-- Earlier parts. Only the last part's id was kept (provider_message_id),
-- so the events of the others found no message: stored 'unmatched' and
-- tried again by recovery every 1, 2, 4 ... 60 s for webhook_window_ms
-- (10 min), some fifteen times each, for every part of every long
-- message of a campaign. Now the sender keeps the ids of the parts
-- before the last in part_ids, in order, as each is accepted, and such
-- an event is recorded with outcome 'part': it matched its message and
-- moves nothing (a receipt of one part says nothing of the rest; the
-- last part's receipts move the message).
--
-- A lost answer. When the gateway's answer to part k of n is lost (a
-- timeout or reset after the request went out), the message waits in
-- 'unknown' with parts_sent = k - 1. Nothing the gateway said afterwards
-- could settle it (rcd_webhook_settleable, 0009), so it waited for the
-- reconciliation deadline and then failed or sent part k again. Now the
-- sender keeps which part it was and where it lies in the text, and the
-- gateway's echo of exactly that text, or a receipt for an id never seen
-- when this is the only 'unknown' message to that number on that
-- instance, settles that part: after the last part the message is sent;
-- otherwise it goes back to 'pending' with parts_sent = k, and the next
-- attempt sends parts k + 1 .. n, never part k again.

ALTER TABLE messages
    ADD COLUMN part_ids text[],          -- ids of parts 1 .. n - 1
    ADD COLUMN part_count integer,       -- parts of the text (n)
    ADD COLUMN unknown_part integer,     -- k, while 'unknown' on part k
    ADD COLUMN unknown_part_at integer,  -- its first byte in the text
    ADD COLUMN unknown_part_len integer; -- its length in bytes
-- Only messages sent in parts have an entry.
CREATE INDEX messages_part_ids ON messages USING gin (part_ids)
    WHERE part_ids IS NOT NULL;

-- An event is applied as in 0007 (rcd_webhook_apply); one left unmatched
-- is then looked up among the earlier parts' ids, and then taken as the
-- settlement of a lost part, before it is left for recovery. The two
-- callers of 0007 (storing an event, recovery's second look) call this
-- instead.
CREATE FUNCTION rcd_webhook_apply_any(e webhook_events, OUT outcome text,
                                      OUT message_id bigint,
                                      OUT blocked integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_id    bigint;
    v_part  integer;
    v_count integer;
    n       integer;
    at      timestamptz;
    settled text;
BEGIN
    SELECT a.outcome, a.message_id, a.blocked
      INTO outcome, message_id, blocked
      FROM rcd_webhook_apply(e) a;
    IF outcome <> 'unmatched' OR e.kind NOT IN ('echo', 'receipt')
       OR e.provider_message_id IS NULL THEN
        RETURN;
    END IF;
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
        RETURN;
    END IF;
    IF e.phone IS NULL OR e.status = 'failed' THEN
        RETURN;
    END IF;

    -- a part whose answer was lost: its echo (the same text), or a
    -- receipt when it is the one 'unknown' message to that number there
    IF e.kind = 'echo' THEN
        SELECT m.id, m.unknown_part, m.part_count INTO v_id, v_part, v_count
          FROM messages m
         WHERE m.tenant_id = e.tenant_id AND m.status = 'unknown'
           AND m.instance_id = e.instance_id AND m.to_phone = e.phone
           AND m.unknown_part IS NOT NULL
           AND substring(convert_to(m.body, 'UTF8')
                         FROM m.unknown_part_at + 1
                         FOR m.unknown_part_len)
               = convert_to(e.body, 'UTF8')
         ORDER BY m.id LIMIT 1
         FOR UPDATE;
    ELSE
        SELECT count(*) INTO n FROM messages m
         WHERE m.tenant_id = e.tenant_id AND m.status = 'unknown'
           AND m.instance_id = e.instance_id AND m.to_phone = e.phone;
        IF n = 1 THEN
            SELECT m.id, m.unknown_part, m.part_count
              INTO v_id, v_part, v_count
              FROM messages m
             WHERE m.tenant_id = e.tenant_id AND m.status = 'unknown'
               AND m.instance_id = e.instance_id AND m.to_phone = e.phone
               AND m.unknown_part IS NOT NULL
             FOR UPDATE;
        END IF;
    END IF;
    IF v_id IS NULL THEN
        RETURN;
    END IF;

    at := coalesce(e.occurred_at, e.received_at);
    IF v_part >= v_count THEN
        -- the last part: the whole text went
        settled := CASE WHEN e.kind = 'receipt' THEN e.status ELSE 'sent' END;
        UPDATE messages SET status = settled, updated_at = now(),
               provider_message_id = e.provider_message_id,
               parts_sent = v_count, unknown_part = NULL,
               sent_at = coalesce(sent_at, at), last_error = NULL,
               delivered_at = CASE WHEN settled IN ('delivered', 'read')
                                   THEN at END,
               read_at = CASE WHEN settled = 'read' THEN at END
         WHERE id = v_id;
        INSERT INTO message_history (tenant_id, message_id, status, detail)
        VALUES (e.tenant_id, v_id, settled,
                'outcome of the last part settled by the gateway''s '
                || e.kind);
    ELSE
        -- part k went: the rest goes on the next attempt
        UPDATE messages SET status = 'pending', updated_at = now(),
               send_at = now(), parts_sent = v_part, unknown_part = NULL,
               part_ids = array_append(part_ids, e.provider_message_id),
               last_error = NULL
         WHERE id = v_id;
        INSERT INTO message_history (tenant_id, message_id, status, detail)
        VALUES (e.tenant_id, v_id, 'pending',
                'part ' || v_part || ' of ' || v_count
                || ' settled by the gateway''s ' || e.kind
                || '; the rest to send');
    END IF;
    outcome := 'settled';
    message_id := v_id;
    UPDATE webhook_events w SET outcome = 'settled', message_id = v_id,
           retry_at = NULL
     WHERE w.id = e.id;
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

-- 0007's own settlement (an echo of the whole text, or a receipt for the
-- one 'unknown' message to that number) never applies to a text whose
-- lost part is known: a part is not the text, and its settlement above
-- is the part's.
CREATE OR REPLACE FUNCTION rcd_webhook_settleable(m messages)
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT m.unknown_part IS NULL AND m.parts_sent = 0
       AND char_length(m.body) <= 1000
$$;
