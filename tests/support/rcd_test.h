/*  rcd_test.h - what integration and end-to-end tests share: a fresh
    PostgreSQL database per test program, free ports, HTTP calls, child
    processes and polling with a deadline (never sleep to synchronise).

    The PostgreSQL server comes from tests/run, which exports
    RECADO_TEST_PG: a libpq conninfo of the cluster's superuser without a
    dbname (e.g. "host=/tmp/x port=54321 user=postgres").
*/
#ifndef RCD_TEST_H_INCLUDED
#define RCD_TEST_H_INCLUDED

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/*  Creates database "t_<name>_<pid>" with every migration applied and
    returns its conninfo. Caller frees. Fails the test (cmocka) when no
    server is configured or reachable. */
char *
rcd_test_db_create (const char *name);

/*  Drops the database made by rcd_test_db_create and frees url. */
void
rcd_test_db_drop (char **url_p);

/*  Runs one SQL statement with parameters on url and returns the first
    column of the first row as a new string (NULL for no row or SQL NULL).
    Fails the test on a SQL error. */
char *
rcd_test_sql (const char *url, const char *sql, int nparams,
              const char *const *params);

/*  Like rcd_test_sql, as an integer (0 for no row). */
long long
rcd_test_sql_int (const char *url, const char *sql, int nparams,
                  const char *const *params);

/*  A TCP port free on 127.0.0.1 right now. */
int
rcd_test_free_port (void);

/*  An HTTP answer. */
typedef struct {
    long status; /* 0 when the request failed */
    char *body;  /* NUL-terminated; free with rcd_test_http_free */
    size_t size;
} rcd_test_http_t;

/*  Performs an HTTP request (body may be NULL) with an optional bearer
    key and extra header lines (NULL-terminated array, may be NULL). */
rcd_test_http_t
rcd_test_http (const char *method, const char *url, const char *bearer,
               const char *body, const char *const *headers);

void
rcd_test_http_free (rcd_test_http_t *res);

/*  Calls the HTTP API on 127.0.0.1:port and parses the answer (NULL for
    an empty or non-JSON body; caller decrefs). *status gets the HTTP
    status, 0 when the request failed. */
json_t *
rcd_test_api (int port, const char *method, const char *path, const char *key,
              const char *body, long *status);

/*  Asserts an API.md error body: the code, a non-empty message and the
    field (NULL: JSON null). */
void
rcd_test_assert_api_error (json_t *answer, const char *code, const char *field);

/*  rcd_test_api asserting the status (the failure shows the request and
    the answer) and a JSON answer; returns it (never NULL, caller
    decrefs). */
json_t *
rcd_test_api_expect (int port, long expected, const char *method,
                     const char *path, const char *key, const char *body);

/*  rcd_test_api_expect of status, then rcd_test_assert_api_error with
    code and field; frees the answer. */
void
rcd_test_api_expect_error (int port, long status, const char *method,
                           const char *path, const char *key, const char *body,
                           const char *code, const char *field);

/*  The string member name of obj; NULL when obj is not an object or the
    member is absent or not a string. */
const char *
rcd_test_str (json_t *obj, const char *name);

/*  Creates a tenant through POST /v1/tenants with the admin key, asserting
    201; answers its API key (caller frees) and its id in *id (may be
    NULL). */
char *
rcd_test_create_tenant (int port, const char *admin_key, const char *name,
                        long long *id);

/*  Starts a program with extra environment entries ("K=V", NULL-ended)
    added to ours; its stdout/stderr go to log_path (appended) when given.
    Returns the pid or -1. */
pid_t
rcd_test_spawn (const char *const *argv, const char *const *env,
                const char *log_path);

/*  Sends sig and waits up to timeout_ms for the child to exit. Returns its
    exit status (0..255), 128+signal if killed by one, or -1 on timeout
    (the child is then killed with SIGKILL). */
int
rcd_test_stop (pid_t pid, int sig, int timeout_ms);

/*  Path of a built program (RECADO_BIN_DIR/<name>). Caller frees. */
char *
rcd_test_bin (const char *name);

/*  Polls fn(arg) every 10 ms until it returns true or timeout_ms passes.
    Returns the last value. */
bool
rcd_test_wait_until (bool (*fn) (void *arg), void *arg, int timeout_ms);

/*  Polls until an HTTP GET of url answers status 200. */
bool
rcd_test_wait_http_ok (const char *url, int timeout_ms);

#endif
