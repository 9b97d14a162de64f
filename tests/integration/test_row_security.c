/*  test_row_security.c - row-level security, the second tenant wall
    (migrations/0004_row_security.sql), and the ingestor running every
    tenant request behind it.

    Two tenants own rows in every table that holds tenant data. Plain SQL
    sessions as role recado_tenant check the policies themselves: a query
    without any tenant filter sees only the session's tenant, writing
    another tenant's row is refused, a session that names no tenant sees
    and writes nothing, and prepared statements follow role changes.

    Then the ingestor, with fewer pool threads than clients, serves both
    tenants interleaved on the same pooled connections. Column defaults
    added to this test database record, for every row the ingestor
    inserts, the role, the recado.tenant_id setting and the backend that
    inserted it: each row must have been written as recado_tenant acting
    for its own tenant, also after the pooled connections were killed and
    remade (the session state is then lost and must be set again).
*/
#include "rcd_db.h"
#include "rcd_test.h"
#include "rcd_test_ingestor.h"

#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define ADMIN_KEY "test-admin-key"
/*  Pool threads of the ingestor, fewer than the client threads. */
#define HTTP_THREADS 2

typedef struct {
    char *url;               /* test database, prepared before the ingestor */
    rcd_test_ingestor_t ing; /* the ingestor and its port */
    char *key_a, *key_b;     /* two tenants' keys */
    long long tenant_a, tenant_b;
} fixture_t;

static fixture_t s_fx;

/*  One table holding tenant data: how to insert a valid row of tenant $1,
    and what recado_tenant may do there. */
typedef struct {
    const char *name;
    const char *insert;
    bool can_insert, can_update; /* granted to recado_tenant */
} s_table_t;

static const s_table_t s_tables[] = {
    {"instances",
     "INSERT INTO instances (tenant_id, name, provider, base_url,"
     "                       rate_per_second)"
     "VALUES ($1::bigint, gen_random_uuid()::text, 'evolution',"
     "        'http://127.0.0.1:1', 1)",
     true, true},
    {"contacts",
     "INSERT INTO contacts (tenant_id, phone)"
     "VALUES ($1::bigint, '+' || gen_random_uuid())",
     true, true},
    {"messages",
     "INSERT INTO messages (tenant_id, to_phone, body)"
     "VALUES ($1::bigint, '+5511900000001', 'seeded')",
     true, true},
    {"message_history",
     "INSERT INTO message_history (tenant_id, message_id, status)"
     "VALUES ($1::bigint, 0, 'pending')",
     true, false},
    {"dead_letters",
     "INSERT INTO dead_letters (tenant_id, message_id, reason, attempts)"
     "VALUES ($1::bigint, 0, 'seeded', 1)",
     true, true},
    {"templates",
     "INSERT INTO templates (tenant_id, key, variations)"
     "VALUES ($1::bigint, gen_random_uuid()::text, '{oi}')",
     true, true},
    {"billing_cycles",
     "INSERT INTO billing_cycles (tenant_id, external_billing_id, phone,"
     "                            amount_cents, due_date, offsets_days)"
     "VALUES ($1::bigint, gen_random_uuid()::text, '+5511900000001', 100,"
     "        current_date, '{0}')",
     true, true},
    {"webhook_events",
     "INSERT INTO webhook_events (tenant_id, instance_id, provider, kind,"
     "                            event_key, payload)"
     "VALUES ($1::bigint, 0, 'evolution', 'inbound',"
     "        gen_random_uuid()::text, '{}')",
     true, true},
    {"campaigns",
     "INSERT INTO campaigns (tenant_id, name, template, state)"
     "VALUES ($1::bigint, gen_random_uuid()::text, 'promo', 'draft')",
     true, true},
};
#define TABLES (sizeof s_tables / sizeof s_tables[0])

/*  Tables of one row per tenant (or per recipient) that the services keep
    for themselves: walled too, checked by their own test. */
static const char *const s_bookkeeping[] = {"api_rate_buckets",
                                            "recipient_pacing"};
