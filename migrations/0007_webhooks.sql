-- 0007_webhooks: what the gateways tell us after a send (issue 5):
-- receipts, the contacts' replies, echoes of our own sends and
-- connection changes, each stored once under its gateway event id and
-- applied in the same transaction.

-- Opt-out keywords are compared with accents and case folded away
-- (unaccent is a trusted extension from PostgreSQL 13 on: a database
-- owner may create it).
CREATE EXTENSION IF NOT EXISTS unaccent;

ALTER TABLE tenants ALTER COLUMN optout_keywords
    SET DEFAULT '{SAIR,PARAR,STOP,CANCELAR,DESCADASTRAR}';
UPDATE tenants SET optout_keywords = '{SAIR,PARAR,STOP,CANCELAR,DESCADASTRAR}'
 WHERE optout_keywords = '{SAIR,PARAR,STOP,CANCELAR}';

ALTER TABLE contacts
    ADD COLUMN last_reply    text,
    ADD COLUMN last_reply_at timestamptz;

-- One row per gateway event, keyed by what the gateway says it is:
--   receipt     'receipt:<message id>:<status>'
--   inbound     'inbound:<message id>'
--   echo        'echo:<message id>' (send.message and a fromMe upsert of
--               the same send share the key)
--   connection  'connection:<hash of the event>'
-- The unique key makes a redelivery (Evolution sends some events twice,
-- and twice again when both its global and instance webhooks are on)
-- wait for the first delivery's transaction and then insert nothing:
-- acknowledged and ignored, with no check-then-insert race.
-- outcome: applied, settled (an 'unknown' message became sent), stale
-- (would not move the message forward), unmatched (no message yet: kept,
-- and recovery tries again for a while), opted_out, known (echo of a
-- message already sent), no_phone (a sender without a phone number).
CREATE TABLE webhook_events (
    id                  bigserial PRIMARY KEY,
    tenant_id           bigint NOT NULL, -- no foreign key, as
                                         -- message_history: a key share
                                         -- lock on the tenant per event
    instance_id         bigint NOT NULL,
    provider            text NOT NULL CHECK (provider IN ('evolution', 'meta')),
    kind                text NOT NULL
                        CHECK (kind IN ('receipt', 'inbound', 'echo',
                                        'connection')),
    event_key           text NOT NULL,
    provider_message_id text,
    status              text,  -- receipt: sent, delivered, read, failed;
                               -- connection: the instance's health
    phone               text,  -- E.164 of the contact, when known
    body                text,  -- inbound and echo text
    reason              text,  -- failed receipt: the gateway's reason
    occurred_at         timestamptz, -- the gateway's time, when it has one
    payload             jsonb NOT NULL, -- the event as received (secrets
                                        -- removed)
    received_at         timestamptz NOT NULL DEFAULT now(),
    outcome             text NOT NULL DEFAULT 'new',
    message_id          bigint,
    tries               integer NOT NULL DEFAULT 0, -- applications so far
    retry_at            timestamptz, -- unmatched: when recovery tries
                                     -- again (NULL: never)
    UNIQUE (tenant_id, instance_id, event_key)
);
-- only the events recovery still retries: small whatever the history
CREATE INDEX webhook_events_retry ON webhook_events (retry_at)
    WHERE retry_at IS NOT NULL;
CREATE INDEX webhook_events_received ON webhook_events (received_at);

ALTER TABLE webhook_events ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_wall ON webhook_events TO recado_tenant
    USING (tenant_id = rcd_session_tenant())
    WITH CHECK (tenant_id = rcd_session_tenant());
GRANT SELECT, INSERT, UPDATE ON webhook_events TO recado_tenant;
GRANT USAGE ON SEQUENCE webhook_events_id_seq TO recado_tenant;
-- a failed receipt writes a dead letter on the tenant's behalf
GRANT INSERT ON dead_letters TO recado_tenant;
GRANT USAGE ON SEQUENCE dead_letters_id_seq TO recado_tenant;

