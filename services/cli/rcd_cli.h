/*  rcd_cli.h - the API commands of the `recado` tool. */
#ifndef RCD_CLI_H_INCLUDED
#define RCD_CLI_H_INCLUDED

/*  Runs "send ..." or "status ..." (argv[0] is the command) against the
    ingestor at api_url with the tenant key (may be NULL: --key then).
    Prints the JSON answer on stdout. Returns the process exit code. */
int
rcd_cli_api (int argc, char **argv, const char *api_url, const char *key);

#endif