#define BOOKKEEPING (sizeof s_bookkeeping / sizeof s_bookkeeping[0])

/*  --- helpers --- */

static json_t *
s_call (const char *method, const char *path, const char *key, const char *body,
        long *status)
{
    return rcd_test_api (s_fx.ing.port, method, path, key, body, status);
}

/*  Rows of tenant in table, seen as the superuser (no wall). */
static long long
s_rows_of (const char *table, long long tenant)
{
    char sql[160], t[24];
    snprintf (sql, sizeof sql,
              "SELECT count(*) FROM %s WHERE tenant_id = $1::bigint", table);
    snprintf (t, sizeof t, "%lld", tenant);
    const char *params[] = {t};
    return rcd_test_sql_int (s_fx.url, sql, 1, params);
}

/*  A session as role recado_tenant, acting for tenant (0: none named,
    the setting left unset). Caller destroys. */
static rcd_db_t *
s_tenant_session (long long tenant)
{
    rcd_db_t *db = rcd_db_new (s_fx.url);
    assert_non_null (db);
    assert_true (rcd_db_connected (db));
    assert_int_equal (rcd_db_exec (db, "SET ROLE recado_tenant", 0, NULL, NULL),
                      0);
    if (tenant) {
        char t[24];
        snprintf (t, sizeof t, "%lld", tenant);
        const char *params[] = {t};
        assert_int_equal (
            rcd_db_exec (db, "SELECT set_config('recado.tenant_id', $1, false)",
                         1, params, NULL),
            0);
    }
    return db;
}

/*  Runs sql on db, asserting success; answers the first cell. */
static long long
s_int (rcd_db_t *db, const char *sql, int nparams, const char *const *params)
{
    rcd_db_res_t *res = NULL;
    if (rcd_db_exec (db, sql, nparams, params, &res) != 0)
        fail_msg ("%s: %s", sql, rcd_db_error (db));
    assert_true (rcd_db_res_rows (res) == 1);
    long long v = rcd_db_res_int64 (res, 0, 0);
    rcd_db_res_destroy (&res);
    return v;
}

/*  Asserts that sql fails on db for the wall, not for want of a grant:
    the policy's own error when granted, "permission denied" otherwise. */
static void
s_refused (rcd_db_t *db, const char *sql, int nparams,
           const char *const *params, bool granted)
{
    if (rcd_db_exec (db, sql, nparams, params, NULL) == 0)
        fail_msg ("not refused: %s", sql);
    assert_string_equal (rcd_db_sqlstate (db), "42501");
    const char *why = granted ? "row-level security" : "permission denied";
    if (!strstr (rcd_db_error (db), why))
        fail_msg ("%s: expected \"%s\", got %s", sql, why, rcd_db_error (db));
}

/*  Rows changed by sql on db, asserting success. */
static long long
s_affected (rcd_db_t *db, const char *sql, int nparams,
            const char *const *params)
{
    rcd_db_res_t *res = NULL;
    if (rcd_db_exec (db, sql, nparams, params, &res) != 0)
        fail_msg ("%s: %s", sql, rcd_db_error (db));
    long long n = rcd_db_res_affected (res);
    rcd_db_res_destroy (&res);
    return n;
}

static void
s_sql (const char *sql)
{
    char *v = rcd_test_sql (s_fx.url, sql, 0, NULL);
    free (v);
}

