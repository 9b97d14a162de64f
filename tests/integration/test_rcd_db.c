/*  test_rcd_db.c - rcd_db and rcd_migrate against a real PostgreSQL.

    Needs RECADO_TEST_PG (tests/run sets it). Each run works in a fresh
    database from rcd_test_db_create, plus one empty database for the
    concurrent migration test.
*/
#include "rcd_db.h"
#include "rcd_log.h"
#include "rcd_migrate.h"
#include "rcd_test.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

static char *s_url; /* the test database */

static int
s_setup (void **state)
{
    (void)state;
    rcd_log_init ("test_rcd_db");
    rcd_log_set_level (RCD_LOG_ERROR);
    s_url = rcd_test_db_create ("rcd_db");
    return 0;
}

static int
s_teardown (void **state)
{
    (void)state;
    rcd_test_db_drop (&s_url);
    return 0;
}

/*  A connected handle on the test database. */
static rcd_db_t *
s_connect (void)
{
    rcd_db_t *db = rcd_db_new (s_url);
    assert_non_null (db);
    if (!rcd_db_connected (db))
        fail_msg ("cannot connect: %s", rcd_db_error (db));
    return db;
}

static int
s_highest_migration (void)
{
    int highest = 0, count = 0;
    for (const rcd_migration_t *m = rcd_migrations; m->name; m++, count++) {
        assert_true (m->version > highest); /* in order, no duplicates */
        highest = m->version;
    }
    assert_true (count > 0);
    return highest;
}

static void
test_exec_passes_text_parameters_and_sql_null (void **state)
{
    (void)state;
    rcd_db_t *db = s_connect ();
    const char *params[] = {"olá 'mundo'; DROP TABLE tenants; --", "41", NULL};
    rcd_db_res_t *res = NULL;
    assert_int_equal (rcd_db_exec (db,
                                   "SELECT $1::text, $2::int + 1, $3::text, "
                                   "$3::text IS NULL",
                                   3, params, &res),
                      0);
    assert_non_null (res);
    assert_int_equal (rcd_db_res_rows (res), 1);
    assert_int_equal (rcd_db_res_cols (res), 4);
    assert_string_equal (rcd_db_res_value (res, 0, 0), params[0]);
    assert_int_equal (rcd_db_res_int64 (res, 0, 1), 42);
    assert_true (rcd_db_res_isnull (res, 0, 2));
    assert_null (rcd_db_res_value (res, 0, 2));
    assert_int_equal (rcd_db_res_int64 (res, 0, 2), 0);
    assert_string_equal (rcd_db_res_value (res, 0, 3), "t");
    assert_false (rcd_db_res_isnull (res, 0, 0));
    rcd_db_res_destroy (&res);
    assert_null (res);
    rcd_db_res_destroy (&res); /* safe twice */

    /* the parameter stayed a value: the table is still there */
    assert_int_equal (
        rcd_db_exec (db, "SELECT count(*) FROM tenants", 0, NULL, &res), 0);
    assert_int_equal (rcd_db_res_int64 (res, 0, 0), 0);
    rcd_db_res_destroy (&res);

    /* a result nobody asked for is freed inside */
    assert_int_equal (rcd_db_exec (db, "SELECT 1", 0, NULL, NULL), 0);
    /* 64-bit values survive */
    const char *big[] = {"9223372036854775807"};
    assert_int_equal (rcd_db_exec (db, "SELECT $1::bigint", 1, big, &res), 0);
    assert_true (rcd_db_res_int64 (res, 0, 0) == INT64_MAX);
    rcd_db_res_destroy (&res);
    rcd_db_destroy (&db);
    assert_null (db);
    rcd_db_destroy (&db); /* safe on NULL */
}

