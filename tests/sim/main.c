/*  =========================================================================
    recado-gwsim - the gateway simulator as a process

    Usage: recado-gwsim [--bind ADDR] [--port N] [--config JSON] [--help]
    Prints one JSON line {"event":"listening","port":N} on stdout once it
    accepts connections, serves until SIGTERM or SIGINT, then exits 0.
    Exit codes: 0 clean stop or --help, 78 bad arguments, 1 cannot listen.
    =========================================================================
*/

#include "rcd_gwsim.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_EXIT_CONFIG 78

//  One help text for --help and for argument errors.
static void
s_print_usage (FILE *out)
{
    fprintf (out,
             "usage: recado-gwsim [--bind ADDR] [--port N] [--config JSON]\n"
             "  --bind ADDR    IPv4 or IPv6 literal to listen on "
             "(default 127.0.0.1)\n"
             "  --port N       TCP port, 0 picks a free one (default 8081)\n"
             "  --config JSON  initial knobs, as POST /_sim/config\n"
             "  --help         this text\n"
             "Prints {\"event\":\"listening\",\"port\":N} when ready; "
             "stops on SIGTERM/SIGINT.\n");
}

//  A port must be a whole number in [0, 65535].
static int
s_parse_port (const char *text, int *port)
{
    char *end;
    errno = 0;
    long value = strtol (text, &end, 10);
    if (errno || end == text || *end || value < 0 || value > 65535)
        return -2;
    *port = (int)value;
    return 0;
}

int
main (int argc, char *argv[])
{
    const char *bind_addr = "127.0.0.1";
    const char *config = NULL;
    int port = 8081;
    for (int i = 1; i < argc; i++) {
        bool has_value = i + 1 < argc;
        if (strcmp (argv[i], "--help") == 0 || strcmp (argv[i], "-h") == 0) {
            s_print_usage (stdout);
            return 0;
        }
        else if (strcmp (argv[i], "--port") == 0 && has_value) {
            if (s_parse_port (argv[++i], &port)) {
                fprintf (stderr, "recado-gwsim: bad --port '%s'\n", argv[i]);
                return S_EXIT_CONFIG;
            }
        }
        else if (strcmp (argv[i], "--bind") == 0 && has_value)
            bind_addr = argv[++i];
        else if (strcmp (argv[i], "--config") == 0 && has_value)
            config = argv[++i];
        else {
            fprintf (stderr, "recado-gwsim: unknown or incomplete '%s'\n",
                     argv[i]);
            s_print_usage (stderr);
            return S_EXIT_CONFIG;
        }
    }

    //  Block the stop signals before any thread starts, so every thread
    //  inherits the mask and only sigwait below receives them. A shell
    //  starts background jobs with SIGINT ignored, and sigwait never sees
    //  an ignored signal: restore the default first
    signal (SIGINT, SIG_DFL);
    signal (SIGTERM, SIG_DFL);
    sigset_t stop_signals;
    sigemptyset (&stop_signals);
    sigaddset (&stop_signals, SIGTERM);
    sigaddset (&stop_signals, SIGINT);
    pthread_sigmask (SIG_BLOCK, &stop_signals, NULL);
    signal (SIGPIPE, SIG_IGN);

    rcd_gwsim_t *sim = rcd_gwsim_new (bind_addr, port);
    if (!sim) {
        fprintf (stderr, "recado-gwsim: cannot listen on %s port %d\n",
                 bind_addr, port);
        return 1;
    }
    if (config && rcd_gwsim_configure (sim, config)) {
        fprintf (stderr, "recado-gwsim: invalid --config\n");
        rcd_gwsim_destroy (&sim);
        return S_EXIT_CONFIG;
    }
    printf ("{\"event\":\"listening\",\"port\":%d}\n", rcd_gwsim_port (sim));
    fflush (stdout);

    int signal_number = 0;
    sigwait (&stop_signals, &signal_number);
    rcd_gwsim_destroy (&sim);
    return 0;
}
