/*  recado-recovery: leases, expiry, (later) retention and gateway health.
    Exit codes: 0 after SIGTERM, 1 on a fatal error, 78 on bad config. */
#include "rcd_config.h"
#include "rcd_log.h"
#include "rcd_recovery_server.h"
#include "rcd_service.h"

int
main (int argc, char **argv)
{
    rcd_log_init ("recovery");
    int rc = rcd_service_args (argc, argv,
                               "usage: recado-recovery [--help] [--version]",
                               rcd_recovery_config_specs);
    if (rc >= 0)
        return rc;
    rcd_recovery_config_t cfg = {0};
    if (rcd_config_load (rcd_recovery_config_specs, &cfg) != 0)
        return RCD_CONFIG_EXIT;
    rcd_config_log (rcd_recovery_config_specs, &cfg);
    rcd_service_signals_init ();
    zactor_t *actor = zactor_new (rcd_recovery_server, &cfg);
    rc = actor ? rcd_service_run (&actor, (int)cfg.drain_timeout_ms) : 1;
    rcd_config_free (rcd_recovery_config_specs, &cfg);
    return rc;
}
