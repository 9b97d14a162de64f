-- 0009_parts: long texts sent in parts (issue 7).
--
-- A text over the sender's part_max_chars is sent as several WhatsApp
-- messages, cut at word boundaries (common/rcd_parts.h). The parts are
-- not stored: the split depends only on the text and the limit, so the
-- sender recomputes it at each attempt. What is stored is the progress:
--   parts_sent  parts the gateway has accepted, written (fenced by
--               attempts) after each part and before the next is sent;
--               a retry resumes at part parts_sent + 1, so a delivered
--               part is never sent again;
--   part_limit  the limit the first part went out with (NULL until
--               then), so a retry splits the same way even when the
--               sender's setting changed in between.
-- Both are returned by the scheduler's claim in the dispatch frame.
-- Neither is indexed, so progress updates stay HOT. The default of
-- parts_sent is a constant: adding it only changes the catalogue
-- (PostgreSQL 11+), no rewrite.
ALTER TABLE messages ADD COLUMN parts_sent integer NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN part_limit integer;

-- A text sent in parts, once 'unknown', is left to recovery's deadline:
-- an echo or a receipt the webhooks cannot tie to one part (only the
-- last part's id is kept) must not settle the whole text as sent (see
-- rcd_webhook_apply, 0007). A part has gone, or the text is longer than
-- the default part_max_chars (1 000; a sender set lower makes shorter
-- texts multi-part too, and those stay settleable).
CREATE OR REPLACE FUNCTION rcd_webhook_settleable(m messages)
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT m.parts_sent = 0 AND char_length(m.body) <= 1000
$$;
