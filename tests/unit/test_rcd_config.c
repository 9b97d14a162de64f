/*  test_rcd_config.c - settings tables: defaults, environment, validation
    and what reaches the log. */
#include "rcd_config.h"
#include "rcd_log.h"

#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

/*  A service's config struct, as a service would declare it. */
typedef struct {
    int64_t port;
    bool verbose;
    char *name;
    char *api_key;
    char *database_url;
} t_config_t;

static const rcd_config_spec_t s_specs[] = {
    RCD_CONFIG_INT ("t_port", t_config_t, port, "8080", 1, 65535, "a port"),
    RCD_CONFIG_BOOL ("t_verbose", t_config_t, verbose, "true", "a flag"),
    RCD_CONFIG_STR ("t_name", t_config_t, name, "scheduler", "a name"),
    RCD_CONFIG_SECRET ("t_api_key", t_config_t, api_key, "default-key-123",
                       "a key"),
    RCD_CONFIG_DATABASE_URL (t_config_t, database_url),
    RCD_CONFIG_END};

static const char *s_env_names[] = {"RECADO_T_PORT",    "RECADO_T_VERBOSE",
                                    "RECADO_T_NAME",    "RECADO_T_API_KEY",
                                    "DATABASE_URL",     "RECADO_DATABASE_URL",
                                    "RECADO_T_REQUIRED"};

/*  Every test starts from a clean environment. */
static int
s_clean_env (void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof s_env_names / sizeof s_env_names[0]; i++)
        unsetenv (s_env_names[i]);
    rcd_log_set_level (RCD_LOG_INFO);
    return 0;
}

/*  Captures what is written to fd (1 or 2) between start and end. */
typedef struct {
    int saved;
    FILE *file;
} t_capture_t;

static void
s_capture_start (t_capture_t *c, int fd)
{
    fflush (stdout);
    fflush (stderr);
    c->file = tmpfile ();
    assert_non_null (c->file);
    c->saved = dup (fd);
    assert_true (c->saved >= 0);
    assert_true (dup2 (fileno (c->file), fd) >= 0);
}

/*  Restores fd and returns what was written. Caller frees. */
static char *
s_capture_end (t_capture_t *c, int fd)
{
    fflush (stdout);
    fflush (stderr);
    assert_true (dup2 (c->saved, fd) >= 0);
    close (c->saved);
    long size = ftell (c->file);
    assert_true (size >= 0);
    char *text = calloc (1, (size_t)size + 1);
    assert_non_null (text);
    rewind (c->file);
    assert_int_equal (fread (text, 1, (size_t)size, c->file), size);
    fclose (c->file);
    return text;
}

static int
s_count_lines (const char *text)
{
    int n = 0;
    for (const char *p = text; *p; p++)
        n += *p == '\n';
    return n;
}

/*  Loads s_specs, capturing the log; returns the code and the log. */
static int
s_load (t_config_t *cfg, char **log_p)
{
    memset (cfg, 0, sizeof *cfg);
    t_capture_t c;
    s_capture_start (&c, 2);
    int rc = rcd_config_load (s_specs, cfg);
    char *log = s_capture_end (&c, 2);
    if (log_p)
        *log_p = log;
    else
        free (log);
    return rc;
}

static void
test_defaults_fill_every_type (void **state)
{
    (void)state;
    t_config_t cfg;
    assert_int_equal (s_load (&cfg, NULL), 0);
    assert_int_equal (cfg.port, 8080);
    assert_true (cfg.verbose);
    assert_string_equal (cfg.name, "scheduler");
    assert_string_equal (cfg.api_key, "default-key-123");
    assert_string_equal (cfg.database_url, "postgresql:///recado");
    rcd_config_free (s_specs, &cfg);
    assert_null (cfg.name);
    assert_null (cfg.api_key);
    assert_null (cfg.database_url);
}

