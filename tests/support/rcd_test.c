/*  rcd_test.c - shared test support (see rcd_test.h). */
#include "rcd_test.h"
#include "rcd_db.h"
#include "rcd_migrate.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

extern char **environ;

static void
s_sleep_ms (int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep (&ts, NULL);
}

static char *
s_conninfo (const char *dbname)
{
    const char *base = getenv ("RECADO_TEST_PG");
    if (!base || !*base)
        fail_msg ("RECADO_TEST_PG is not set: run the tests with ./tests/run");
    size_t size = strlen (base) + strlen (dbname) + 16;
    char *url = malloc (size);
    assert_non_null (url);
    snprintf (url, size, "%s dbname=%s", base, dbname);
    return url;
}

/*  Runs "<verb> <ident><tail>" on the postgres database (identifiers
    cannot be parameters; ours are checked to be [a-z0-9_]). */
static void
s_admin (const char *verb, const char *ident, const char *tail)
{
    char *url = s_conninfo ("postgres");
    rcd_db_t *db = rcd_db_new (url);
    assert_non_null (db);
    if (!rcd_db_connected (db))
        fail_msg ("cannot reach test PostgreSQL: %s", rcd_db_error (db));
    for (const char *p = ident; *p; p++)
        assert_true ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
                     *p == '_');
    char stmt[256];
    snprintf (stmt, sizeof stmt, "%s %s%s", verb, ident, tail);
    if (rcd_db_script (db, stmt) != 0)
        fail_msg ("%s: %s", stmt, rcd_db_error (db));
    rcd_db_destroy (&db);
    free (url);
}

char *
rcd_test_db_create (const char *name)
{
    char dbname[64];
    snprintf (dbname, sizeof dbname, "t_%s_%d", name, (int)getpid ());
    s_admin ("DROP DATABASE IF EXISTS", dbname, "");
    s_admin ("CREATE DATABASE", dbname, "");
    char *url = s_conninfo (dbname);
    rcd_db_t *db = rcd_db_new (url);
    assert_non_null (db);
    if (rcd_migrate_apply (db) < 0)
        fail_msg ("migrations failed: %s", rcd_db_error (db));
    rcd_db_destroy (&db);
    return url;
}

void
rcd_test_db_drop (char **url_p)
{
    if (!url_p || !*url_p)
        return;
    const char *p = strstr (*url_p, "dbname=");
    if (p)
        s_admin ("DROP DATABASE IF EXISTS", p + 7, " WITH (FORCE)");
    free (*url_p);
    *url_p = NULL;
}

char *
rcd_test_sql (const char *url, const char *sql, int nparams,
              const char *const *params)
{
    rcd_db_t *db = rcd_db_new (url);
    assert_non_null (db);
    rcd_db_res_t *res = NULL;
    if (rcd_db_exec (db, sql, nparams, params, &res) != 0)
        fail_msg ("%s: %s", sql, rcd_db_error (db));
    char *value = NULL;
    if (rcd_db_res_rows (res) > 0 && rcd_db_res_cols (res) > 0 &&
        !rcd_db_res_isnull (res, 0, 0))
        value = strdup (rcd_db_res_value (res, 0, 0));
    rcd_db_res_destroy (&res);
    rcd_db_destroy (&db);
    return value;
}

long long
rcd_test_sql_int (const char *url, const char *sql, int nparams,
                  const char *const *params)
{
    char *v = rcd_test_sql (url, sql, nparams, params);
    long long n = v ? strtoll (v, NULL, 10) : 0;
    free (v);
    return n;
}

int
rcd_test_free_port (void)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    assert_true (fd >= 0);
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    addr.sin_port = 0;
    assert_int_equal (bind (fd, (struct sockaddr *)&addr, sizeof addr), 0);
    socklen_t len = sizeof addr;
    assert_int_equal (getsockname (fd, (struct sockaddr *)&addr, &len), 0);
    close (fd);
    return ntohs (addr.sin_port);
}

