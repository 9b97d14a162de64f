/*  recado-sender: talks to the WhatsApp gateways and records outcomes.
    Exit codes: 0 after SIGTERM (drained), 1 on a fatal error, 78 on bad
    config. */
#include "rcd_config.h"
#include "rcd_http.h"
#include "rcd_log.h"
#include "rcd_sender_server.h"
#include "rcd_service.h"

int
main (int argc, char **argv)
{
    rcd_log_init ("sender");
    int rc = rcd_service_args (argc, argv,
                               "usage: recado-sender [--help] [--version]",
                               rcd_sender_config_specs);
    if (rc >= 0)
        return rc;
    rcd_sender_config_t cfg = {0};
    if (rcd_config_load (rcd_sender_config_specs, &cfg) != 0)
        return RCD_CONFIG_EXIT;
    rcd_config_log (rcd_sender_config_specs, &cfg);
    /* libcurl's global state, before any thread exists. */
    if (rcd_http_global_init () != 0) {
        rcd_log_error ("libcurl initialisation failed", NULL);
        rcd_config_free (rcd_sender_config_specs, &cfg);
        return 1;
    }
    rcd_service_signals_init ();
    zactor_t *actor = zactor_new (rcd_sender_server, &cfg);
    rc = actor ? rcd_service_run (&actor, (int)cfg.drain_timeout_ms) : 1;
    rcd_config_free (rcd_sender_config_specs, &cfg);
    rcd_http_global_cleanup ();
    return rc;
}