static void
test_errors_carry_message_and_sqlstate_until_the_next_success (void **state)
{
    (void)state;
    rcd_db_t *db = s_connect ();
    rcd_db_res_t *res = (rcd_db_res_t *)1; /* must be reset to NULL */
    assert_int_equal (rcd_db_exec (db, "SELEC 1", 0, NULL, &res), -1);
    assert_null (res);
    assert_string_equal (rcd_db_sqlstate (db), "42601");
    assert_true (rcd_db_error_is (db, "42601"));
    assert_non_null (strstr (rcd_db_error (db), "syntax"));
    assert_null (strchr (rcd_db_error (db), '\n')); /* one log line */
    const char *zero[] = {"0"};
    assert_int_equal (rcd_db_exec (db, "SELECT 1 / $1::int", 1, zero, NULL),
                      -1);
    assert_string_equal (rcd_db_sqlstate (db), "22012");
    assert_int_equal (rcd_db_exec (db, "SELECT 1", 0, NULL, NULL), 0);
    assert_string_equal (rcd_db_sqlstate (db), "");
    assert_string_equal (rcd_db_error (db), "");
    assert_false (rcd_db_error_is (db, "42601"));
    /* an unregistered statement name */
    assert_int_equal (rcd_db_run (db, "nope", 0, NULL, NULL), -1);
    assert_string_equal (rcd_db_sqlstate (db), "26000");
    rcd_db_destroy (&db);
}

static void
test_unique_violation_is_recognised_by_sqlstate (void **state)
{
    (void)state;
    rcd_db_t *db = s_connect ();
    assert_int_equal (rcd_db_script (db, "CREATE TABLE t_unique (k text "
                                         "PRIMARY KEY, n int);"
                                         "CREATE INDEX ON t_unique (n)"),
                      0);
    const char *params[] = {"key-1"};
    rcd_db_res_t *res = NULL;
    assert_int_equal (rcd_db_exec (db, "INSERT INTO t_unique (k) VALUES ($1)",
                                   1, params, &res),
                      0);
    assert_int_equal (rcd_db_res_affected (res), 1);
    rcd_db_res_destroy (&res);
    assert_int_equal (rcd_db_exec (db, "INSERT INTO t_unique (k) VALUES ($1)",
                                   1, params, NULL),
                      -1);
    assert_true (rcd_db_error_is (db, RCD_SQLSTATE_UNIQUE_VIOLATION));
    assert_false (rcd_db_error_is (db, RCD_SQLSTATE_SERIALIZATION));
    assert_non_null (strstr (rcd_db_error (db), "t_unique_pkey"));
    /* the connection is still good */
    assert_true (rcd_db_connected (db));
    assert_int_equal (
        rcd_db_exec (db, "UPDATE t_unique SET n = 1", 0, NULL, &res), 0);
    assert_int_equal (rcd_db_res_affected (res), 1);
    assert_int_equal (rcd_db_res_rows (res), 0);
    rcd_db_res_destroy (&res);
    assert_int_equal (rcd_db_script (db, "DROP TABLE t_unique"), 0);
    rcd_db_destroy (&db);
}

/*  State for polling a prepared statement until it works again. */
typedef struct {
    rcd_db_t *db;
    int failures;
} t_poll_t;

static bool
s_run_add (void *arg)
{
    t_poll_t *p = arg;
    const char *params[] = {"40", "2"};
    rcd_db_res_t *res = NULL;
    if (rcd_db_run (p->db, "add", 2, params, &res) != 0) {
        p->failures++;
        return false;
    }
    bool ok = rcd_db_res_rows (res) == 1 && rcd_db_res_int64 (res, 0, 0) == 42;
    rcd_db_res_destroy (&res);
    return ok;
}

static bool
s_backend_gone (void *arg)
{
    const char *params[] = {arg};
    return rcd_test_sql_int (s_url,
                             "SELECT count(*) FROM pg_stat_activity "
                             "WHERE pid = $1::int",
                             1, params) == 0;
}

