/*  rcd_monitor_http.h - the monitor's HTTP face (libmicrohttpd).

    The monitor actor owns all state and renders each document (metrics
    text, health, alerts, queue stats) on its own thread, then hands the
    text over with rcd_monitor_http_publish. HTTP requests, answered on
    libmicrohttpd's thread, copy the latest text under a mutex: a slow
    client never touches live state, and the actor never waits for HTTP.

      GET /metrics      text/plain; version=0.0.4
      GET /health       application/json; 503 while "unhealthy"
      GET /alerts       application/json
      GET /queue-stats  application/json
      GET /             text/html, the dashboard
    Anything else: 404 (unknown path) or 405 (other methods) with the JSON
    error body of API.md. HEAD is answered like GET.
*/
#ifndef RCD_MONITOR_HTTP_H_INCLUDED
#define RCD_MONITOR_HTTP_H_INCLUDED

typedef struct rcd_monitor_http rcd_monitor_http_t;

/*  The documents the actor publishes. */
typedef enum {
    RCD_MONITOR_DOC_METRICS = 0,
    RCD_MONITOR_DOC_HEALTH,
    RCD_MONITOR_DOC_ALERTS,
    RCD_MONITOR_DOC_QUEUE_STATS,
    RCD_MONITOR_DOC_COUNT
} rcd_monitor_doc_t;

/*  Starts serving on bind_address (numeric IPv4 or IPv6) and port.
    Returns NULL (logged) when the address is bad or cannot be bound.
    Caller owns the result. */
rcd_monitor_http_t *
rcd_monitor_http_new (const char *bind_address, int port);

/*  Stops serving (waits for requests in progress) and frees. */
void
rcd_monitor_http_destroy (rcd_monitor_http_t **self_p);

/*  Replaces a document with text (takes ownership of *text_p, which is
    set to NULL) answered with HTTP status. Until the first publish a
    document answers 503. */
void
rcd_monitor_http_publish (rcd_monitor_http_t *self, rcd_monitor_doc_t doc,
                          char **text_p, unsigned int status);

#endif
