/*  rcd_service.c - signals and the main loop shared by the services. */
#include "rcd_service.h"
#include "rcd_config.h"
#include "rcd_log.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t s_stop_requests = 0;

static void
s_on_signal (int sig)
{
    (void)sig;
    if (++s_stop_requests > 1)
        _exit (1);
}

void
rcd_service_signals_init (void)
{
    zsys_handler_set (NULL);
    struct sigaction sa;
    memset (&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigemptyset (&sa.sa_mask);
    sigaction (SIGTERM, &sa, NULL);
    sigaction (SIGINT, &sa, NULL);
    signal (SIGPIPE, SIG_IGN);
}

bool
rcd_service_stopping (void)
{
    return s_stop_requests > 0;
}

void
rcd_service_request_stop (void)
{
    s_stop_requests = 1;
}

/*  Reads one command from the actor pipe; true when it was FATAL. */
static bool
s_actor_failed (zactor_t *actor)
{
    char *cmd = NULL, *reason = NULL;
    if (zsock_recv (actor, "ss", &cmd, &reason) != 0)
        return true;
    bool fatal = cmd && strcmp (cmd, "FATAL") == 0;
    if (fatal)
        rcd_log_error ("fatal", "{s:s}", "reason", reason ? reason : "");
    zstr_free (&cmd);
    zstr_free (&reason);
    return fatal;
}

int
rcd_service_run (zactor_t **actor_p, int drain_ms)
{
    zactor_t *actor = *actor_p;
    int code = 0;
    zpoller_t *poller = zpoller_new (actor, NULL);
    while (!rcd_service_stopping ()) {
        void *which = zpoller_wait (poller, 200);
        if (which == actor && s_actor_failed (actor)) {
            code = 1;
            break;
        }
    }
    if (code == 0) {
        rcd_log_info ("draining", "{s:i}", "deadline_ms", drain_ms);
        zstr_send (actor, "DRAIN");
        int64_t deadline = zclock_mono () + drain_ms;
        while (true) {
            /* read the clock once: a negative wait would be forever */
            int64_t left = deadline - zclock_mono ();
            if (left <= 0)
                break;
            if (zpoller_wait (poller, (int)left) != actor)
                continue;
            char *reply = zstr_recv (actor);
            bool done = reply && strcmp (reply, "DRAINED") == 0;
            zstr_free (&reply);
            if (done)
                break;
        }
    }
    zpoller_destroy (&poller);
    zactor_destroy (actor_p);
    rcd_log_info ("stopped", "{s:i}", "exit_code", code);
    return code;
}

int
rcd_service_args (int argc, char **argv, const char *usage,
                  const void *config_specs)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp (argv[i], "--help") || !strcmp (argv[i], "-h")) {
            rcd_config_print_help ((const rcd_config_spec_t *)config_specs,
                                   usage);
            return 0;
        }
        if (!strcmp (argv[i], "--version")) {
            printf ("recado %s\n", RCD_VERSION);
            return 0;
        }
        fprintf (stderr, "unknown argument: %s (try --help)\n", argv[i]);
        return 64;
    }
    return -1;
}