static void
test_prepared_statements_run_again_after_a_reconnect (void **state)
{
    (void)state;
    rcd_db_t *db = s_connect ();
    assert_int_equal (rcd_db_prepare (db, "add", "SELECT $1::int + $2::int"),
                      0);
    assert_int_equal (rcd_db_prepare (db, "pid", "SELECT pg_backend_pid()"), 0);
    t_poll_t poll = {db, 0};
    assert_true (s_run_add (&poll));
    assert_true (s_run_add (&poll)); /* prepared once, run twice */
    /* registering it again changes nothing; other SQL under its name is
       refused rather than shadowing the prepared one */
    assert_int_equal (rcd_db_prepare (db, "add", "SELECT $1::int + $2::int"),
                      0);
    assert_int_equal (rcd_db_prepare (db, "add", "SELECT $1::int - $2::int"),
                      -1);
    assert_true (s_run_add (&poll));
    assert_int_equal (poll.failures, 0);
    rcd_db_res_t *res = NULL;
    assert_int_equal (rcd_db_exec (db,
                                   "SELECT count(*) FROM pg_prepared_statements"
                                   " WHERE name = 'add'",
                                   0, NULL, &res),
                      0);
    assert_int_equal (rcd_db_res_int64 (res, 0, 0), 1);
    rcd_db_res_destroy (&res);

    uint64_t generation = rcd_db_generation (db);
    assert_int_equal (rcd_db_run (db, "pid", 0, NULL, &res), 0);
    char *pid = strdup (rcd_db_res_value (res, 0, 0));
    rcd_db_res_destroy (&res);

    /* kill our backend from another connection and wait until it is gone,
       so the next call meets a dead connection */
    const char *params[] = {pid};
    assert_int_equal (rcd_test_sql_int (s_url,
                                        "SELECT pg_terminate_backend($1::int)"
                                        "::int",
                                        1, params),
                      1);
    assert_true (rcd_test_wait_until (s_backend_gone, pid, 10000));

    poll.failures = 0;
    assert_true (rcd_test_wait_until (s_run_add, &poll, 10000));
    assert_true (poll.failures >= 1);
    assert_true (rcd_db_generation (db) != generation);
    assert_true (rcd_db_connected (db));
    /* a new backend, with the statement prepared on it */
    assert_int_equal (rcd_db_run (db, "pid", 0, NULL, &res), 0);
    assert_string_not_equal (rcd_db_res_value (res, 0, 0), pid);
    rcd_db_res_destroy (&res);
    assert_true (s_run_add (&poll));
    free (pid);
    rcd_db_destroy (&db);
}

static void
test_an_unreachable_server_fails_fast_and_backs_off (void **state)
{
    (void)state;
    char url[128];
    snprintf (url, sizeof url,
              "host=127.0.0.1 port=%d dbname=x connect_timeout=2",
              rcd_test_free_port ());
    rcd_db_t *db = rcd_db_new (url);
    assert_non_null (db);
    assert_false (rcd_db_connected (db));
    assert_int_equal (rcd_db_exec (db, "SELECT 1", 0, NULL, NULL), -1);
    assert_string_equal (rcd_db_sqlstate (db), "08006");
    assert_non_null (strstr (rcd_db_error (db), "backing off"));
    assert_int_equal (rcd_db_generation (db), 0);
    rcd_db_rollback (db); /* harmless without a connection */
    rcd_db_destroy (&db);
}

static long long
s_count (const char *table)
{
    char sql[128];
    snprintf (sql, sizeof sql, "SELECT count(*) FROM %s", table);
    return rcd_test_sql_int (s_url, sql, 0, NULL);
}