-- Receipts from the gateways arrive before the tenant is known to the
-- session: these look up who an event belongs to, across tenants, and
-- answer only what authenticating it needs. SECURITY DEFINER runs them as
-- the owner (who passes the tenant wall); search_path is pinned so a
-- caller cannot redirect them. plpgsql, not sql: a SECURITY DEFINER sql
-- function is never inlined and was parsed and planned on every call (a
-- quarter of the database's time per webhook); plpgsql keeps its plan.
CREATE FUNCTION rcd_webhook_evolution_route(p_tenant bigint, p_instance text,
    OUT webhook_token text, OUT instance_id bigint, OUT api_key text)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public AS $$
BEGIN
    SELECT t.webhook_token, i.id, i.api_key
      INTO webhook_token, instance_id, api_key
      FROM tenants t
      LEFT JOIN instances i ON i.tenant_id = t.id AND i.name = p_instance
                           AND i.provider = 'evolution'
     WHERE t.id = p_tenant;
    IF NOT FOUND THEN
        RETURN; -- one row of NULLs: no such tenant
    END IF;
END
$$;

CREATE FUNCTION rcd_webhook_meta_route(p_phone_number_id text,
    OUT tenant_id bigint, OUT instance_id bigint, OUT app_secret text)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public AS $$
BEGIN
    SELECT i.tenant_id, i.id, i.app_secret
      INTO tenant_id, instance_id, app_secret
      FROM instances i
     WHERE i.provider = 'meta' AND i.phone_number_id = p_phone_number_id;
END
$$;

CREATE FUNCTION rcd_webhook_meta_verify(p_token text) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public AS $$
BEGIN
    RETURN p_token <> '' AND EXISTS (SELECT 1 FROM instances
                                      WHERE provider = 'meta'
                                        AND verify_token = p_token);
END
$$;

REVOKE EXECUTE ON FUNCTION rcd_webhook_evolution_route(bigint, text),
    rcd_webhook_meta_route(text), rcd_webhook_meta_verify(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION rcd_webhook_evolution_route(bigint, text),
    rcd_webhook_meta_route(text), rcd_webhook_meta_verify(text)
    TO recado_tenant;

-- Opts a contact out and blocks its pending messages, with a history row
-- each; one function for the API's opt-out and an opt-out reply. A
-- contact never seen is created opted out, so nothing is ever sent to
-- it later. A second opt-out keeps the first opted_out_at. A message
-- already claimed ('sending') is stopped by the sender's own check.
CREATE FUNCTION rcd_opt_out(p_tenant bigint, p_phone text, p_detail text)
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
        UPDATE messages SET status = 'blocked', updated_at = now(),
                            last_error = p_detail
         WHERE tenant_id = p_tenant AND to_phone = p_phone
           AND status IN ('pending', 'paused') -- paused: held by a paused
                                               -- campaign (0010)
        RETURNING id
    )
    INSERT INTO message_history (tenant_id, message_id, status, detail)
    SELECT p_tenant, id, 'blocked', p_detail FROM upd;
    GET DIAGNOSTICS blocked = ROW_COUNT;
    RETURN blocked;
END
$$;

-- A reply's text as keywords are compared: accents and case folded,
-- surrounding blanks and punctuation trimmed ("  Sair! " -> "sair").
CREATE FUNCTION rcd_keyword_fold(p_text text) RETURNS text
LANGUAGE sql STABLE STRICT PARALLEL SAFE AS $$
    SELECT lower(unaccent(btrim(p_text, E' \t\r\n.!?,;:')))
$$;

-- Where a delivery status stands: each receipt may only move a message
-- forward on this scale.
CREATE FUNCTION rcd_receipt_rank(p_status text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$  -- not STRICT: inlined
    SELECT CASE p_status WHEN 'sent' THEN 1 WHEN 'delivered' THEN 2
                         WHEN 'read' THEN 3 ELSE 0 END
$$;

-- Whether an 'unknown' message may be settled by what does not name it:
-- an echo of its whole text, or a receipt for an id it never had. Here
-- always; 0009 (long texts sent in parts) replaces it, since an echo or
-- receipt of one part says nothing of the parts after it.
CREATE FUNCTION rcd_webhook_settleable(m messages) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT true
$$;

-- Applies stored event e (its row, locked by the caller) to the
-- messages, contacts and instances it speaks of, and records the outcome
-- on it. Idempotent: applying an event twice moves nothing the second
-- time, so recovery may retry the unmatched ones. Answers the outcome,
-- the message it touched and how many messages an opt-out blocked.
CREATE FUNCTION rcd_webhook_apply(e webhook_events, OUT outcome text,
                                  OUT message_id bigint, OUT blocked integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_id     bigint;  -- the message the event speaks of
    v_status text;    -- its status before the event
    at       timestamptz;
    n        integer;
BEGIN
    blocked := 0;
    at := coalesce(e.occurred_at, e.received_at);

    IF e.kind = 'connection' THEN
        UPDATE instances SET health = e.status, health_at = now()
         WHERE id = e.instance_id AND tenant_id = e.tenant_id;
        outcome := 'applied';

    ELSIF e.kind = 'inbound' THEN
        IF e.phone IS NULL THEN
            outcome := 'no_phone';
        ELSE
            INSERT INTO contacts AS c (tenant_id, phone, last_reply,
                                       last_reply_at)
            VALUES (e.tenant_id, e.phone, e.body, at)
            ON CONFLICT (tenant_id, phone) DO UPDATE SET
                last_reply = CASE WHEN c.last_reply_at IS NULL
                                    OR c.last_reply_at <= EXCLUDED.last_reply_at
                                  THEN EXCLUDED.last_reply ELSE c.last_reply END,
                last_reply_at = greatest(c.last_reply_at,
                                         EXCLUDED.last_reply_at);
            IF EXISTS (SELECT 1 FROM tenants t,
                              unnest(t.optout_keywords) AS k(word)
                        WHERE t.id = e.tenant_id
                          AND rcd_keyword_fold(k.word)
                              = rcd_keyword_fold(e.body)) THEN
                blocked := rcd_opt_out(e.tenant_id, e.phone,
                                       'contact replied ' || btrim(e.body));
                outcome := 'opted_out';
            ELSE
                outcome := 'applied';
            END IF;
        END IF;

    ELSIF e.kind = 'echo' THEN
        SELECT id INTO v_id FROM messages
         WHERE tenant_id = e.tenant_id
           AND provider_message_id = e.provider_message_id;
        IF FOUND THEN
            outcome := 'known';
            message_id := v_id;
        ELSE
            -- the send whose answer we never had: same instance, number
            -- and text, oldest first
            SELECT id INTO v_id FROM messages m
             WHERE tenant_id = e.tenant_id AND status = 'unknown'
               AND instance_id = e.instance_id AND to_phone = e.phone
               AND body = e.body AND rcd_webhook_settleable(m)
             ORDER BY id LIMIT 1
             FOR UPDATE;
            IF FOUND THEN
                UPDATE messages SET status = 'sent', updated_at = now(),
                       provider_message_id = e.provider_message_id,
                       sent_at = coalesce(sent_at, at), last_error = NULL
                 WHERE id = v_id;
                INSERT INTO message_history (tenant_id, message_id, status,
                                             detail)
                VALUES (e.tenant_id, v_id, 'sent',
                        'outcome settled by the gateway''s echo');
                outcome := 'settled';
                message_id := v_id;
            ELSE
                outcome := 'unmatched';
            END IF;
        END IF;

    ELSIF e.kind = 'receipt' THEN
        SELECT id, status INTO v_id, v_status FROM messages
         WHERE tenant_id = e.tenant_id
           AND provider_message_id = e.provider_message_id
         FOR UPDATE;
        IF NOT FOUND AND e.status <> 'failed' AND e.phone IS NOT NULL THEN
            -- a receipt for an id we never learned: the one 'unknown'
            -- message of that instance to that number, when there is
            -- exactly one
            SELECT count(*) INTO n FROM messages
             WHERE tenant_id = e.tenant_id AND status = 'unknown'
               AND instance_id = e.instance_id AND to_phone = e.phone;
            IF n = 1 THEN
                SELECT id, status INTO v_id, v_status FROM messages m
                 WHERE tenant_id = e.tenant_id AND status = 'unknown'
                   AND instance_id = e.instance_id AND to_phone = e.phone
                   AND rcd_webhook_settleable(m)
                 FOR UPDATE;
            END IF;
        END IF;
        IF v_id IS NULL THEN
            outcome := 'unmatched';
        ELSIF e.status = 'failed' THEN
            IF v_status IN ('sent', 'unknown') THEN
                UPDATE messages SET status = 'failed', updated_at = now(),
                       last_error = e.reason
                 WHERE id = v_id;
                INSERT INTO dead_letters (tenant_id, message_id, reason,
                                          attempts, gateway_answer)
                SELECT e.tenant_id, v_id, coalesce(e.reason, 'failed receipt'),
                       attempts, e.payload::text
                  FROM messages WHERE id = v_id;
                INSERT INTO message_history (tenant_id, message_id, status,
                                             detail)
                VALUES (e.tenant_id, v_id, 'failed',
                        'receipt: ' || coalesce(e.reason, 'failed'));
                outcome := 'applied';
            ELSE
                outcome := 'stale';
            END IF;
            message_id := v_id;
        ELSIF v_status = 'unknown' THEN
            UPDATE messages SET status = e.status, updated_at = now(),
                   provider_message_id = e.provider_message_id,
                   sent_at = coalesce(sent_at, at), last_error = NULL,
                   delivered_at = CASE WHEN e.status IN ('delivered', 'read')
                                       THEN at END,
                   read_at = CASE WHEN e.status = 'read' THEN at END
             WHERE id = v_id;
            INSERT INTO message_history (tenant_id, message_id, status,
                                         detail)
            VALUES (e.tenant_id, v_id, e.status,
                    'outcome settled by a receipt');
            outcome := 'settled';
            message_id := v_id;
        ELSIF v_status IN ('sent', 'delivered', 'read')
              AND rcd_receipt_rank(e.status) > rcd_receipt_rank(v_status) THEN
            -- The times keep their order, sent <= delivered <= read,
            -- whatever order the receipts were applied in: Evolution's
            -- carry no time (the receive time stands in), Meta's are
            -- whole seconds, and sent_at is the sender's flush time.
            UPDATE messages SET status = e.status, updated_at = now(),
                   delivered_at = least(coalesce(delivered_at,
                                                 greatest(at, sent_at)),
                                        greatest(at, sent_at)),
                   read_at = CASE WHEN e.status = 'read'
                                  THEN greatest(at, sent_at) ELSE read_at END
             WHERE id = v_id;
            INSERT INTO message_history (tenant_id, message_id, status,
                                         detail)
            VALUES (e.tenant_id, v_id, e.status, 'receipt');
            outcome := 'applied';
            message_id := v_id;
        ELSE
            outcome := 'stale';
            message_id := v_id;
        END IF;
    END IF;

    -- an unmatched event is tried again after 1, 2, 4 ... 60 s: a
    -- receipt or echo often overtakes the sender's own record of the send
    UPDATE webhook_events w SET outcome = rcd_webhook_apply.outcome,
           message_id = rcd_webhook_apply.message_id,
           tries = w.tries + 1,
           retry_at = CASE WHEN rcd_webhook_apply.outcome = 'unmatched'
                           THEN now() + least(60, power(2, w.tries))
                                        * interval '1 second' END
     WHERE w.id = e.id;
END
$$;

-- Recovery's second look at unmatched events received within the last
-- p_window_ms whose retry time has come, at most p_limit of them, oldest
-- retry first; events locked by a concurrent application are skipped.
-- Older ones stay unmatched and are not tried again. Answers how many
-- were tried and how many found their message.
CREATE FUNCTION rcd_webhook_rematch(p_window_ms bigint, p_limit integer,
                                    OUT tried integer, OUT matched integer)
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
        SELECT a.outcome INTO result FROM rcd_webhook_apply(ev) a;
        tried := tried + 1;
        IF result <> 'unmatched' THEN
            matched := matched + 1;
        END IF;
    END LOOP;
END
$$;

-- Stores one event under its key and applies it, in the caller's
-- transaction. A key already stored answers 'duplicate' and changes
-- nothing.
CREATE FUNCTION rcd_webhook_record(p_tenant bigint, p_instance bigint,
    p_provider text, p_kind text, p_key text, p_provider_message_id text,
    p_status text, p_phone text, p_body text, p_reason text,
    p_occurred_at timestamptz, p_payload jsonb,
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
      FROM rcd_webhook_apply(e) a;
END
$$;