static int
s_setup (void **state)
{
    (void)state;
    curl_global_init (CURL_GLOBAL_ALL); /* before any test thread */
    memset (&s_fx, 0, sizeof s_fx);
    s_fx.url = rcd_test_db_create ("row_security");
    /* Who inserted each row the API writes: the current role (changed by
       SET ROLE), the tenant setting and the backend. Test database only. */
    s_sql ("ALTER TABLE messages ADD COLUMN t_role text DEFAULT current_user,"
           " ADD COLUMN t_tenant text"
           "     DEFAULT current_setting('recado.tenant_id', true),"
           " ADD COLUMN t_pid integer DEFAULT pg_backend_pid()");
    s_sql ("ALTER TABLE contacts ADD COLUMN t_role text DEFAULT current_user,"
           " ADD COLUMN t_tenant text"
           "     DEFAULT current_setting('recado.tenant_id', true),"
           " ADD COLUMN t_pid integer DEFAULT pg_backend_pid()");

    rcd_test_ingestor_start_on (&s_fx.ing, s_fx.url, ADMIN_KEY, HTTP_THREADS, 0,
                                0);
    s_fx.key_a = rcd_test_create_tenant (s_fx.ing.port, ADMIN_KEY, "tenant a",
                                         &s_fx.tenant_a);
    s_fx.key_b = rcd_test_create_tenant (s_fx.ing.port, ADMIN_KEY, "tenant b",
                                         &s_fx.tenant_b);

    /* two rows of a and four of b in every table, as the superuser */
    for (size_t i = 0; i < TABLES; i++)
        for (int n = 0; n < 6; n++) {
            char t[24];
            snprintf (t, sizeof t, "%lld",
                      n < 2 ? s_fx.tenant_a : s_fx.tenant_b);
            const char *params[] = {t};
            char *v = rcd_test_sql (s_fx.url, s_tables[i].insert, 1, params);
            free (v);
        }
    return 0;
}

static int
s_teardown (void **state)
{
    (void)state;
    rcd_test_ingestor_stop (&s_fx.ing);
    free (s_fx.key_a);
    free (s_fx.key_b);
    rcd_test_db_drop (&s_fx.url);
    curl_global_cleanup ();
    return 0;
}

/*  --- the policies --- */

static void
test_every_table_with_tenant_data_is_walled (void **state)
{
    (void)state;
    /* Every table of the schema with a tenant_id column, and only those,
       is in s_tables or s_bookkeeping: a new one without a wall fails
       here. */
    char *names =
        rcd_test_sql (s_fx.url,
                      "SELECT string_agg(c.relname, ',' ORDER BY c.relname)"
                      "  FROM pg_class c JOIN pg_attribute a"
                      "    ON a.attrelid = c.oid AND a.attname = 'tenant_id'"
                      "       AND NOT a.attisdropped"
                      " WHERE c.relnamespace = 'public'::regnamespace"
                      "   AND c.relkind IN ('r', 'p')",
                      0, NULL);
    assert_non_null (names);
    assert_string_equal (names, "api_rate_buckets,billing_cycles,campaigns,"
                                "contacts,dead_letters,instances,"
                                "message_history,messages,recipient_pacing,"
                                "templates,webhook_events");
    free (names);
    for (size_t i = 0; i < TABLES + BOOKKEEPING; i++) {
        const char *name =
            i < TABLES ? s_tables[i].name : s_bookkeeping[i - TABLES];
        const char *params[] = {name};
        /* enabled, not forced: the owner's services work across tenants
           without the policy */
        char *flags = rcd_test_sql (
            s_fx.url,
            "SELECT relrowsecurity::text || ',' || relforcerowsecurity::text"
            "  FROM pg_class WHERE oid = $1::regclass",
            1, params);
        assert_non_null (flags);
        if (strcmp (flags, "true,false") != 0)
            fail_msg ("%s: rowsecurity,force = %s", name, flags);
        free (flags);
        assert_int_equal (rcd_test_sql_int (s_fx.url,
                                            "SELECT count(*) FROM pg_policies"
                                            " WHERE tablename = $1"
                                            "   AND policyname = 'tenant_wall'"
                                            "   AND roles = '{recado_tenant}'"
                                            "   AND cmd = 'ALL'",
                                            1, params),
                          1);
    }
    /* tenants itself is not walled: auth reads it before any tenant is
       known */
    assert_int_equal (rcd_test_sql_int (s_fx.url,
                                        "SELECT relrowsecurity::int FROM"
                                        " pg_class WHERE oid = 'tenants'"
                                        "::regclass",
                                        0, NULL),
                      0);
}

/*  The rate-limit buckets (one row per tenant) are walled like the rest;
    the pacing table is the scheduler's alone: no right at all. */