static void
test_transactions_commit_or_roll_back_as_a_whole (void **state)
{
    (void)state;
    rcd_db_t *db = s_connect ();
    assert_int_equal (rcd_db_script (db, "CREATE TABLE t_tx (v int)"), 0);
    rcd_db_rollback (db); /* nothing open: a no-op */

    assert_int_equal (rcd_db_begin (db), 0);
    assert_int_equal (
        rcd_db_exec (db, "INSERT INTO t_tx VALUES (1), (2)", 0, NULL, NULL), 0);
    assert_int_equal (s_count ("t_tx"), 0); /* not visible yet */
    assert_int_equal (rcd_db_commit (db), 0);
    assert_int_equal (s_count ("t_tx"), 2);

    assert_int_equal (rcd_db_begin (db), 0);
    assert_int_equal (
        rcd_db_exec (db, "INSERT INTO t_tx VALUES (3)", 0, NULL, NULL), 0);
    rcd_db_rollback (db);
    assert_int_equal (s_count ("t_tx"), 2);

    /* an error aborts the transaction until it is rolled back */
    assert_int_equal (rcd_db_begin (db), 0);
    assert_int_equal (
        rcd_db_exec (db, "INSERT INTO t_tx VALUES (4)", 0, NULL, NULL), 0);
    assert_int_equal (
        rcd_db_exec (db, "INSERT INTO t_tx VALUES ('x')", 0, NULL, NULL), -1);
    assert_int_equal (
        rcd_db_exec (db, "INSERT INTO t_tx VALUES (5)", 0, NULL, NULL), -1);
    assert_string_equal (rcd_db_sqlstate (db), "25P02");
    rcd_db_rollback (db);
    assert_int_equal (s_count ("t_tx"), 2);
    assert_int_equal (
        rcd_db_exec (db, "INSERT INTO t_tx VALUES (6)", 0, NULL, NULL), 0);
    assert_int_equal (s_count ("t_tx"), 3);
    assert_int_equal (rcd_db_script (db, "DROP TABLE t_tx"), 0);
    rcd_db_destroy (&db);
}

static void
test_int64_array_round_trips_through_bigint_array (void **state)
{
    (void)state;
    rcd_db_t *db = s_connect ();
    const int64_t values[] = {0, 1, -1, INT64_MIN, INT64_MAX, 42, -99999};
    size_t n = sizeof values / sizeof values[0];
    char *array = rcd_db_int64_array (values, n);
    assert_non_null (array);
    const char *params[] = {array};
    rcd_db_res_t *res = NULL;
    assert_int_equal (rcd_db_exec (db,
                                   "SELECT v FROM unnest($1::bigint[]) WITH "
                                   "ORDINALITY AS t (v, o) ORDER BY o",
                                   1, params, &res),
                      0);
    assert_int_equal (rcd_db_res_rows (res), n);
    for (size_t i = 0; i < n; i++)
        assert_true (rcd_db_res_int64 (res, (int)i, 0) == values[i]);
    rcd_db_res_destroy (&res);
    free (array);

    /* the empty batch */
    array = rcd_db_int64_array (NULL, 0);
    assert_string_equal (array, "{}");
    params[0] = array;
    assert_int_equal (
        rcd_db_exec (db, "SELECT cardinality($1::bigint[])", 1, params, &res),
        0);
    assert_int_equal (rcd_db_res_int64 (res, 0, 0), 0);
    rcd_db_res_destroy (&res);
    free (array);

    /* a big batch of the widest values */
    enum { BIG = 5000 };
    int64_t *many = malloc (BIG * sizeof *many);
    assert_non_null (many);
    for (int i = 0; i < BIG; i++)
        many[i] = i % 2 ? INT64_MIN + i : INT64_MAX - i;
    array = rcd_db_int64_array (many, BIG);
    params[0] = array;
    assert_int_equal (rcd_db_exec (db,
                                   "SELECT count(*), min(v), max(v) FROM "
                                   "unnest($1::bigint[]) AS t (v)",
                                   1, params, &res),
                      0);
    assert_int_equal (rcd_db_res_int64 (res, 0, 0), BIG);
    assert_true (rcd_db_res_int64 (res, 0, 1) == INT64_MIN + 1);
    assert_true (rcd_db_res_int64 (res, 0, 2) == INT64_MAX);
    rcd_db_res_destroy (&res);
    free (array);
    free (many);
    rcd_db_destroy (&db);
}

