/*  rcd_db.h - the one door to PostgreSQL (libpq lives only behind it).

    Parameterised statements only: values travel as parameters, never in
    the SQL text. Named statements registered with rcd_db_prepare are
    prepared lazily on each new connection. A broken connection is reset
    with capped exponential backoff (100 ms to 5 s): calls made meanwhile
    fail fast with -1, so callers retry on their next tick.

    One rcd_db_t is one connection: use it from one thread at a time.
*/
#ifndef RCD_DB_H_INCLUDED
#define RCD_DB_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct rcd_db rcd_db_t;
typedef struct rcd_db_res rcd_db_res_t;

/*  SQLSTATE codes callers branch on. */
#define RCD_SQLSTATE_UNIQUE_VIOLATION "23505"
#define RCD_SQLSTATE_SERIALIZATION    "40001"

/*  Creates a handle and tries to connect once (see rcd_db_connected).
    Returns NULL only when out of memory. Caller owns the result. */
rcd_db_t *
rcd_db_new (const char *url);

void
rcd_db_destroy (rcd_db_t **self_p);

/*  Sets the statement run first on every new session (now, when
    connected, and after each reconnect), e.g. a SET ROLE, so a session
    remade behind a caller's back starts in a known state. A session
    where it fails is dropped. Returns 0, or -1 when it failed now. */
int
rcd_db_on_connect (rcd_db_t *self, const char *sql);

/*  True while the connection is up (after reconnecting if due). */
bool
rcd_db_connected (rcd_db_t *self);

/*  Connection generation: changes on every (re)connect, so a caller can
    tell that session state (advisory locks, prepared plans) was lost. */
uint64_t
rcd_db_generation (rcd_db_t *self);

/*  Registers a named statement, prepared on first use on every
    connection. Names and SQL are copied. */
int
rcd_db_prepare (rcd_db_t *self, const char *name, const char *sql);

/*  Runs SQL text with nparams text parameters ($1..$n; NULL is SQL NULL).
    On success returns 0 and, when res_p is not NULL, the result (caller
    owns it: rcd_db_res_destroy). Returns -1 on any error (see
    rcd_db_error, rcd_db_sqlstate). */
int
rcd_db_exec (rcd_db_t *self, const char *sql, int nparams,
             const char *const *params, rcd_db_res_t **res_p)
    __attribute__ ((warn_unused_result));

/*  The same for a statement registered with rcd_db_prepare. */
int
rcd_db_run (rcd_db_t *self, const char *name, int nparams,
            const char *const *params, rcd_db_res_t **res_p)
    __attribute__ ((warn_unused_result));

/*  Runs a constant multi-statement script with no parameters
    (migrations only). */
int
rcd_db_script (rcd_db_t *self, const char *sql)
    __attribute__ ((warn_unused_result));

/*  Transactions. rollback is safe to call when no transaction is open. */
int
rcd_db_begin (rcd_db_t *self) __attribute__ ((warn_unused_result));
int
rcd_db_commit (rcd_db_t *self) __attribute__ ((warn_unused_result));
void
rcd_db_rollback (rcd_db_t *self);

/*  Last error message and SQLSTATE ("" when none). Borrowed. */
const char *
rcd_db_error (rcd_db_t *self);
const char *
rcd_db_sqlstate (rcd_db_t *self);

/*  True when the last error was SQLSTATE code. */
bool
rcd_db_error_is (rcd_db_t *self, const char *sqlstate);

/*  Results. Values are text; borrowed, valid until the result is
    destroyed. */
int
rcd_db_res_rows (const rcd_db_res_t *res);
int
rcd_db_res_cols (const rcd_db_res_t *res);
/*  Rows affected by an INSERT/UPDATE/DELETE. */
int64_t
rcd_db_res_affected (const rcd_db_res_t *res);
bool
rcd_db_res_isnull (const rcd_db_res_t *res, int row, int col);
/*  NULL for SQL NULL. */
const char *
rcd_db_res_value (const rcd_db_res_t *res, int row, int col);
int64_t
rcd_db_res_int64 (const rcd_db_res_t *res, int row, int col);
void
rcd_db_res_destroy (rcd_db_res_t **res_p);

/*  Bulk loading with COPY FROM STDIN (text format), for inserts of many
    rows where one statement with array parameters would hold them all
    at once. begin runs sql, a constant "COPY table (columns) FROM STDIN"
    with no value in it; row sends one row of ncols values (NULL is SQL
    NULL), escaped here so that any text (tabs, newlines, backslashes)
    stays inside its own field: values never become SQL or COPY syntax.
    Rows are buffered and sent in pieces of about 64 KiB. end finishes the
    COPY and answers the rows loaded in *rows_p (may be NULL); after a
    failure of begin or row, or to give up, call abort, which ends the
    COPY with an error (rolling back what it loaded) and leaves the
    connection usable. Between begin and end or abort no other statement
    runs on the connection (they fail; rcd_db_rollback aborts the COPY
    first). All return 0 or -1 (rcd_db_error). */
int
rcd_db_copy_begin (rcd_db_t *self, const char *sql)
    __attribute__ ((warn_unused_result));
int
rcd_db_copy_row (rcd_db_t *self, int ncols, const char *const *values)
    __attribute__ ((warn_unused_result));
int
rcd_db_copy_end (rcd_db_t *self, int64_t *rows_p)
    __attribute__ ((warn_unused_result));
void
rcd_db_copy_abort (rcd_db_t *self, const char *why);

/*  Formats a PostgreSQL array literal of 64-bit integers ("{1,2,3}") for
    passing a batch as one parameter. Caller frees the result. */
char *
rcd_db_int64_array (const int64_t *values, size_t count);

/*  Appends value to a PostgreSQL text array literal being built in
    *buf (quoted and escaped; NULL becomes NULL). Returns 0 or -1. */
int
rcd_db_text_array_append (char **buf, size_t *len, size_t *cap,
                          const char *value);

#endif