static void
test_environment_overrides_defaults (void **state)
{
    (void)state;
    setenv ("RECADO_T_PORT", "9000", 1);
    setenv ("RECADO_T_VERBOSE", "no", 1);
    setenv ("RECADO_T_NAME", "sender-2", 1);
    setenv ("RECADO_T_API_KEY", "k", 1);
    t_config_t cfg;
    assert_int_equal (s_load (&cfg, NULL), 0);
    assert_int_equal (cfg.port, 9000);
    assert_false (cfg.verbose);
    assert_string_equal (cfg.name, "sender-2");
    assert_string_equal (cfg.api_key, "k");
    rcd_config_free (s_specs, &cfg);

    /* an empty variable counts as unset */
    setenv ("RECADO_T_NAME", "", 1);
    assert_int_equal (s_load (&cfg, NULL), 0);
    assert_string_equal (cfg.name, "scheduler");
    rcd_config_free (s_specs, &cfg);
}

static void
test_ints_out_of_range_or_not_integers_are_rejected (void **state)
{
    (void)state;
    const char *bad[] = {"0",    "65536", "-1",
                         "abc",  "12abc", "1.5",
                         "0x10", "1e3",   "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        setenv ("RECADO_T_PORT", bad[i], 1);
        setenv ("RECADO_T_NAME", "set-before-the-failure", 1);
        t_config_t cfg;
        char *log = NULL;
        if (s_load (&cfg, &log) != -1)
            fail_msg ("RECADO_T_PORT=%s accepted", bad[i]);
        /* one clear line naming the setting */
        assert_non_null (strstr (log, "RECADO_T_PORT"));
        assert_non_null (strstr (log, "\"level\":\"error\""));
        assert_true (strstr (log, "out of range") ||
                     strstr (log, "not an integer"));
        assert_int_equal (s_count_lines (log), 1);
        free (log);
        /* and nothing is left to free */
        assert_null (cfg.name);
        assert_null (cfg.api_key);
    }
    /* the bounds themselves are valid */
    const char *good[] = {"1", "65535"};
    for (size_t i = 0; i < 2; i++) {
        setenv ("RECADO_T_PORT", good[i], 1);
        t_config_t cfg;
        assert_int_equal (s_load (&cfg, NULL), 0);
        assert_int_equal (cfg.port, atoi (good[i]));
        rcd_config_free (s_specs, &cfg);
    }
}

static void
test_int64_bounds_reach_the_whole_range (void **state)
{
    (void)state;
    typedef struct {
        int64_t v;
    } wide_t;
    const rcd_config_spec_t specs[] = {RCD_CONFIG_INT ("t_required", wide_t, v,
                                                       "0", INT64_MIN,
                                                       INT64_MAX, "wide"),
                                       RCD_CONFIG_END};
    wide_t cfg = {0};
    setenv ("RECADO_T_REQUIRED", "-9223372036854775808", 1);
    assert_int_equal (rcd_config_load (specs, &cfg), 0);
    assert_true (cfg.v == INT64_MIN);
    setenv ("RECADO_T_REQUIRED", "9223372036854775807", 1);
    assert_int_equal (rcd_config_load (specs, &cfg), 0);
    assert_true (cfg.v == INT64_MAX);
    t_capture_t c;
    s_capture_start (&c, 2);
    setenv ("RECADO_T_REQUIRED", "9223372036854775808", 1);
    int rc = rcd_config_load (specs, &cfg);
    free (s_capture_end (&c, 2));
    assert_int_equal (rc, -1);
}

static void
test_bools_accept_the_documented_spellings (void **state)
{
    (void)state;
    const char *yes[] = {"1", "true", "TRUE", "yes", "Yes", "on"};
    const char *no[] = {"0", "false", "False", "no", "NO", "off"};
    const char *bad[] = {"2", "maybe", "y", "n", "truee", " true"};
    for (size_t i = 0; i < 6; i++) {
        t_config_t cfg;
        setenv ("RECADO_T_VERBOSE", yes[i], 1);
        assert_int_equal (s_load (&cfg, NULL), 0);
        assert_true (cfg.verbose);
        rcd_config_free (s_specs, &cfg);
        setenv ("RECADO_T_VERBOSE", no[i], 1);
        assert_int_equal (s_load (&cfg, NULL), 0);
        assert_false (cfg.verbose);
        rcd_config_free (s_specs, &cfg);
        setenv ("RECADO_T_VERBOSE", bad[i], 1);
        char *log = NULL;
        if (s_load (&cfg, &log) != -1)
            fail_msg ("RECADO_T_VERBOSE=%s accepted", bad[i]);
        assert_non_null (strstr (log, "not a boolean"));
        free (log);
    }
}