static void
test_bookkeeping_tables_are_walled (void **state)
{
    (void)state;
    char a[24], b[24];
    snprintf (a, sizeof a, "%lld", s_fx.tenant_a);
    snprintf (b, sizeof b, "%lld", s_fx.tenant_b);
    const char *pa[] = {a}, *pb[] = {b};
    static const char *seed =
        "INSERT INTO api_rate_buckets (tenant_id, tokens, refilled_at,"
        " allowed) VALUES ($1::bigint, 1, now(), true)"
        " ON CONFLICT (tenant_id) DO NOTHING";
    free (rcd_test_sql (s_fx.url, seed, 1, pa));
    free (rcd_test_sql (s_fx.url, seed, 1, pb));
    rcd_db_t *db = s_tenant_session (s_fx.tenant_a);
    assert_int_equal (
        s_int (db, "SELECT count(*) FROM api_rate_buckets", 0, NULL), 1);
    assert_int_equal (s_int (db,
                             "SELECT count(*) FROM api_rate_buckets"
                             " WHERE tenant_id = $1::bigint",
                             1, pa),
                      1);
    assert_int_equal (s_affected (db,
                                  "UPDATE api_rate_buckets SET tokens = 0"
                                  " WHERE tenant_id = $1::bigint",
                                  1, pb),
                      0);
    free (rcd_test_sql (
        s_fx.url, "DELETE FROM api_rate_buckets WHERE tenant_id = $1::bigint",
        1, pb));
    s_refused (db,
               "INSERT INTO api_rate_buckets (tenant_id, tokens, refilled_at,"
               " allowed) VALUES ($1::bigint, 100, now(), true)",
               1, pb, true);
    s_refused (db, "SELECT count(*) FROM recipient_pacing", 0, NULL, false);
    s_refused (db,
               "INSERT INTO recipient_pacing (tenant_id, phone, next_at)"
               " VALUES ($1::bigint, '+5511900000001', now())",
               1, pa, false);
    rcd_db_destroy (&db);
}

static void
test_a_tenant_session_sees_only_its_own_rows_without_filtering (void **state)
{
    (void)state;
    long long tenants[] = {s_fx.tenant_a, s_fx.tenant_b};
    for (int k = 0; k < 2; k++) {
        rcd_db_t *db = s_tenant_session (tenants[k]);
        char t[24];
        snprintf (t, sizeof t, "%lld", tenants[k]);
        const char *params[] = {t};
        for (size_t i = 0; i < TABLES; i++) {
            long long own = s_rows_of (s_tables[i].name, tenants[k]);
            assert_true (own >= 2); /* not vacuous */
            char sql[160];
            snprintf (sql, sizeof sql, "SELECT count(*) FROM %s",
                      s_tables[i].name);
            long long seen = s_int (db, sql, 0, NULL);
            if (seen != own)
                fail_msg ("%s as tenant %lld: %lld rows seen, %lld its own",
                          s_tables[i].name, tenants[k], seen, own);
            snprintf (sql, sizeof sql,
                      "SELECT count(*) FROM %s WHERE tenant_id <> $1::bigint",
                      s_tables[i].name);
            assert_int_equal (s_int (db, sql, 1, params), 0);
        }
        /* the tenants table is readable whole (auth looks keys up) */
        assert_int_equal (s_int (db, "SELECT count(*) FROM tenants", 0, NULL),
                          rcd_test_sql_int (s_fx.url,
                                            "SELECT count(*) FROM tenants", 0,
                                            NULL));
        rcd_db_destroy (&db);
    }
}

