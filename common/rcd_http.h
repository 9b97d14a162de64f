/*  rcd_http.h - many HTTP requests in flight from one thread (libcurl's
    multi interface behind a small class; only rcd_http.c includes curl).

    One rcd_http_t per actor thread. Requests are queued with rcd_http_post
    or rcd_http_get, progressed by rcd_http_perform (which also waits for
    activity), and their results are taken with rcd_http_next. Connections
    are kept alive and reused (HTTP/1.1, one request per connection at a
    time); easy handles, header lists and body buffers are recycled, so a
    request in steady state costs no handle set-up.

    Process set-up: call rcd_http_global_init once in main before any
    thread starts (libcurl's global init is not thread-safe), and
    rcd_http_global_cleanup at the very end. Signals are never used
    (CURLOPT_NOSIGNAL): timeouts are enforced by the multi handle.

    Not thread-safe: use one instance from one thread.
*/
#ifndef RCD_HTTP_H_INCLUDED
#define RCD_HTTP_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct rcd_http rcd_http_t;

/*  Largest answer body kept; the rest is read and discarded
    (body_truncated is then set). */
#define RCD_HTTP_MAX_BODY ((size_t)256 * 1024)

/*  Why a request got no HTTP answer. "Sent" means the whole request
    (headers and body) was handed to the kernel: after that the peer may
    have acted on it even though we never saw an answer. */
typedef enum {
    RCD_HTTP_ERR_NONE = 0,            /* an HTTP answer arrived */
    RCD_HTTP_ERR_CONNECT,             /* refused, unresolved, unreachable,
                                          TLS handshake: certainly not sent */
    RCD_HTTP_ERR_TIMEOUT_BEFORE_SEND, /* timed out before fully sent */
    RCD_HTTP_ERR_TIMEOUT_AFTER_SEND,  /* sent, no answer in time: unknown */
    RCD_HTTP_ERR_RESET_BEFORE_SEND,   /* connection broke before sent */
    RCD_HTTP_ERR_RESET_AFTER_SEND,    /* sent, connection closed or reset
                                          without an answer: unknown */
    RCD_HTTP_ERR_OTHER                /* anything else (no memory, bad URL) */
} rcd_http_error_t;

/*  A finished request. Pointers are borrowed: valid until the next call
    of rcd_http_next or rcd_http_destroy. */
typedef struct {
    void *user;             /* as given to post/get */
    long status;            /* HTTP status, 0 when no answer */
    const char *body;       /* NUL-terminated, "" when none */
    size_t body_len;        /* bytes in body */
    bool body_truncated;    /* answer exceeded RCD_HTTP_MAX_BODY */
    rcd_http_error_t error; /* RCD_HTTP_ERR_NONE when status is set */
    const char *error_text; /* libcurl's words, "" when none */
    int retry_after_s;      /* Retry-After (seconds or date), 0: none */
    int64_t total_us;       /* from start to completion */
} rcd_http_result_t;

/*  Once per process, before any thread. Returns 0 or -1. */
int
rcd_http_global_init (void);

/*  Once at exit, after every rcd_http_t is destroyed. */
void
rcd_http_global_cleanup (void);

/*  Creates a client that holds at most max_connections connections (open
    and idle together); requests beyond that wait inside libcurl for a
    free connection. Returns NULL when out of memory. Caller owns it. */
rcd_http_t *
rcd_http_new (int max_connections);

/*  Aborts whatever is in flight and frees everything. */
void
rcd_http_destroy (rcd_http_t **self_p);

/*  Queues a POST of body (len bytes, copied) to url with the header lines
    of headers (NULL-terminated "Name: value" strings, copied; may be
    NULL). Timeouts are in milliseconds and must be > 0. "Expect:" is
    always suppressed (no 100-continue round trip). user comes back in the
    result. Returns 0, or -1 when the request could not be queued (no
    result will come for it). */
int
rcd_http_post (rcd_http_t *self, const char *url, const char *const *headers,
               const char *body, size_t len, long connect_timeout_ms,
               long total_timeout_ms, void *user)
    __attribute__ ((warn_unused_result));

/*  Queues a GET; otherwise as rcd_http_post. */
int
rcd_http_get (rcd_http_t *self, const char *url, const char *const *headers,
              long connect_timeout_ms, long total_timeout_ms, void *user)
    __attribute__ ((warn_unused_result));

/*  Waits up to timeout_ms for network activity (less when a libcurl timer
    is due sooner; 0 does not wait), then progresses every transfer.
    Returns the number of finished results ready for rcd_http_next, or -1
    on a multi-handle failure. */
int
rcd_http_perform (rcd_http_t *self, int timeout_ms);

/*  The same, also waking when one of fds (nfds of them, at most 8, may be 0) is
    readable. Meant for a ZeroMQ socket's ZMQ_FD: that descriptor is edge
    triggered, so after every return the caller must check ZMQ_EVENTS and
    read until nothing is left before calling this again. */
int
rcd_http_perform_fds (rcd_http_t *self, const int *fds, int nfds,
                      int timeout_ms);

/*  Takes the next finished request into res. Returns false when none is
    left. The previous result's pointers become invalid. */
bool
rcd_http_next (rcd_http_t *self, rcd_http_result_t *res);

/*  Requests queued and not yet returned by rcd_http_next. */
size_t
rcd_http_inflight (rcd_http_t *self);

/*  Percent-encodes text as one URL path segment: RFC 3986 unreserved
    characters (A-Z a-z 0-9 - . _ ~) stay, every other byte becomes %XX,
    so a name holding '/', '?', '#' or spaces cannot leave its segment.
    Returns NULL when out of memory. Caller owns the result (free). */
char *
rcd_http_escape (const char *text);

/*  Short name of an error kind ("connect", "timeout_after_send", ...). */
const char *
rcd_http_error_name (rcd_http_error_t error);

#endif
