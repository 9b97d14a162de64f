/*  test_cli - the `recado` command and the --help of every program, run
    as real processes against a real PostgreSQL and a real ingestor. */
#include <fcntl.h>
#include <jansson.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "rcd_test.h"

/*  Runs a program to completion; answers its exit code and its stdout
    (caller frees *out). */
static int
s_run (const char *const *argv, const char *const *env, char **out)
{
    char path[64];
    snprintf (path, sizeof path, "cli-%d.out", (int)getpid ());
    remove (path);
    pid_t pid = rcd_test_spawn (argv, env, path);
    assert_true (pid > 0);
    int status = 0;
    assert_int_equal (waitpid (pid, &status, 0), pid);
    FILE *f = fopen (path, "r");
    char *text = calloc (1, 65536);
    if (f) {
        size_t n = fread (text, 1, 65535, f);
        text[n] = 0;
        fclose (f);
    }
    remove (path);
    if (out)
        *out = text;
    else
        free (text);
    return WIFEXITED (status) ? WEXITSTATUS (status) : 128;
}

static void
test_every_program_answers_help (void **state)
{
    (void)state;
    const char *programs[] = {"recado",           "recado-ingestor",
                              "recado-scheduler", "recado-sender",
                              "recado-recovery",  "recado-monitor",
                              "recado-gwsim"};
    for (size_t i = 0; i < sizeof programs / sizeof programs[0]; i++) {
        char *bin = rcd_test_bin (programs[i]);
        const char *argv[] = {bin, "--help", NULL};
        char *out = NULL;
        int code = s_run (argv, NULL, &out);
        if (code != 0 || !strstr (out, "usage"))
            fail_msg ("%s --help: exit %d, output: %.200s", programs[i], code,
                      out);
        free (out);
        free (bin);
    }
}

static void
test_version_and_unknown_command (void **state)
{
    (void)state;
    char *bin = rcd_test_bin ("recado");
    const char *v[] = {bin, "version", NULL};
    char *out = NULL;
    assert_int_equal (s_run (v, NULL, &out), 0);
    assert_non_null (strstr (out, "recado "));
    free (out);
    const char *u[] = {bin, "frobnicate", NULL};
    assert_int_equal (s_run (u, NULL, NULL), 64);
    free (bin);
}

static void
test_migrate_applies_once (void **state)
{
    (void)state;
    /* an empty database: create it, drop the schema the helper applied */
    char *url = rcd_test_db_create ("cli_migrate");
    free (rcd_test_sql (url, "DROP SCHEMA public CASCADE", 0, NULL));
    free (rcd_test_sql (url, "CREATE SCHEMA public", 0, NULL));
    char *bin = rcd_test_bin ("recado");
    char env_db[600];
    snprintf (env_db, sizeof env_db, "DATABASE_URL=%s", url);
    const char *env[] = {env_db, NULL};
    const char *argv[] = {bin, "migrate", NULL};
    char *out = NULL;
    assert_int_equal (s_run (argv, env, &out), 0);
    json_t *first = json_loads (strrchr (out, '{'), 0, NULL);
    assert_non_null (first);
    assert_true (json_integer_value (json_object_get (first, "applied")) >= 1);
    json_decref (first);
    free (out);
    assert_int_equal (s_run (argv, env, &out), 0);
    json_t *second = json_loads (strrchr (out, '{'), 0, NULL);
    assert_int_equal (json_integer_value (json_object_get (second, "applied")),
                      0);
    json_decref (second);
    free (out);
    assert_int_equal (rcd_test_sql_int (url,
                                        "SELECT count(*) FROM "
                                        "schema_migrations",
                                        0, NULL),
                      rcd_test_sql_int (url,
                                        "SELECT max(version) FROM "
                                        "schema_migrations",
                                        0, NULL));
    free (bin);
    rcd_test_db_drop (&url);
}