static void
test_writing_another_tenants_rows_is_refused (void **state)
{
    (void)state;
    rcd_db_t *db = s_tenant_session (s_fx.tenant_a);
    char a[24], b[24];
    snprintf (a, sizeof a, "%lld", s_fx.tenant_a);
    snprintf (b, sizeof b, "%lld", s_fx.tenant_b);
    const char *pa[] = {a}, *pb[] = {b};
    for (size_t i = 0; i < TABLES; i++) {
        const s_table_t *t = &s_tables[i];
        long long rows_b = s_rows_of (t->name, s_fx.tenant_b);
        long long rows_a = s_rows_of (t->name, s_fx.tenant_a);
        /* a row of b: refused; a row of a: stored where inserting is
           granted (so the refusal is the wall's) */
        s_refused (db, t->insert, 1, pb, t->can_insert);
        if (t->can_insert) {
            assert_int_equal (s_affected (db, t->insert, 1, pa), 1);
            rows_a++;
        }
        char sql[200];
        if (t->can_update) {
            /* b's rows are not there to update */
            snprintf (sql, sizeof sql,
                      "UPDATE %s SET tenant_id = tenant_id"
                      " WHERE tenant_id = $1::bigint",
                      t->name);
            assert_int_equal (s_affected (db, sql, 1, pb), 0);
            /* nor can a's rows be handed over to b */
            snprintf (sql, sizeof sql,
                      "UPDATE %s SET tenant_id = $1::bigint"
                      " WHERE tenant_id = $2::bigint",
                      t->name);
            const char *pba[] = {b, a};
            s_refused (db, sql, 2, pba, true);
        }
        /* nothing deletes, not even one's own rows */
        snprintf (sql, sizeof sql, "DELETE FROM %s", t->name);
        s_refused (db, sql, 0, NULL, false);
        assert_int_equal (s_rows_of (t->name, s_fx.tenant_b), rows_b);
        assert_int_equal (s_rows_of (t->name, s_fx.tenant_a), rows_a);
    }
    rcd_db_destroy (&db);
}

static void
test_a_session_naming_no_tenant_sees_and_writes_nothing (void **state)
{
    (void)state;
    for (int empty = 0; empty < 2; empty++) {
        rcd_db_t *db = s_tenant_session (0);
        if (empty) /* set, but to nothing (as the ingestor's reset) */
            assert_int_equal (
                rcd_db_exec (db,
                             "SELECT set_config('recado.tenant_id', '', false)",
                             0, NULL, NULL),
                0);
        char a[24];
        snprintf (a, sizeof a, "%lld", s_fx.tenant_a);
        const char *pa[] = {a};
        for (size_t i = 0; i < TABLES; i++) {
            char sql[160];
            snprintf (sql, sizeof sql, "SELECT count(*) FROM %s",
                      s_tables[i].name);
            assert_int_equal (s_int (db, sql, 0, NULL), 0);
            s_refused (db, s_tables[i].insert, 1, pa, s_tables[i].can_insert);
        }
        rcd_db_destroy (&db);
    }
}

static void
test_prepared_statements_follow_role_and_tenant_changes (void **state)
{
    (void)state;
    /* as the ingestor's pool does: statements prepared once, run under
       changing roles and tenants; more than five runs, so PostgreSQL may
       switch to a generic plan */
    rcd_db_t *db = rcd_db_new (s_fx.url);
    assert_non_null (db);
    assert_int_equal (rcd_db_prepare (db, "count",
                                      "SELECT count(*) FROM"
                                      " messages"),
                      0);
    assert_int_equal (
        rcd_db_prepare (db, "session",
                        "SELECT set_config('role', $1::text, false),"
                        "       set_config('recado.tenant_id', $2::text,"
                        "                  false)"),
        0);
    char a[24], b[24];
    snprintf (a, sizeof a, "%lld", s_fx.tenant_a);
    snprintf (b, sizeof b, "%lld", s_fx.tenant_b);
    long long all =
        rcd_test_sql_int (s_fx.url, "SELECT count(*) FROM messages", 0, NULL);
    long long rows_a = s_rows_of ("messages", s_fx.tenant_a);
    long long rows_b = s_rows_of ("messages", s_fx.tenant_b);
    assert_true (rows_a > 0 && rows_b > 0 && rows_a != rows_b);
    struct {
        const char *role, *tenant;
        long long expected;
    } steps[] = {
        {"none", "", all},
        {"recado_tenant", a, rows_a},
        {"recado_tenant", b, rows_b},
        {"none", "", all},
        {"recado_tenant", "", 0},
        {"recado_tenant", a, rows_a},
    };
    for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++) {
        const char *params[] = {steps[s].role, steps[s].tenant};
        assert_int_equal (rcd_db_run (db, "session", 2, params, NULL), 0);
        for (int run = 0; run < 7; run++) {
            rcd_db_res_t *res = NULL;
            assert_int_equal (rcd_db_run (db, "count", 0, NULL, &res), 0);
            long long n = rcd_db_res_int64 (res, 0, 0);
            rcd_db_res_destroy (&res);
            if (n != steps[s].expected)
                fail_msg ("step %zu (%s, '%s') run %d: %lld rows, expected "
                          "%lld",
                          s, steps[s].role, steps[s].tenant, run, n,
                          steps[s].expected);
        }
    }
    rcd_db_destroy (&db);
}