static void
test_settings_without_default_are_required (void **state)
{
    (void)state;
    typedef struct {
        int64_t workers;
        char *endpoint;
    } req_t;
    const rcd_config_spec_t int_specs[] = {
        RCD_CONFIG_INT ("t_required", req_t, workers, NULL, 1, 10, "req"),
        RCD_CONFIG_END};
    const rcd_config_spec_t str_specs[] = {
        RCD_CONFIG_STR ("t_name", req_t, endpoint, "x", "has a default"),
        RCD_CONFIG_STR ("t_required", req_t, endpoint, NULL, "required"),
        RCD_CONFIG_END};
    const rcd_config_spec_t *tables[] = {int_specs, str_specs};
    for (size_t i = 0; i < 2; i++) {
        req_t cfg = {0, NULL};
        t_capture_t c;
        s_capture_start (&c, 2);
        int rc = rcd_config_load (tables[i], &cfg);
        char *log = s_capture_end (&c, 2);
        assert_int_equal (rc, -1);
        assert_non_null (strstr (log, "missing required setting"));
        assert_non_null (strstr (log, "RECADO_T_REQUIRED"));
        assert_null (cfg.endpoint); /* the default set first was freed */
        free (log);

        setenv ("RECADO_T_REQUIRED", "7", 1);
        assert_int_equal (rcd_config_load (tables[i], &cfg), 0);
        if (i == 0)
            assert_int_equal (cfg.workers, 7);
        else
            assert_string_equal (cfg.endpoint, "7");
        rcd_config_free (tables[i], &cfg);
        unsetenv ("RECADO_T_REQUIRED");
    }
}

static void
test_database_url_comes_from_DATABASE_URL (void **state)
{
    (void)state;
    char buf[96];
    assert_string_equal (rcd_config_env_name (&s_specs[4], buf, sizeof buf),
                         "DATABASE_URL");
    assert_string_equal (rcd_config_env_name (&s_specs[0], buf, sizeof buf),
                         "RECADO_T_PORT");
    /* the RECADO_ form is not read for it */
    setenv ("RECADO_DATABASE_URL", "postgresql://wrong/db", 1);
    t_config_t cfg;
    assert_int_equal (s_load (&cfg, NULL), 0);
    assert_string_equal (cfg.database_url, "postgresql:///recado");
    rcd_config_free (s_specs, &cfg);
    setenv ("DATABASE_URL", "postgresql://db.internal/recado", 1);
    assert_int_equal (s_load (&cfg, NULL), 0);
    assert_string_equal (cfg.database_url, "postgresql://db.internal/recado");
    rcd_config_free (s_specs, &cfg);
}

static void
test_env_names_are_upper_case_and_bounded (void **state)
{
    (void)state;
    char buf[12];
    const rcd_config_spec_t spec =
        RCD_CONFIG_STR ("claim_batch_size", t_config_t, name, "", "");
    assert_string_equal (rcd_config_env_name (&spec, buf, sizeof buf),
                         "RECADO_CLAI");
    char big[64];
    assert_string_equal (rcd_config_env_name (&spec, big, sizeof big),
                         "RECADO_CLAIM_BATCH_SIZE");
}

/*  Logs the config and returns the "config" object of the line's
    fields. */
static json_t *
s_logged_config (const t_config_t *cfg, char **text_p)
{
    t_capture_t c;
    s_capture_start (&c, 2);
    rcd_config_log (s_specs, cfg);
    char *text = s_capture_end (&c, 2);
    json_error_t err;
    json_t *line = json_loads (text, 0, &err);
    if (!line)
        fail_msg ("not one JSON object: %s (%s)", text, err.text);
    json_t *config =
        json_object_get (json_object_get (line, "fields"), "config");
    assert_true (json_is_object (config));
    json_incref (config);
    json_decref (line);
    *text_p = text;
    return config;
}

