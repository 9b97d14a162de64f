/*  rcd_service.h - what every service's main() shares: signals, the
    wait-drain-destroy sequence, --help/--version.

    Protocol between main and a service actor (czmq zactor):
      actor -> main  "FATAL" <reason>   the actor cannot go on; main exits 1
      main -> actor  "DRAIN"            stop intake, finish in-flight work
      actor -> main  "DRAINED"          nothing left in flight
      main -> actor  "$TERM"            (zactor_destroy) exit now
    The first SIGTERM or SIGINT starts the drain; a second one exits the
    process at once with status 1.
*/
#ifndef RCD_SERVICE_H_INCLUDED
#define RCD_SERVICE_H_INCLUDED

#include <czmq.h>
#include <stdbool.h>

#define RCD_VERSION "0.1.0"

/*  Installs our SIGTERM/SIGINT handlers and turns czmq's off. Call before
    creating any socket. */
void
rcd_service_signals_init (void);

/*  True once a stop signal arrived. */
bool
rcd_service_stopping (void);

/*  Asks the process to stop as if signalled (tests, fatal paths). */
void
rcd_service_request_stop (void);

/*  Waits until a signal or a FATAL from the actor, then asks it to drain
    for at most drain_ms and destroys it. Returns the process exit code:
    0 after a clean stop, 1 after a FATAL. */
int
rcd_service_run (zactor_t **actor_p, int drain_ms);

/*  Handles --help and --version. Returns -1 to go on, else an exit code
    for main to return (help printed). */
int
rcd_service_args (int argc, char **argv, const char *usage,
                  const void *config_specs);

#endif
