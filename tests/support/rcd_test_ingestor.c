/*  rcd_test_ingestor.c - the in-process ingestor of integration tests
    (see rcd_test_ingestor.h). */
#include "rcd_test_ingestor.h"
#include "rcd_config.h"
#include "rcd_test.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

void
rcd_test_ingestor_start (rcd_test_ingestor_t *self, const char *db_name,
                         const char *admin_key, int http_threads)
{
    char *url = rcd_test_db_create (db_name);
    rcd_test_ingestor_start_on (self, url, admin_key, http_threads, 0, 0);
    free (url);
    self->owns_db = true;
}

void
rcd_test_ingestor_start_on (rcd_test_ingestor_t *self, const char *url,
                            const char *admin_key, int http_threads,
                            int nudge_port, int events_port)
{
    memset (self, 0, sizeof *self);
    self->url = strdup (url);
    assert_non_null (self->url);
    self->port = rcd_test_free_port ();
    char buf[256];
    setenv ("DATABASE_URL", url, 1);
    snprintf (buf, sizeof buf, "%d", self->port);
    setenv ("RECADO_HTTP_PORT", buf, 1);
    snprintf (buf, sizeof buf, "%d", http_threads);
    setenv ("RECADO_HTTP_THREADS", buf, 1);
    if (admin_key)
        setenv ("RECADO_ADMIN_KEY", admin_key, 1);
    else
        unsetenv ("RECADO_ADMIN_KEY");
    /* The tenant API's rate limit stays on (every request pays its
       statement) but so high that no test meets it by accident; a test
       of the limit sets its own values first (not overwritten here). */
    setenv ("RECADO_API_RATE_PER_SECOND", "1000000", 0);
    setenv ("RECADO_API_BURST", "1000000", 0);
    snprintf (buf, sizeof buf, "tcp://127.0.0.1:%d",
              nudge_port ? nudge_port : rcd_test_free_port ());
    setenv ("RECADO_NUDGE_ENDPOINT", buf, 1);
    snprintf (buf, sizeof buf, "tcp://127.0.0.1:%d",
              events_port ? events_port : rcd_test_free_port ());
    setenv ("RECADO_EVENTS_ENDPOINT", buf, 1);
    assert_int_equal (rcd_config_load (rcd_ingestor_config_specs, &self->cfg),
                      0);
    self->actor = zactor_new (rcd_ingestor_server, &self->cfg);
    assert_non_null (self->actor);
    snprintf (buf, sizeof buf, "http://127.0.0.1:%d/healthz", self->port);
    assert_true (rcd_test_wait_http_ok (buf, 10000));
}

void
rcd_test_ingestor_stop (rcd_test_ingestor_t *self)
{
    if (self->actor) {
        zactor_destroy (&self->actor);
        rcd_config_free (rcd_ingestor_config_specs, &self->cfg);
    }
    if (self->owns_db)
        rcd_test_db_drop (&self->url);
    free (self->url);
    memset (self, 0, sizeof *self);
}

void
rcd_test_nudges_drain (zsock_t *nudges)
{
    zsock_set_rcvtimeo (nudges, 0);
    rcd_proto_msg_t msg;
    while (rcd_proto_recv (nudges, &msg) != -1)
        rcd_proto_msg_clear (&msg);
}

int
rcd_test_nudge_next (zsock_t *nudges, rcd_nudge_t *out, int timeout_ms)
{
    zsock_set_rcvtimeo (nudges, timeout_ms);
    rcd_proto_msg_t msg;
    if (rcd_proto_recv (nudges, &msg) != 0)
        return -1;
    int rc = -1;
    if (msg.type == RCD_MSG_NUDGE) {
        out->tenant_id = msg.u.nudge.tenant_id;
        out->count = msg.u.nudge.count;
        rc = 0;
    }
    rcd_proto_msg_clear (&msg);
    return rc;
}