/*  Builds a text[] literal of values, sends it as $1::text[] and checks
    every element comes back the same, NULLs included. */
static void
s_assert_text_array_round_trip (rcd_db_t *db, const char *const *values,
                                size_t n)
{
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (size_t i = 0; i < n; i++)
        assert_int_equal (
            rcd_db_text_array_append (&buf, &len, &cap, values[i]), 0);
    assert_non_null (buf);
    assert_int_equal (strlen (buf), len);
    assert_true (len < cap);
    const char *params[] = {buf};
    rcd_db_res_t *res = NULL;
    if (rcd_db_exec (db,
                     "SELECT v, v IS NULL FROM unnest($1::text[]) WITH "
                     "ORDINALITY AS t (v, o) ORDER BY o",
                     1, params, &res) != 0)
        fail_msg ("%s: %s", buf, rcd_db_error (db));
    assert_int_equal (rcd_db_res_rows (res), n);
    for (size_t i = 0; i < n; i++) {
        if (!values[i]) {
            assert_true (rcd_db_res_isnull (res, (int)i, 0));
            continue;
        }
        assert_false (rcd_db_res_isnull (res, (int)i, 0));
        assert_string_equal (rcd_db_res_value (res, (int)i, 0), values[i]);
    }
    rcd_db_res_destroy (&res);
    free (buf);
}

static void
test_text_array_round_trips_quotes_backslashes_and_null (void **state)
{
    (void)state;
    rcd_db_t *db = s_connect ();
    const char *values[] = {"plain",
                            "with \"double\" quotes",
                            "back\\slash\\",
                            "\\\"",
                            "",
                            "NULL",
                            NULL,
                            "null",
                            "comma, {braces} and 'single'",
                            "  spaces  ",
                            "new\nline\ttab",
                            "ação ñ 日本",
                            "\"",
                            "\\"};
    s_assert_text_array_round_trip (db, values,
                                    sizeof values / sizeof values[0]);
    const char *one_null[] = {NULL};
    s_assert_text_array_round_trip (db, one_null, 1);
    const char *one_empty[] = {""};
    s_assert_text_array_round_trip (db, one_empty, 1);

    /* growth: many elements made only of characters that need escaping */
    enum { N = 3000 };
    char **many = calloc (N, sizeof *many);
    assert_non_null (many);
    for (int i = 0; i < N; i++) {
        size_t len = (size_t)(i % 40);
        many[i] = malloc (len + 1);
        assert_non_null (many[i]);
        for (size_t j = 0; j < len; j++)
            many[i][j] = (j + (size_t)i) % 2 ? '"' : '\\';
        many[i][len] = 0;
    }
    s_assert_text_array_round_trip (db, (const char *const *)many, N);
    for (int i = 0; i < N; i++)
        free (many[i]);
    free (many);
    rcd_db_destroy (&db);
}

/*  Runs sql on db asserting success; answers the first cell as a new
    string (NULL for SQL NULL). */
static char *
s_cell (rcd_db_t *db, const char *sql, int nparams, const char *const *params)
{
    rcd_db_res_t *res = NULL;
    if (rcd_db_exec (db, sql, nparams, params, &res) != 0)
        fail_msg ("%s: %s", sql, rcd_db_error (db));
    assert_int_equal (rcd_db_res_rows (res), 1);
    const char *v = rcd_db_res_value (res, 0, 0);
    char *copy = v ? strdup (v) : NULL;
    rcd_db_res_destroy (&res);
    return copy;
}