/*  --- through the ingestor --- */

#define CLIENTS 4  /* two per tenant, against HTTP_THREADS pool threads */
#define ROUNDS  20 /* requests of each kind per client */

typedef struct {
    int index;          /* client number */
    const char *key;    /* its tenant's key */
    atomic_int *failed; /* shared failure count */
    char first_failure[256];
} s_client_t;

/*  One client: puts contacts and posts messages to them, reading each
    back; counts what went wrong (cmocka asserts belong to the main
    thread). */
static void *
s_client (void *arg)
{
    s_client_t *c = arg;
    for (int i = 0; i < ROUNDS; i++) {
        char phone[32], path[96], body[160];
        snprintf (phone, sizeof phone, "+55119%02d%06d", c->index, i);
        snprintf (path, sizeof path, "/v1/contacts/%%2B%s", phone + 1);
        long status = 0;
        json_t *a =
            s_call ("PUT", path, c->key, "{\"name\":\"via api\"}", &status);
        bool ok = status == 200;
        json_decref (a);
        a = s_call ("GET", path, c->key, NULL, &status);
        ok = ok && status == 200 &&
             strcmp (json_string_value (json_object_get (a, "phone"))
                         ? json_string_value (json_object_get (a, "phone"))
                         : "",
                     phone) == 0;
        json_decref (a);
        snprintf (body, sizeof body, "{\"to\":\"%s\",\"text\":\"via api\"}",
                  phone);
        a = s_call ("POST", "/v1/messages", c->key, body, &status);
        long long id = json_integer_value (json_object_get (a, "id"));
        ok = ok && status == 202 && id > 0;
        json_decref (a);
        snprintf (path, sizeof path, "/v1/messages/%lld", id);
        a = s_call ("GET", path, c->key, NULL, &status);
        ok = ok && status == 200 &&
             json_integer_value (json_object_get (a, "id")) == id;
        json_decref (a);
        if (!ok && atomic_fetch_add (c->failed, 1) == 0)
            snprintf (c->first_failure, sizeof c->first_failure,
                      "client %d round %d: last status %ld", c->index, i,
                      status);
    }
    return NULL;
}

/*  Asserts that the tenant's listing holds exactly its own messages. */
static void
s_assert_listing_is_own (const char *key, long long tenant)
{
    long status = 0;
    json_t *a = s_call ("GET", "/v1/messages?limit=500", key, NULL, &status);
    assert_int_equal (status, 200);
    json_t *items = json_object_get (a, "items");
    assert_int_equal (json_array_size (items), s_rows_of ("messages", tenant));
    for (size_t i = 0; i < json_array_size (items); i++) {
        char id[24], t[24];
        snprintf (id, sizeof id, "%lld",
                  (long long)json_integer_value (
                      json_object_get (json_array_get (items, i), "id")));
        snprintf (t, sizeof t, "%lld", tenant);
        const char *params[] = {id, t};
        assert_int_equal (rcd_test_sql_int (s_fx.url,
                                            "SELECT count(*) FROM messages"
                                            " WHERE id = $1::bigint"
                                            "   AND tenant_id = $2::bigint",
                                            2, params),
                          1);
    }
    json_decref (a);
}

