/*  recado-monitor - metrics, health, alert rules and alert fan-out.

    Thin: logging, arguments, configuration, signals, then the actor
    (rcd_monitor_server.c) until SIGTERM. Exit codes: 0 after a clean
    stop, 1 when the actor fails (a port that cannot be bound), 64 for a
    bad argument, 78 for a bad setting.
*/
#include "rcd_config.h"
#include "rcd_http.h"
#include "rcd_log.h"
#include "rcd_monitor_server.h"
#include "rcd_service.h"

#include <czmq.h>

#define S_DRAIN_MS 5000

int
main (int argc, char **argv)
{
    rcd_log_init ("monitor");
    int rc = rcd_service_args (argc, argv,
                               "usage: recado-monitor [--help] [--version]\n"
                               "Collects events and heartbeats, serves "
                               "/metrics, /health, /alerts, /queue-stats and "
                               "a dashboard, publishes alerts.",
                               rcd_monitor_config_specs);
    if (rc >= 0)
        return rc;
    rcd_monitor_config_t config = {0};
    if (rcd_config_load (rcd_monitor_config_specs, &config) != 0)
        return RCD_CONFIG_EXIT;
    rcd_config_log (rcd_monitor_config_specs, &config);
    /* the alert webhook's libcurl: set up before any thread starts */
    if (rcd_http_global_init () != 0) {
        rcd_log_error ("cannot initialise libcurl", NULL);
        rcd_config_free (rcd_monitor_config_specs, &config);
        return 1;
    }
    rcd_service_signals_init ();
    zactor_t *actor = zactor_new (rcd_monitor_server, &config);
    if (!actor) {
        rcd_log_error ("cannot start the monitor actor", NULL);
        rcd_http_global_cleanup ();
        rcd_config_free (rcd_monitor_config_specs, &config);
        return 1;
    }
    rc = rcd_service_run (&actor, S_DRAIN_MS);
    rcd_http_global_cleanup ();
    rcd_config_free (rcd_monitor_config_specs, &config);
    return rc;
}