static void
test_copy_loads_any_text_and_null_exactly (void **state)
{
    (void)state;
    rcd_db_t *db = s_connect ();
    assert_int_equal (rcd_db_exec (db,
                                   "CREATE TABLE copy_text (id int PRIMARY KEY,"
                                   " a text, b text)",
                                   0, NULL, NULL),
                      0);
    /* what COPY's text format would read as something else unescaped:
       the delimiter, row ends, escapes, the end marker, its NULL */
    const char *tricky[] = {"plain",
                            "tab\there",
                            "new\nline",
                            "carriage\rreturn",
                            "back\\slash\\",
                            "\\.",
                            "\\N",
                            "",
                            NULL,
                            "ação ñ 日本",
                            "a\tb\nc\rd\\e",
                            "'; DROP TABLE copy_text; --"};
    enum { TRICKY = sizeof tricky / sizeof tricky[0], MANY = 20000 };
    assert_int_equal (
        rcd_db_copy_begin (db, "COPY copy_text (id, a, b) FROM STDIN"), 0);
    for (int i = 0; i < TRICKY + MANY; i++) {
        char id[16], filler[64];
        snprintf (id, sizeof id, "%d", i);
        snprintf (filler, sizeof filler, "row %d\t\\", i);
        const char *a = i < TRICKY ? tricky[i] : filler;
        const char *row[] = {id, a, i % 2 ? NULL : "b"};
        assert_int_equal (rcd_db_copy_row (db, 3, row), 0);
    }
    int64_t rows = 0;
    assert_int_equal (rcd_db_copy_end (db, &rows), 0);
    assert_int_equal (rows, TRICKY + MANY);
    for (int i = 0; i < TRICKY; i++) {
        char id[16];
        snprintf (id, sizeof id, "%d", i);
        const char *params[] = {id};
        char *a = s_cell (db, "SELECT a FROM copy_text WHERE id = $1::int", 1,
                          params);
        if (!tricky[i])
            assert_null (a);
        else {
            assert_non_null (a);
            assert_string_equal (a, tricky[i]);
        }
        free (a);
    }
    char *n = s_cell (db,
                      "SELECT count(*) FILTER (WHERE b IS NULL)::text || ','"
                      "    || count(*) FILTER (WHERE b = 'b')::text || ','"
                      "    || count(*) FILTER (WHERE a = 'row ' || id"
                      "                                  || E'\\t\\\\')::text"
                      "  FROM copy_text",
                      0, NULL);
    char want[64];
    snprintf (want, sizeof want, "%d,%d,%d", (TRICKY + MANY) / 2,
              (TRICKY + MANY + 1) / 2, MANY);
    assert_string_equal (n, want);
    free (n);
    assert_int_equal (rcd_db_exec (db, "DROP TABLE copy_text", 0, NULL, NULL),
                      0);
    rcd_db_destroy (&db);
}