/*  Rows of table written through the API as something else than
    recado_tenant acting for the row's own tenant. */
static long long
s_rows_written_outside_the_wall (const char *table, const char *marker_col)
{
    char sql[256];
    snprintf (sql, sizeof sql,
              "SELECT count(*) FROM %s WHERE %s LIKE 'via api%%'"
              "   AND (t_role IS DISTINCT FROM 'recado_tenant'"
              "        OR t_tenant IS DISTINCT FROM tenant_id::text)",
              table, marker_col);
    return rcd_test_sql_int (s_fx.url, sql, 0, NULL);
}

static void
test_tenants_interleaved_on_shared_connections_stay_apart (void **state)
{
    (void)state;
    atomic_int failed = 0;
    s_client_t clients[CLIENTS];
    pthread_t threads[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        clients[i] = (s_client_t){.index = i,
                                  .key = i % 2 ? s_fx.key_b : s_fx.key_a,
                                  .failed = &failed};
        assert_int_equal (
            pthread_create (&threads[i], NULL, s_client, &clients[i]), 0);
    }
    for (int i = 0; i < CLIENTS; i++)
        pthread_join (threads[i], NULL);
    for (int i = 0; i < CLIENTS; i++)
        if (clients[i].first_failure[0])
            fail_msg ("%d failures; %s", atomic_load (&failed),
                      clients[i].first_failure);
    assert_int_equal (atomic_load (&failed), 0);

    /* every row the API inserted was inserted behind the wall, for its
       own tenant */
    assert_int_equal (rcd_test_sql_int (s_fx.url,
                                        "SELECT count(*) FROM messages"
                                        " WHERE body = 'via api'",
                                        0, NULL),
                      CLIENTS * ROUNDS);
    assert_int_equal (rcd_test_sql_int (s_fx.url,
                                        "SELECT count(*) FROM contacts"
                                        " WHERE name = 'via api'",
                                        0, NULL),
                      CLIENTS * ROUNDS);
    assert_int_equal (s_rows_written_outside_the_wall ("messages", "body"), 0);
    assert_int_equal (s_rows_written_outside_the_wall ("contacts", "name"), 0);
    /* ... by at most one connection per pool thread, at least one of
       which served both tenants */
    assert_true (rcd_test_sql_int (s_fx.url,
                                   "SELECT count(DISTINCT t_pid) FROM messages"
                                   " WHERE body = 'via api'",
                                   0, NULL) <= HTTP_THREADS);
    assert_true (rcd_test_sql_int (s_fx.url,
                                   "SELECT count(*) FROM ("
                                   "  SELECT t_pid FROM messages"
                                   "   WHERE body = 'via api' GROUP BY t_pid"
                                   "  HAVING count(DISTINCT tenant_id) = 2) x",
                                   0, NULL) >= 1);

    s_assert_listing_is_own (s_fx.key_a, s_fx.tenant_a);
    s_assert_listing_is_own (s_fx.key_b, s_fx.tenant_b);
    /* a's contact is not b's */
    long status = 0;
    json_t *a = s_call ("GET", "/v1/contacts/%2B5511900000000", s_fx.key_b,
                        NULL, &status);
    assert_int_equal (status, 404);
    json_decref (a);
    a = s_call ("GET", "/v1/contacts/%2B5511900000000", s_fx.key_a, NULL,
                &status);
    assert_int_equal (status, 200);
    json_decref (a);

    /* the tenant routes that read and change the tenants row, then the
       admin route, on connections last used by tenants */
    a = s_call ("PATCH", "/v1/tenant", s_fx.key_a,
                "{\"generic_template\":\"a-generic\"}", &status);
    assert_int_equal (status, 200);
    json_decref (a);
    a = s_call ("GET", "/v1/tenant", s_fx.key_b, NULL, &status);
    assert_int_equal (status, 200);
    assert_int_equal (json_integer_value (json_object_get (a, "id")),
                      s_fx.tenant_b);
    json_decref (a);
    long long c = 0;
    char *key_c =
        rcd_test_create_tenant (s_fx.ing.port, ADMIN_KEY, "tenant c", &c);
    assert_true (c > s_fx.tenant_b);
    /* a new tenant sees none of the others' messages */
    a = s_call ("GET", "/v1/messages?limit=500", key_c, NULL, &status);
    assert_int_equal (status, 200);
    assert_int_equal (json_array_size (json_object_get (a, "items")), 0);
    json_decref (a);
    free (key_c);
}

