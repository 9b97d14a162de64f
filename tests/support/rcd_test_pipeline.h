/*  rcd_test_pipeline.h - the whole pipeline as separate processes, for
    end-to-end, fault and crash tests.

    One fixture owns: a fresh database (rcd_test_db_create on
    RECADO_TEST_PG, or a new database on a PostgreSQL server the test
    names), the gateway simulator in process (rcd_gwsim), and the
    service binaries from RECADO_BIN_DIR: N schedulers (the first to take
    the advisory lock is active, the others standby), N senders,
    recovery, the ingestor and optionally the monitor, on free ports.

    Every service setting is an environment entry RECADO_<KEY>=value: a
    test passes its own for every process, for one kind of process, or
    for one process before (re)starting it. Each process writes its log to
    its own file under RECADO_BIN_DIR/../test-logs/<name>-<pid>-<n>/; the
    folder is removed by destroy only after rcd_test_pipeline_passed, so a
    failed test leaves its logs behind (destroy prints where); with
    RECADO_TEST_KEEP_LOGS set in the environment they are always kept.

    Failures of the fixture itself fail the test (cmocka). Waiting is
    always a poll with a deadline.
*/
#ifndef RCD_TEST_PIPELINE_H_INCLUDED
#define RCD_TEST_PIPELINE_H_INCLUDED

#include "rcd_gwsim.h"

#include <jansson.h>
#include <stdbool.h>
#include <sys/types.h>

typedef struct rcd_test_pipeline rcd_test_pipeline_t;

typedef enum {
    RCD_TP_SCHEDULER,
    RCD_TP_SENDER,
    RCD_TP_RECOVERY,
    RCD_TP_INGESTOR,
    RCD_TP_MONITOR,
    RCD_TP_KINDS
} rcd_tp_kind_t;

#define RCD_TP_MAX_PER_KIND 8

/*  The admin key every fixture's ingestor is given. */
#define RCD_TP_ADMIN_KEY "pipeline-admin-key"

typedef struct {
    /*  [a-z0-9_], short: names the database and the log folder. */
    const char *name;
    /*  NULL: a database on RECADO_TEST_PG (rcd_test_db_create). Else a
        libpq conninfo without dbname of another server, on which a
        fresh database is created (and dropped by destroy). */
    const char *pg_base;
    int schedulers; /* 0 means 1 */
    int senders;    /* 0 means 1 */
    bool no_recovery;
    bool monitor;
    /*  "RECADO_KEY=value" entries, NULL-ended (either may be NULL): for
        every process, then for every process of one kind (later ones
        win). */
    const char *const *env;
    const char *const *kind_env[RCD_TP_KINDS];
} rcd_test_pipeline_opts_t;

/*  Creates the database, starts the simulator and every process, and
    waits (30 s) until the ingestor answers /readyz. */
rcd_test_pipeline_t *
rcd_test_pipeline_new (const rcd_test_pipeline_opts_t *opts);

/*  SIGKILLs what still runs, drops the database, stops the simulator,
    removes the logs if the test passed (else prints where they are),
    frees everything. Safe on NULL. */
void
rcd_test_pipeline_destroy (rcd_test_pipeline_t **self_p);

/*  Marks the test as passed: destroy removes the logs. */
void
rcd_test_pipeline_passed (rcd_test_pipeline_t *self);

rcd_gwsim_t *
rcd_test_pipeline_sim (rcd_test_pipeline_t *self);

/*  The database's conninfo (for rcd_test_sql). */
const char *
rcd_test_pipeline_db (rcd_test_pipeline_t *self);

int
rcd_test_pipeline_api_port (rcd_test_pipeline_t *self);

/*  0 without a monitor. */
int
rcd_test_pipeline_monitor_port (rcd_test_pipeline_t *self);

/*  The pid of one process (0 when it is not running). */
pid_t
rcd_test_pipeline_pid (rcd_test_pipeline_t *self, rcd_tp_kind_t kind,
                       int index);