static void
test_a_failed_or_aborted_copy_loads_nothing_and_leaves_a_session (void **state)
{
    (void)state;
    rcd_db_t *db = s_connect ();
    assert_int_equal (rcd_db_exec (db,
                                   "CREATE TABLE copy_checked (id int"
                                   " CHECK (id > 0))",
                                   0, NULL, NULL),
                      0);
    /* a row the table refuses: the whole COPY fails */
    assert_int_equal (
        rcd_db_copy_begin (db, "COPY copy_checked (id) FROM STDIN"), 0);
    const char *good[] = {"1"}, *bad[] = {"0"};
    assert_int_equal (rcd_db_copy_row (db, 1, good), 0);
    assert_int_equal (rcd_db_copy_row (db, 1, bad), 0);
    int64_t rows = -1;
    assert_int_equal (rcd_db_copy_end (db, &rows), -1);
    assert_string_equal (rcd_db_sqlstate (db), "23514");
    assert_int_equal (rows, 0);
    char *n = s_cell (db, "SELECT count(*) FROM copy_checked", 0, NULL);
    assert_string_equal (n, "0");
    free (n);

    /* given up by the caller: nothing loaded, the caller's reason kept */
    assert_int_equal (
        rcd_db_copy_begin (db, "COPY copy_checked (id) FROM STDIN"), 0);
    assert_int_equal (rcd_db_copy_row (db, 1, good), 0);
    rcd_db_copy_abort (db, "the caller changed its mind");
    n = s_cell (db, "SELECT count(*) FROM copy_checked", 0, NULL);
    assert_string_equal (n, "0");
    free (n);
    rcd_db_copy_abort (db, "twice is harmless");

    /* inside a transaction: rolled back with it */
    assert_int_equal (rcd_db_begin (db), 0);
    assert_int_equal (
        rcd_db_copy_begin (db, "COPY copy_checked (id) FROM STDIN"), 0);
    assert_int_equal (rcd_db_copy_row (db, 1, good), 0);
    assert_int_equal (rcd_db_copy_end (db, &rows), 0);
    assert_int_equal (rows, 1);
    rcd_db_rollback (db);
    n = s_cell (db, "SELECT count(*) FROM copy_checked", 0, NULL);
    assert_string_equal (n, "0");
    free (n);

    /* misuse answers -1 and breaks nothing */
    assert_int_equal (rcd_db_copy_row (db, 1, good), -1);
    assert_int_equal (rcd_db_copy_end (db, &rows), -1);
    assert_int_equal (rcd_db_copy_begin (db, "SELECT 1"), -1);
    assert_int_equal (rcd_db_copy_begin (db, "COPY nowhere FROM STDIN"), -1);
    assert_string_equal (rcd_db_sqlstate (db), "42P01");
    n = s_cell (db, "SELECT 1", 0, NULL);
    assert_string_equal (n, "1");
    free (n);
    assert_int_equal (
        rcd_db_exec (db, "DROP TABLE copy_checked", 0, NULL, NULL), 0);
    rcd_db_destroy (&db);
}

static void
test_migrating_a_migrated_database_applies_nothing (void **state)
{
    (void)state;
    rcd_db_t *db = s_connect ();
    int highest = s_highest_migration ();
    assert_int_equal (rcd_migrate_current (db), highest);
    assert_int_equal (rcd_migrate_apply (db), 0);
    assert_int_equal (rcd_migrate_apply (db), 0);
    assert_int_equal (rcd_migrate_current (db), highest);
    int count = 0;
    for (const rcd_migration_t *m = rcd_migrations; m->name; m++)
        count++;
    assert_int_equal (s_count ("schema_migrations"), count);
    /* the advisory lock was released: another session can take it */
    char *locked = rcd_test_sql (
        s_url, "SELECT pg_try_advisory_lock(7166328424302706)::text", 0, NULL);
    assert_string_equal (locked, "true");
    free (locked);
    rcd_db_destroy (&db);
}

/*  An empty database made by hand (rcd_test_db_create migrates). */
static char *
s_empty_db_create (const char *dbname)
{
    const char *base = getenv ("RECADO_TEST_PG");
    assert_non_null (base);
    char admin[512], sql[256];
    snprintf (admin, sizeof admin, "%s dbname=postgres", base);
    snprintf (sql, sizeof sql, "DROP DATABASE IF EXISTS %s", dbname);
    rcd_db_t *db = rcd_db_new (admin);
    assert_non_null (db);
    assert_int_equal (rcd_db_script (db, sql), 0);
    snprintf (sql, sizeof sql, "CREATE DATABASE %s", dbname);
    assert_int_equal (rcd_db_script (db, sql), 0);
    rcd_db_destroy (&db);
    char *url = malloc (strlen (base) + strlen (dbname) + 16);
    assert_non_null (url);
    sprintf (url, "%s dbname=%s", base, dbname);
    return url;
}