/*  True once no other session is connected to the test database. */
static bool
s_sessions_gone (void *arg)
{
    (void)arg;
    return rcd_test_sql_int (s_fx.url,
                             "SELECT count(*) FROM pg_stat_activity"
                             " WHERE datname = current_database()"
                             "   AND pid <> pg_backend_pid()"
                             "   AND backend_type = 'client backend'",
                             0, NULL) == 0;
}

/*  Posts one message for tenant *arg (0: a, 1: b) and says whether it
    was stored; anything but 202 or 503 fails the test. */
static int s_unavailable; /* 503s answered */

static bool
s_post_stored (void *arg)
{
    const char *key = *(int *)arg ? s_fx.key_b : s_fx.key_a;
    long status = 0;
    json_t *a = s_call ("POST", "/v1/messages", key,
                        "{\"to\":\"+5511900000000\",\"text\":"
                        "\"via api, after reconnect\"}",
                        &status);
    json_decref (a);
    if (status == 503)
        s_unavailable++;
    else if (status != 202)
        fail_msg ("unexpected status %ld", status);
    return status == 202;
}

static void
test_remade_connections_get_the_wall_back (void **state)
{
    (void)state;
    /* One request at a time always takes the same (most recently idle)
       pooled connection: after this one, its session acts for a. */
    int a = 0, b = 1;
    assert_true (s_post_stored (&a));
    /* Kill every pooled session. The pool's record of the connection's
       state (a, on this generation) is now stale. */
    long long killed = rcd_test_sql_int (
        s_fx.url,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        "   AND backend_type = 'client backend'",
        0, NULL);
    assert_true (killed >= 1 && killed <= HTTP_THREADS);
    assert_true (rcd_test_wait_until (s_sessions_gone, NULL, 10000));

    /* The next request of a finds nothing to change, so it issues no
       statement of its own, and its handler meets the dead session:
       503. The connection is remade; the requests after that must set
       role and tenant again (the generation changed), not run as the
       connecting role in a fresh session. */
    s_unavailable = 0;
    assert_false (s_post_stored (&a));
    assert_int_equal (s_unavailable, 1);
    for (int i = 0; i < 3; i++) {
        assert_true (rcd_test_wait_until (s_post_stored, &a, 10000));
        assert_true (rcd_test_wait_until (s_post_stored, &b, 10000));
    }
    assert_int_equal (s_rows_written_outside_the_wall ("messages", "body"), 0);
    assert_true (rcd_test_sql_int (s_fx.url,
                                   "SELECT count(*) FROM messages"
                                   " WHERE body LIKE '%after reconnect'",
                                   0, NULL) >= 7);
    s_assert_listing_is_own (s_fx.key_a, s_fx.tenant_a);
    s_assert_listing_is_own (s_fx.key_b, s_fx.tenant_b);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_every_table_with_tenant_data_is_walled),
        cmocka_unit_test (
            test_a_tenant_session_sees_only_its_own_rows_without_filtering),
        cmocka_unit_test (test_writing_another_tenants_rows_is_refused),
        cmocka_unit_test (test_bookkeeping_tables_are_walled),
        cmocka_unit_test (
            test_a_session_naming_no_tenant_sees_and_writes_nothing),
        cmocka_unit_test (
            test_prepared_statements_follow_role_and_tenant_changes),
        cmocka_unit_test (
            test_tenants_interleaved_on_shared_connections_stay_apart),
        cmocka_unit_test (test_remade_connections_get_the_wall_back),
    };
    return cmocka_run_group_tests (tests, s_setup, s_teardown);
}