static void
test_send_and_status_through_the_api (void **state)
{
    (void)state;
    char *url = rcd_test_db_create ("cli_send");
    int port = rcd_test_free_port ();
    char env_db[600], env_port[64], env_admin[64], env_nudge[64],
        env_events[64];
    snprintf (env_db, sizeof env_db, "DATABASE_URL=%s", url);
    snprintf (env_port, sizeof env_port, "RECADO_HTTP_PORT=%d", port);
    snprintf (env_admin, sizeof env_admin, "RECADO_ADMIN_KEY=cli-admin");
    snprintf (env_nudge, sizeof env_nudge,
              "RECADO_NUDGE_ENDPOINT=tcp://127.0.0.1:%d",
              rcd_test_free_port ());
    snprintf (env_events, sizeof env_events,
              "RECADO_EVENTS_ENDPOINT=tcp://127.0.0.1:%d",
              rcd_test_free_port ());
    const char *env[] = {env_db,    env_port,   env_admin,
                         env_nudge, env_events, NULL};
    char *ingestor = rcd_test_bin ("recado-ingestor");
    const char *iargv[] = {ingestor, NULL};
    pid_t pid = rcd_test_spawn (iargv, env, "/dev/null");
    char api[64], ready[96];
    snprintf (api, sizeof api, "http://127.0.0.1:%d", port);
    snprintf (ready, sizeof ready, "%s/readyz", api);
    assert_true (rcd_test_wait_http_ok (ready, 20000));

    char tenants[96];
    snprintf (tenants, sizeof tenants, "%s/v1/tenants", api);
    rcd_test_http_t res = rcd_test_http ("POST", tenants, "cli-admin",
                                         "{\"name\":\"cli\"}", NULL);
    assert_int_equal (res.status, 201);
    json_t *t = json_loads (res.body, 0, NULL);
    rcd_test_http_free (&res);
    char env_key[160], env_url[96];
    snprintf (env_key, sizeof env_key, "RECADO_API_KEY=%s",
              json_string_value (json_object_get (t, "api_key")));
    const char *key = env_key + strlen ("RECADO_API_KEY=");
    snprintf (env_url, sizeof env_url, "RECADO_API_URL=%s", api);
    json_decref (t);
    const char *cenv[] = {env_key, env_url, NULL};

    char *bin = rcd_test_bin ("recado");
    const char *send[] = {bin,      "send",
                          "--to",   "(11) 91234-0000",
                          "--text", "from the command line",
                          NULL};
    char *out = NULL;
    assert_int_equal (s_run (send, cenv, &out), 0);
    json_t *msg = json_loads (out, 0, NULL);
    free (out);
    assert_non_null (msg);
    assert_string_equal (json_string_value (json_object_get (msg, "to")),
                         "+5511912340000");
    char id[32];
    snprintf (id, sizeof id, "%lld",
              (long long)json_integer_value (json_object_get (msg, "id")));
    json_decref (msg);

    const char *status[] = {bin, "status", id, NULL};
    assert_int_equal (s_run (status, cenv, &out), 0);
    msg = json_loads (out, 0, NULL);
    free (out);
    assert_string_equal (json_string_value (json_object_get (msg, "status")),
                         "pending");
    assert_string_equal (json_string_value (json_object_get (msg, "text")),
                         "from the command line");
    json_decref (msg);

    /* a bad phone is the API's error, exit 1 */
    const char *bad[] = {bin,      "send", "--to", "not a phone",
                         "--text", "x",    NULL};
    assert_int_equal (s_run (bad, cenv, &out), 1);
    assert_non_null (strstr (out, "invalid_phone"));
    free (out);
    /* no key: usage error */
    const char *nokey_env[] = {env_url, NULL};
    assert_int_equal (s_run (status, nokey_env, NULL), 64);

    /* a campaign's progress, then paused and resumed from the command
       line; the API's answer is printed as it came */
    char path[128];
    snprintf (path, sizeof path, "%s/v1/templates/promo", api);
    res = rcd_test_http ("PUT", path, key, "{\"variations\":[\"Hi {{name}}\"]}",
                         NULL);
    assert_int_equal (res.status, 200);
    rcd_test_http_free (&res);
    snprintf (path, sizeof path, "%s/v1/campaigns", api);
    res = rcd_test_http ("POST", path, key,
                         "{\"name\":\"cli\",\"template\":\"promo\","
                         "\"audience\":[{\"phone\":\"+5511912340001\","
                         "\"vars\":{\"name\":\"Ana\"}},"
                         "{\"phone\":\"+5511912340002\","
                         "\"vars\":{\"name\":\"Bia\"}}]}",
                         NULL);
    assert_int_equal (res.status, 201);
    json_t *created = json_loads (res.body, 0, NULL);
    rcd_test_http_free (&res);
    snprintf (id, sizeof id, "%lld",
              (long long)json_integer_value (json_object_get (created, "id")));
    json_decref (created);
    static const char *const steps[][2] = {
        {NULL, "running"}, {"pause", "paused"}, {"resume", "running"}};
    for (size_t k = 0; k < sizeof steps / sizeof *steps; k++) {
        const char *campaign[] = {bin, "campaign", id, steps[k][0], NULL};
        assert_int_equal (s_run (campaign, cenv, &out), 0);
        json_t *got = json_loads (out, 0, NULL);
        free (out);
        assert_non_null (got);
        assert_string_equal (json_string_value (json_object_get (got, "state")),
                             steps[k][1]);
        assert_int_equal (json_integer_value (
                              json_object_get (json_object_get (got, "counts"),
                                               k == 1 ? "paused" : "pending")),
                          2);
        json_decref (got);
    }
    /* resuming a running campaign is the API's 409, exit 1 */
    const char *again[] = {bin, "campaign", id, "resume", NULL};
    assert_int_equal (s_run (again, cenv, &out), 1);
    assert_non_null (strstr (out, "conflict"));
    free (out);
    /* an action the command does not know: usage error */
    const char *unknown[] = {bin, "campaign", id, "restart", NULL};
    assert_int_equal (s_run (unknown, cenv, NULL), 64);

    assert_int_equal (rcd_test_stop (pid, SIGTERM, 10000), 0);
    free (ingestor);
    free (bin);
    rcd_test_db_drop (&url);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_every_program_answers_help),
        cmocka_unit_test (test_version_and_unknown_command),
        cmocka_unit_test (test_migrate_applies_once),
        cmocka_unit_test (test_send_and_status_through_the_api),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