static void
s_empty_db_drop (char **url_p, const char *dbname)
{
    const char *base = getenv ("RECADO_TEST_PG");
    char admin[512], sql[256];
    snprintf (admin, sizeof admin, "%s dbname=postgres", base);
    snprintf (sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)",
              dbname);
    rcd_db_t *db = rcd_db_new (admin);
    assert_non_null (db);
    assert_int_equal (rcd_db_script (db, sql), 0);
    rcd_db_destroy (&db);
    free (*url_p);
    *url_p = NULL;
}

typedef struct {
    const char *url;
    pthread_barrier_t *start;
    int applied;
} t_migrator_t;

static void *
s_migrator (void *arg)
{
    t_migrator_t *m = arg;
    rcd_db_t *db = rcd_db_new (m->url);
    /* connect first, so both reach the lock at the same moment */
    bool connected = db && rcd_db_connected (db);
    pthread_barrier_wait (m->start);
    m->applied = connected ? rcd_migrate_apply (db) : -2;
    rcd_db_destroy (&db);
    return NULL;
}

static void
test_two_threads_migrating_a_fresh_database_at_once_both_succeed (void **state)
{
    (void)state;
    char dbname[64];
    snprintf (dbname, sizeof dbname, "t_rcd_db_fresh_%d", (int)getpid ());
    char *url = s_empty_db_create (dbname);
    int count = 0;
    for (const rcd_migration_t *m = rcd_migrations; m->name; m++)
        count++;

    /* nothing applied yet reads as version 0, not as an error */
    rcd_db_t *db = rcd_db_new (url);
    assert_non_null (db);
    assert_int_equal (rcd_migrate_current (db), 0);
    rcd_db_destroy (&db);

    pthread_barrier_t start;
    pthread_barrier_init (&start, NULL, 2);
    t_migrator_t a = {url, &start, -3}, b = {url, &start, -3};
    pthread_t ta, tb;
    assert_int_equal (pthread_create (&ta, NULL, s_migrator, &a), 0);
    assert_int_equal (pthread_create (&tb, NULL, s_migrator, &b), 0);
    pthread_join (ta, NULL);
    pthread_join (tb, NULL);
    pthread_barrier_destroy (&start);
    /* both succeed; between them each migration is applied once */
    assert_true (a.applied >= 0);
    assert_true (b.applied >= 0);
    assert_int_equal (a.applied + b.applied, count);

    assert_int_equal (
        rcd_test_sql_int (url, "SELECT count(*) FROM schema_migrations", 0,
                          NULL),
        count);
    assert_int_equal (rcd_test_sql_int (url,
                                        "SELECT count(*) FROM pg_tables WHERE "
                                        "schemaname = 'public' AND tablename "
                                        "IN ('tenants', 'messages')",
                                        0, NULL),
                      2);
    db = rcd_db_new (url);
    assert_int_equal (rcd_migrate_current (db), s_highest_migration ());
    rcd_db_destroy (&db);
    s_empty_db_drop (&url, dbname);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_exec_passes_text_parameters_and_sql_null),
        cmocka_unit_test (
            test_errors_carry_message_and_sqlstate_until_the_next_success),
        cmocka_unit_test (test_unique_violation_is_recognised_by_sqlstate),
        cmocka_unit_test (test_prepared_statements_run_again_after_a_reconnect),
        cmocka_unit_test (test_an_unreachable_server_fails_fast_and_backs_off),
        cmocka_unit_test (test_transactions_commit_or_roll_back_as_a_whole),
        cmocka_unit_test (test_int64_array_round_trips_through_bigint_array),
        cmocka_unit_test (
            test_text_array_round_trips_quotes_backslashes_and_null),
        cmocka_unit_test (test_copy_loads_any_text_and_null_exactly),
        cmocka_unit_test (
            test_a_failed_or_aborted_copy_loads_nothing_and_leaves_a_session),
        cmocka_unit_test (test_migrating_a_migrated_database_applies_nothing),
        cmocka_unit_test (
            test_two_threads_migrating_a_fresh_database_at_once_both_succeed),
    };
    return cmocka_run_group_tests (tests, s_setup, s_teardown);
}
