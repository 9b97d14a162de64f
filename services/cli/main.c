/*  recado - the command-line tool.

      recado migrate               apply database migrations (DATABASE_URL)
      recado version               print the version
      recado send --to N --text T  send one message through the API
      recado status ID             show one message with its history
      recado alerts [--severity S] print alerts from the monitor as JSON
                                   lines (S: critical, warning or info)

    send and status talk to the ingestor at RECADO_API_URL (default
    http://127.0.0.1:8080) with the tenant key in RECADO_API_KEY (or
    --key). alerts subscribes to RECADO_ALERTS_ENDPOINT (default
    tcp://127.0.0.1:9091; a bind form such as tcp://(star):9091 is read as
    loopback). Exit codes: 0 ok, 1 failure, 64 usage, 69 unavailable.
*/
#include "rcd_cli.h"
#include "rcd_db.h"
#include "rcd_log.h"
#include "rcd_migrate.h"
#include "rcd_service.h"

#include <czmq.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *s_usage =
    "usage: recado <command> [options]\n"
    "  migrate                      apply database migrations (DATABASE_URL)\n"
    "  version                      print the version\n"
    "  send --to N --text T [--key K] [--priority P] [--send-at T]\n"
    "                               send one message through the API\n"
    "  status ID [--key K]          show one message with its history\n"
    "  campaign ID [pause|resume|cancel] [--key K]\n"
    "                               show a campaign's progress, or change\n"
    "                               its state\n"
    "  alerts [--severity S]        print monitor alerts as JSON lines\n"
    "                               (S: critical, warning or info)\n"
    "environment: DATABASE_URL, RECADO_API_URL, RECADO_API_KEY,\n"
    "             RECADO_ALERTS_ENDPOINT";

static const char *
s_env (const char *name, const char *def)
{
    const char *v = getenv (name);
    return v && *v ? v : def;
}

static int
s_cmd_migrate (void)
{
    rcd_db_t *db = rcd_db_new (s_env ("DATABASE_URL", "postgresql:///recado"));
    if (!db)
        return 1;
    if (!rcd_db_connected (db)) {
        fprintf (stderr, "recado: cannot connect: %s\n", rcd_db_error (db));
        rcd_db_destroy (&db);
        return 69;
    }
    int applied = rcd_migrate_apply (db);
    int current = applied >= 0 ? rcd_migrate_current (db) : -1;
    rcd_db_destroy (&db);
    if (applied < 0)
        return 1;
    printf ("{\"applied\":%d,\"schema_version\":%d}\n", applied, current);
    return 0;
}

/*  Turns a bind endpoint (tcp://(star):N) into one we can connect to. */
static void
s_connectable (const char *endpoint, char *out, size_t size)
{
    const char *star = strstr (endpoint, "://*:");
    if (star)
        snprintf (out, size, "%.*s://127.0.0.1:%s", (int)(star - endpoint),
                  endpoint, star + 5);
    else
        snprintf (out, size, "%s", endpoint);
}

/*  Subscribes to the monitor's alerts (one severity with --severity) and
    prints each body as one JSON line until interrupted. */
static int
s_cmd_alerts (int argc, char **argv)
{
    static const char *const severities[] = {"critical", "warning", "info"};
    char prefix[64] = "alert.";
    for (int i = 1; i < argc; i++) {
        bool known = false;
        if (!strcmp (argv[i], "--severity") && i + 1 < argc) {
            i++;
            for (size_t s = 0; s < 3; s++)
                if (!strcmp (argv[i], severities[s])) {
                    snprintf (prefix, sizeof prefix, "alert.%s.", argv[i]);
                    known = true;
                }
        }
        if (!known) {
            fprintf (stderr,
                     "recado: alerts takes --severity critical|warning|info"
                     "\n%s\n",
                     s_usage);
            return 64;
        }
    }
    char endpoint[256];
    s_connectable (s_env ("RECADO_ALERTS_ENDPOINT", "tcp://127.0.0.1:9091"),
                   endpoint, sizeof endpoint);
    zsock_t *sub = zsock_new (ZMQ_SUB);
    if (!sub || zsock_connect (sub, "%s", endpoint) != 0) {
        fprintf (stderr, "recado: cannot connect to %s\n", endpoint);
        zsock_destroy (&sub);
        return 69;
    }
    zsock_set_subscribe (sub, prefix);
    while (!zsys_interrupted) {
        char *topic = NULL, *body = NULL;
        if (zsock_recv (sub, "ss", &topic, &body) != 0)
            break;
        if (body) {
            puts (body);
            fflush (stdout);
        }
        zstr_free (&topic);
        zstr_free (&body);
    }
    zsock_destroy (&sub);
    return 0;
}

int
main (int argc, char **argv)
{
    rcd_log_init ("cli");
    if (argc < 2 || !strcmp (argv[1], "--help") || !strcmp (argv[1], "-h") ||
        !strcmp (argv[1], "help")) {
        puts (s_usage);
        return argc < 2 ? 64 : 0;
    }
    const char *cmd = argv[1];
    if (!strcmp (cmd, "version") || !strcmp (cmd, "--version")) {
        printf ("recado %s\n", RCD_VERSION);
        return 0;
    }
    if (!strcmp (cmd, "migrate"))
        return s_cmd_migrate ();
    if (!strcmp (cmd, "alerts"))
        return s_cmd_alerts (argc - 1, argv + 1);
    if (!strcmp (cmd, "send") || !strcmp (cmd, "status") ||
        !strcmp (cmd, "campaign"))
        return rcd_cli_api (argc - 1, argv + 1,
                            s_env ("RECADO_API_URL", "http://127.0.0.1:8080"),
                            s_env ("RECADO_API_KEY", NULL));
    fprintf (stderr, "recado: unknown command '%s'\n%s\n", cmd, s_usage);
    return 64;
}