static void
test_config_log_masks_every_secret (void **state)
{
    (void)state;
    const struct {
        const char *url;
        const char *shown; /* what the log shows for it */
    } urls[] = {
        {"postgresql://alice:Pa55w0rd@db.example:5432/recado",
         "postgresql://alice:***@db.example:5432/recado"},
        {"postgresql://alice:Pa55w0rd@db.example/recado?sslmode=require&"
         "password=Pa55w0rd",
         "postgresql://alice:***@db.example/recado?***"},
        {"postgres://db.example/recado?password=Pa55w0rd",
         "postgres://db.example/recado?***"},
        {"postgresql://alice:Pa55@w0rd@db.example/recado",
         "postgresql://alice:***@db.example/recado"},
        {"postgresql://alice@db.example/recado",
         "postgresql://alice@db.example/recado"},
        {"postgresql:///recado", "postgresql:///recado"},
        {"host=db.example user=alice password=Pa55w0rd", "***"},
        {"https://hooks.example/T000/Pa55w0rd", "https://hooks.example/***"},
    };
    for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
        setenv ("DATABASE_URL", urls[i].url, 1);
        setenv ("RECADO_T_API_KEY", "Pa55w0rd", 1);
        t_config_t cfg;
        assert_int_equal (s_load (&cfg, NULL), 0);
        char *text = NULL;
        json_t *config = s_logged_config (&cfg, &text);
        if (strstr (text, "Pa55") || strstr (text, "w0rd"))
            fail_msg ("secret logged: %s", text);
        assert_string_equal (
            json_string_value (json_object_get (config, "database_url")),
            urls[i].shown);
        assert_string_equal (
            json_string_value (json_object_get (config, "t_api_key")), "***");
        /* the rest is shown as it is */
        assert_string_equal (
            json_string_value (json_object_get (config, "t_name")),
            "scheduler");
        assert_int_equal (
            json_integer_value (json_object_get (config, "t_port")), 8080);
        assert_true (json_is_true (json_object_get (config, "t_verbose")));
        json_decref (config);
        free (text);
        rcd_config_free (s_specs, &cfg);
    }
}

static void
test_config_log_below_the_log_level_writes_and_leaks_nothing (void **state)
{
    (void)state;
    t_config_t cfg;
    assert_int_equal (s_load (&cfg, NULL), 0);
    rcd_log_set_level (RCD_LOG_WARN);
    t_capture_t c;
    s_capture_start (&c, 2);
    rcd_config_log (s_specs, &cfg);
    char *text = s_capture_end (&c, 2);
    assert_string_equal (text, "");
    free (text);
    rcd_config_free (s_specs, &cfg);
}

static void
test_help_lists_every_setting_without_secret_defaults (void **state)
{
    (void)state;
    t_capture_t c;
    s_capture_start (&c, 1);
    rcd_config_print_help (s_specs, "usage: recado-test");
    char *text = s_capture_end (&c, 1);
    assert_non_null (strstr (text, "usage: recado-test"));
    const char *env[] = {"RECADO_T_PORT", "RECADO_T_VERBOSE", "RECADO_T_NAME",
                         "RECADO_T_API_KEY", "DATABASE_URL"};
    for (size_t i = 0; i < 5; i++)
        assert_non_null (strstr (text, env[i]));
    assert_non_null (strstr (text, "8080"));
    assert_null (strstr (text, "default-key-123"));
    free (text);
}

int
main (void)
{
    rcd_log_init ("test");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup (test_defaults_fill_every_type, s_clean_env),
        cmocka_unit_test_setup (test_environment_overrides_defaults,
                                s_clean_env),
        cmocka_unit_test_setup (
            test_ints_out_of_range_or_not_integers_are_rejected, s_clean_env),
        cmocka_unit_test_setup (test_int64_bounds_reach_the_whole_range,
                                s_clean_env),
        cmocka_unit_test_setup (test_bools_accept_the_documented_spellings,
                                s_clean_env),
        cmocka_unit_test_setup (test_settings_without_default_are_required,
                                s_clean_env),
        cmocka_unit_test_setup (test_database_url_comes_from_DATABASE_URL,
                                s_clean_env),
        cmocka_unit_test_setup (test_env_names_are_upper_case_and_bounded,
                                s_clean_env),
        cmocka_unit_test_setup (test_config_log_masks_every_secret,
                                s_clean_env),
        cmocka_unit_test_setup (
            test_config_log_below_the_log_level_writes_and_leaks_nothing,
            s_clean_env),
        cmocka_unit_test_setup (
            test_help_lists_every_setting_without_secret_defaults, s_clean_env),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
