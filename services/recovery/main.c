/*  recado-recovery: leases, expiry, unknown outcomes, gateway health,
    retention and recipient pacing clean-up (rcd_recovery_server.c).
    Exit codes: 0 after SIGTERM, 1 on a fatal error, 78 on bad config. */
#include "rcd_config.h"
#include "rcd_http.h"
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
    if (!rcd_recovery_policy_valid (cfg.unknown_policy)) {
        rcd_log_error ("config: bad value", "{s:s, s:s, s:s}", "key",
                       "unknown_policy", "value", cfg.unknown_policy,
                       "expected", "fail or retry");
        rcd_config_free (rcd_recovery_config_specs, &cfg);
        return RCD_CONFIG_EXIT;
    }
    rcd_config_log (rcd_recovery_config_specs, &cfg);
    /* libcurl's global state, before any thread exists (health polls). */
    if (rcd_http_global_init () != 0) {
        rcd_log_error ("libcurl initialisation failed", NULL);
        rcd_config_free (rcd_recovery_config_specs, &cfg);
        return 1;
    }
    rcd_service_signals_init ();
    zactor_t *actor = zactor_new (rcd_recovery_server, &cfg);
    rc = actor ? rcd_service_run (&actor, (int)cfg.drain_timeout_ms) : 1;
    rcd_config_free (rcd_recovery_config_specs, &cfg);
    rcd_http_global_cleanup ();
    return rc;
}
