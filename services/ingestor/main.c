/*  recado-ingestor: the tenants' HTTP API.
    Exit codes: 0 after SIGTERM, 1 on a fatal error, 78 on bad config. */
#include "rcd_config.h"
#include "rcd_ingestor_server.h"
#include "rcd_log.h"
#include "rcd_service.h"

#include <string.h>

/*  default_country must be a calling code: 1 to 3 digits. */
static bool
s_country_ok (const char *cc)
{
    size_t n = cc ? strlen (cc) : 0;
    if (n < 1 || n > 3 || cc[0] == '0')
        return false;
    return strspn (cc, "0123456789") == n;
}

int
main (int argc, char **argv)
{
    rcd_log_init ("ingestor");
    int rc = rcd_service_args (argc, argv,
                               "usage: recado-ingestor [--help] [--version]",
                               rcd_ingestor_config_specs);
    if (rc >= 0)
        return rc;
    rcd_ingestor_config_t cfg = {0};
    if (rcd_config_load (rcd_ingestor_config_specs, &cfg) != 0)
        return RCD_CONFIG_EXIT;
    if (!s_country_ok (cfg.default_country)) {
        rcd_log_error ("config: bad value", "{s:s, s:s, s:s}", "key",
                       "default_country", "env", "RECADO_DEFAULT_COUNTRY",
                       "why", "not a calling code (1 to 3 digits)");
        rcd_config_free (rcd_ingestor_config_specs, &cfg);
        return RCD_CONFIG_EXIT;
    }
    rcd_config_log (rcd_ingestor_config_specs, &cfg);
    rcd_service_signals_init ();
    zactor_t *actor = zactor_new (rcd_ingestor_server, &cfg);
    rc = actor ? rcd_service_run (&actor, (int)cfg.drain_timeout_ms) : 1;
    rcd_config_free (rcd_ingestor_config_specs, &cfg);
    return rc;
}
