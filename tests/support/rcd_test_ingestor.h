/*  rcd_test_ingestor.h - the ingestor actor run in process by an
    integration test: its own database, a free HTTP port, and nudges and
    events sent where nobody listens unless the test binds those ports
    itself.

    The configuration goes through the environment (DATABASE_URL,
    RECADO_HTTP_PORT, RECADO_HTTP_THREADS, RECADO_ADMIN_KEY,
    RECADO_NUDGE_ENDPOINT, RECADO_EVENTS_ENDPOINT, and
    RECADO_API_RATE_PER_SECOND / RECADO_API_BURST at 1000000 unless the
    test set them) and rcd_config_load, as
    in the binary, so these variables stay set in the test process after
    start. Failures fail the running cmocka test.

    Call curl_global_init before start when the test uses threads.
*/
#ifndef RCD_TEST_INGESTOR_H_INCLUDED
#define RCD_TEST_INGESTOR_H_INCLUDED

#include "rcd_ingestor_server.h"
#include "rcd_proto.h"

#include <stdbool.h>

typedef struct {
    char *url;                 /* the database (our copy) */
    int port;                  /* HTTP on 127.0.0.1 */
    rcd_ingestor_config_t cfg; /* the actor's config */
    zactor_t *actor;           /* the ingestor */
    bool owns_db;              /* url made by start: stop drops it */
} rcd_test_ingestor_t;

/*  Creates a fresh database (rcd_test_db_create (db_name)) and starts the
    ingestor on it with admin_key and http_threads pool threads, nudges
    and events going to free ports nobody listens on (the ingestor drops
    them by design). Returns once /healthz answers 200. */
void
rcd_test_ingestor_start (rcd_test_ingestor_t *self, const char *db_name,
                         const char *admin_key, int http_threads);

/*  Starts the ingestor on the existing database url (copied; stop does
    not drop it), for a test that prepares the database first or points
    at one that is not there. admin_key NULL leaves RECADO_ADMIN_KEY
    unset. nudge_port, events_port: where the test bound its PULL and SUB
    on 127.0.0.1; 0 for a free port nobody listens on. Returns once
    /healthz answers 200. */
void
rcd_test_ingestor_start_on (rcd_test_ingestor_t *self, const char *url,
                            const char *admin_key, int http_threads,
                            int nudge_port, int events_port);

/*  Stops the actor, frees the config and the url, drops the database if
    start made it, and zeroes self. Safe on a zeroed self. */
void
rcd_test_ingestor_stop (rcd_test_ingestor_t *self);

/*  Drops every nudge already queued on the test's PULL socket. */
void
rcd_test_nudges_drain (zsock_t *nudges);

/*  Waits up to timeout_ms for a nudge on nudges; returns 0 and fills out,
    -1 when none came (or another frame did). */
int
rcd_test_nudge_next (zsock_t *nudges, rcd_nudge_t *out, int timeout_ms);

#endif
