/*  rcd_trace.h - the trace id that follows a message through recado.

    A trace id is 32 lowercase hex digits (128 bits): the form of a W3C
    Trace Context trace-id, so one that arrives in a traceparent header
    is kept as it is, and ours can be handed to any tool that speaks that
    format. It is born at ingest, one per HTTP request (the messages of a
    batch or a billing cycle share their request's), and taken from the
    request when it carries one:
      1. traceparent (W3C Trace Context): its trace-id, when the header is
         well formed (version 00; a later version is read as 00 says) and
         the id is not all zeros;
      2. X-Request-Id: when it is 32 hex digits or a UUID (its hyphens
         dropped), in either case (lowercased), not all zeros;
      3. otherwise 16 random bytes from libcrypto (RAND_bytes).
    Anything else in those headers is ignored, never logged nor stored as
    it came: a client cannot put arbitrary text into our logs.
    The id is stored with the message (messages.trace_id, migration 0008),
    travels to the sender in the dispatch frame (proto) and is the
    trace_id of the log lines about the message (rcd_log.h).
*/
#ifndef RCD_TRACE_H_INCLUDED
#define RCD_TRACE_H_INCLUDED

#include <stdbool.h>

#define RCD_TRACE_LEN  32
#define RCD_TRACE_SIZE (RCD_TRACE_LEN + 1)

/*  True for a trace id as we store it: 32 lowercase hex digits, not all
    zeros. */
bool
rcd_trace_valid (const char *text);

/*  A new random trace id into out. Returns 0, or -1 (out then "") when
    libcrypto has no randomness to give. */
int
rcd_trace_new (char out[RCD_TRACE_SIZE]);

/*  The trace-id of a traceparent header value into out. False (out
    untouched) when the header is missing or malformed. */
bool
rcd_trace_from_traceparent (const char *header, char out[RCD_TRACE_SIZE]);

/*  An X-Request-Id header value as a trace id into out: 32 hex digits or
    a UUID, any case. False (out untouched) for anything else. */
bool
rcd_trace_from_request_id (const char *header, char out[RCD_TRACE_SIZE]);

/*  The trace id of a request with these headers (either may be NULL), in
    the order of the header comment. Returns 0, or -1 when none came and
    none could be made (out then ""). */
int
rcd_trace_for_request (const char *traceparent, const char *request_id,
                       char out[RCD_TRACE_SIZE]);

#endif