static size_t
s_collect (char *ptr, size_t size, size_t nmemb, void *user)
{
    rcd_test_http_t *res = user;
    size_t n = size * nmemb;
    char *grown = realloc (res->body, res->size + n + 1);
    if (!grown)
        return 0;
    res->body = grown;
    memcpy (res->body + res->size, ptr, n);
    res->size += n;
    res->body[res->size] = 0;
    return n;
}

rcd_test_http_t
rcd_test_http (const char *method, const char *url, const char *bearer,
               const char *body, const char *const *headers)
{
    rcd_test_http_t res = {0, NULL, 0};
    res.body = calloc (1, 1);
    CURL *curl = curl_easy_init ();
    if (!curl)
        return res;
    struct curl_slist *list = NULL;
    char auth[512];
    if (bearer) {
        snprintf (auth, sizeof auth, "Authorization: Bearer %s", bearer);
        list = curl_slist_append (list, auth);
    }
    if (body)
        list = curl_slist_append (list, "Content-Type: application/json");
    for (int i = 0; headers && headers[i]; i++)
        list = curl_slist_append (list, headers[i]);
    curl_easy_setopt (curl, CURLOPT_URL, url);
    curl_easy_setopt (curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt (curl, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt (curl, CURLOPT_WRITEFUNCTION, s_collect);
    curl_easy_setopt (curl, CURLOPT_WRITEDATA, &res);
    curl_easy_setopt (curl, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt (curl, CURLOPT_NOSIGNAL, 1L);
    if (body) {
        curl_easy_setopt (curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt (curl, CURLOPT_POSTFIELDSIZE, (long)strlen (body));
    }
    if (curl_easy_perform (curl) == CURLE_OK)
        curl_easy_getinfo (curl, CURLINFO_RESPONSE_CODE, &res.status);
    curl_slist_free_all (list);
    curl_easy_cleanup (curl);
    return res;
}

void
rcd_test_http_free (rcd_test_http_t *res)
{
    free (res->body);
    res->body = NULL;
    res->size = 0;
}

json_t *
rcd_test_api (int port, const char *method, const char *path, const char *key,
              const char *body, long *status)
{
    char url[512];
    snprintf (url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    rcd_test_http_t res = rcd_test_http (method, url, key, body, NULL);
    *status = res.status;
    json_t *json = res.size ? json_loadb (res.body, res.size, 0, NULL) : NULL;
    rcd_test_http_free (&res);
    return json;
}

void
rcd_test_assert_api_error (json_t *answer, const char *code, const char *field)
{
    assert_non_null (answer);
    json_t *err = json_object_get (answer, "error");
    assert_true (json_is_object (err));
    assert_string_equal (json_string_value (json_object_get (err, "code")),
                         code);
    const char *message = json_string_value (json_object_get (err, "message"));
    assert_non_null (message);
    assert_true (strlen (message) > 0);
    json_t *f = json_object_get (err, "field");
    if (field) {
        if (!json_is_string (f))
            fail_msg ("expected field %s, got none", field);
        assert_string_equal (json_string_value (f), field);
    }
    else
        assert_true (json_is_null (f));
}

json_t *
rcd_test_api_expect (int port, long expected, const char *method,
                     const char *path, const char *key, const char *body)
{
    long status = 0;
    json_t *a = rcd_test_api (port, method, path, key, body, &status);
    if (status != expected) {
        char *text = a ? json_dumps (a, JSON_COMPACT) : NULL;
        fail_msg ("%s %s %.400s: expected %ld, got %ld: %.400s", method, path,
                  body ? body : "", expected, status, text ? text : "");
    }
    assert_non_null (a);
    return a;
}

void
rcd_test_api_expect_error (int port, long status, const char *method,
                           const char *path, const char *key, const char *body,
                           const char *code, const char *field)
{
    json_t *a = rcd_test_api_expect (port, status, method, path, key, body);
    rcd_test_assert_api_error (a, code, field);
    json_decref (a);
}

const char *
rcd_test_str (json_t *obj, const char *name)
{
    return json_string_value (json_object_get (obj, name));
}

char *
rcd_test_create_tenant (int port, const char *admin_key, const char *name,
                        long long *id)
{
    json_t *body = json_pack ("{s:s}", "name", name);
    char *text = json_dumps (body, JSON_COMPACT);
    json_decref (body);
    long status = 0;
    json_t *answer =
        rcd_test_api (port, "POST", "/v1/tenants", admin_key, text, &status);
    free (text);
    if (status != 201)
        fail_msg ("POST /v1/tenants: expected 201, got %ld", status);
    const char *key = json_string_value (json_object_get (answer, "api_key"));
    assert_non_null (key);
    char *copy = strdup (key);
    if (id)
        *id = json_integer_value (json_object_get (answer, "id"));
    json_decref (answer);
    return copy;
}

pid_t
rcd_test_spawn (const char *const *argv, const char *const *env,
                const char *log_path)
{
    size_t nours = 0, nextra = 0;
    while (environ[nours])
        nours++;
    while (env && env[nextra])
        nextra++;
    char **envp = calloc (nours + nextra + 1, sizeof *envp);
    if (!envp)
        return -1;
    size_t n = 0;
    for (size_t i = 0; i < nextra; i++)
        envp[n++] = (char *)env[i];
    for (size_t i = 0; i < nours; i++) {
        /* extra entries override ours */
        const char *eq = strchr (environ[i], '=');
        size_t klen = eq ? (size_t)(eq - environ[i]) : strlen (environ[i]);
        bool overridden = false;
        for (size_t j = 0; j < nextra && !overridden; j++)
            overridden =
                strncmp (env[j], environ[i], klen) == 0 && env[j][klen] == '=';
        if (!overridden)
            envp[n++] = environ[i];
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init (&fa);
    if (log_path) {
        posix_spawn_file_actions_addopen (&fa, 1, log_path,
                                          O_WRONLY | O_CREAT | O_APPEND, 0644);
        posix_spawn_file_actions_adddup2 (&fa, 1, 2);
    }
    pid_t pid = -1;
    int rc = posix_spawn (&pid, argv[0], &fa, NULL, (char *const *)argv, envp);
    posix_spawn_file_actions_destroy (&fa);
    free (envp);
    return rc == 0 ? pid : -1;
}

int
rcd_test_stop (pid_t pid, int sig, int timeout_ms)
{
    if (pid <= 0)
        return -1;
    kill (pid, sig);
    for (int waited = 0; waited <= timeout_ms; waited += 10) {
        int status = 0;
        pid_t r = waitpid (pid, &status, WNOHANG);
        if (r == pid) {
            if (WIFEXITED (status))
                return WEXITSTATUS (status);
            if (WIFSIGNALED (status))
                return 128 + WTERMSIG (status);
        }
        s_sleep_ms (10);
    }
    kill (pid, SIGKILL);
    waitpid (pid, NULL, 0);
    return -1;
}

char *
rcd_test_bin (const char *name)
{
    const char *dir = getenv ("RECADO_BIN_DIR");
    size_t size = (dir ? strlen (dir) : 1) + strlen (name) + 2;
    char *path = malloc (size);
    assert_non_null (path);
    snprintf (path, size, "%s/%s", dir ? dir : ".", name);
    return path;
}

bool
rcd_test_wait_until (bool (*fn) (void *arg), void *arg, int timeout_ms)
{
    struct timespec start, now;
    clock_gettime (CLOCK_MONOTONIC, &start);
    while (true) {
        if (fn (arg))
            return true;
        clock_gettime (CLOCK_MONOTONIC, &now);
        long elapsed = (now.tv_sec - start.tv_sec) * 1000 +
                       (now.tv_nsec - start.tv_nsec) / 1000000;
        if (elapsed >= timeout_ms)
            return fn (arg);
        s_sleep_ms (10);
    }
}

static bool
s_http_ok (void *arg)
{
    rcd_test_http_t res =
        rcd_test_http ("GET", (const char *)arg, NULL, NULL, NULL);
    bool ok = res.status == 200;
    rcd_test_http_free (&res);
    return ok;
}

bool
rcd_test_wait_http_ok (const char *url, int timeout_ms)
{
    return rcd_test_wait_until (s_http_ok, (void *)url, timeout_ms);
}