/*  The log file of one process. Borrowed. */
const char *
rcd_test_pipeline_log (rcd_test_pipeline_t *self, rcd_tp_kind_t kind,
                       int index);

/*  Whether one process's log contains needle. */
bool
rcd_test_pipeline_log_has (rcd_test_pipeline_t *self, rcd_tp_kind_t kind,
                           int index, const char *needle);

/*  Adds or replaces "RECADO_KEY=value" in one process's environment; it
    applies from its next start. */
void
rcd_test_pipeline_set_env (rcd_test_pipeline_t *self, rcd_tp_kind_t kind,
                           int index, const char *entry);

/*  Sends sig to one process and waits up to timeout_ms for it to exit.
    Returns the exit status (128+signal when killed by one), -1 when it
    had to be SIGKILLed after the timeout or was not running. */
int
rcd_test_pipeline_stop (rcd_test_pipeline_t *self, rcd_tp_kind_t kind,
                        int index, int sig, int timeout_ms);

/*  (Re)starts one process that is not running. */
void
rcd_test_pipeline_start (rcd_test_pipeline_t *self, rcd_tp_kind_t kind,
                         int index);

/*  Whether one process is still running (reaps it if it exited). */
bool
rcd_test_pipeline_running (rcd_test_pipeline_t *self, rcd_tp_kind_t kind,
                           int index);

/*  SIGTERMs every running process (ingestor first, monitor last) and
    fails the test unless each exits 0 within 30 s. */
void
rcd_test_pipeline_stop_all (rcd_test_pipeline_t *self);

/*  Creates a tenant through the API; answers its key (caller frees). */
char *
rcd_test_pipeline_tenant (rcd_test_pipeline_t *self, const char *name);

/*  POST /v1/instances with the given fields (a JSON object; base_url is
    set to the simulator when absent), asserting 201. Answers its id. */
long long
rcd_test_pipeline_instance (rcd_test_pipeline_t *self, const char *key,
                            const char *json);

/*  An Evolution instance "name" on the simulator at rate_per_second. */
long long
rcd_test_pipeline_evolution (rcd_test_pipeline_t *self, const char *key,
                             const char *name, double rate_per_second);

/*  A Meta instance with phone_number_id on the simulator. */
long long
rcd_test_pipeline_meta (rcd_test_pipeline_t *self, const char *key,
                        const char *name, const char *phone_number_id,
                        double rate_per_second);

/*  The phone of message i in rcd_test_pipeline_messages, as the gateway
    sees it (digits, "55119" + 8 digits). */
void
rcd_test_pipeline_digits (int i, char *buf, size_t size);

/*  The text of message i: "<prefix> <i>". */
void
rcd_test_pipeline_text (const char *prefix, int i, char *buf, size_t size);

/*  Message items for i in [first, first + count): to = +<digits(i)>,
    text = "<prefix> <i>", pinned to instance when not NULL. */
json_t *
rcd_test_pipeline_messages (int first, int count, const char *prefix,
                            const char *instance);

/*  Submits items (an array; stolen) through POST /v1/messages/batch in
    chunks of 1000, asserting 207 and an id for every item. Answers how
    many were accepted. */
int
rcd_test_pipeline_submit (rcd_test_pipeline_t *self, const char *key,
                          json_t *items);

/*  Messages with a status (NULL: all). */
long long
rcd_test_pipeline_count (rcd_test_pipeline_t *self, const char *status);

/*  Polls until no message is pending or sending (a message in 'unknown'
    awaits reconciliation and counts as settled). On timeout prints the
    counts by status and answers false. */
bool
rcd_test_pipeline_wait_settled (rcd_test_pipeline_t *self, int timeout_ms);

/*  Polls until at least n messages have status (NULL: any). */
bool
rcd_test_pipeline_wait_count (rcd_test_pipeline_t *self, const char *status,
                              long long n, int timeout_ms);

/*  Prints "label: status=n ..." to stderr. */
void
rcd_test_pipeline_print_counts (rcd_test_pipeline_t *self, const char *label);

#endif
