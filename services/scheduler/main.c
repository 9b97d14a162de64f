/*  recado-scheduler: decides what is sent when and through which number.
    Exit codes: 0 after SIGTERM, 1 on a fatal error, 78 on bad config. */
#include "rcd_config.h"
#include "rcd_log.h"
#include "rcd_scheduler_server.h"
#include "rcd_service.h"

int
main (int argc, char **argv)
{
    rcd_log_init ("scheduler");
    int rc = rcd_service_args (argc, argv,
                               "usage: recado-scheduler [--help] [--version]",
                               rcd_scheduler_config_specs);
    if (rc >= 0)
        return rc;
    rcd_scheduler_config_t cfg = {0};
    if (rcd_config_load (rcd_scheduler_config_specs, &cfg) != 0)
        return RCD_CONFIG_EXIT;
    rcd_config_log (rcd_scheduler_config_specs, &cfg);
    rcd_service_signals_init ();
    zactor_t *actor = zactor_new (rcd_scheduler_server, &cfg);
    rc = actor ? rcd_service_run (&actor, (int)cfg.drain_timeout_ms) : 1;
    rcd_config_free (rcd_scheduler_config_specs, &cfg);
    return rc;
}
