-- 0008_trace: the trace id a message is born with (issue 6).
--
-- Set at ingest, one per HTTP request (the messages of a batch or a
-- billing cycle share it), from the request's traceparent or
-- X-Request-Id or else random (common/rcd_trace.h): 32 lowercase hex
-- digits. The scheduler's claim returns it in the dispatch frame so the
-- sender's log lines about the message carry it. NULL for messages
-- stored before this migration.
--
-- Nothing looks messages up by it (a trace is followed in the logs), so
-- there is no index: the column costs 33 bytes a row and leaves the
-- claim's and the senders' updates HOT. Adding a nullable column with no
-- default only changes the catalogue, and the CHECK is NOT VALID, so
-- neither rewrites nor scans the table. It is checked on every insert
-- and on every update of a row (the claim, each outcome), so it is the
-- length only: a regular expression costs ~3.5 us a row there, a 500-row
-- claim almost 2 ms. The length is what the dispatch frame needs (a
-- longer id could not be encoded); the ingestor writes only well-formed
-- ids and the scheduler sends a malformed one as none.
ALTER TABLE messages ADD COLUMN trace_id text;
ALTER TABLE messages ADD CONSTRAINT messages_trace_id_length
    CHECK (octet_length(trace_id) = 32) NOT VALID;
