/*  rcd_test_pipeline.c - the pipeline as processes (see
    rcd_test_pipeline.h). */
#include "rcd_test_pipeline.h"
#include "rcd_db.h"
#include "rcd_migrate.h"
#include "rcd_test.h"

#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#define S_MAX_ENV   64
#define S_BATCH_MAX 1000
#define S_READY_MS  30000

static const char *s_programs[RCD_TP_KINDS] = {
    "recado-scheduler", "recado-sender", "recado-recovery", "recado-ingestor",
    "recado-monitor"};
static const char *s_kind_names[RCD_TP_KINDS] = {
    "scheduler", "sender", "recovery", "ingestor", "monitor"};

typedef struct {
    pid_t pid;
    char *log_path;
    char *env[S_MAX_ENV + 1]; /* owned "K=V", NULL-ended */
    int nenv;
} s_proc_t;

struct rcd_test_pipeline {
    char *db_url;
    char *pg_base; /* set when the database is on a server of the test's */
    char *dbname;
    rcd_gwsim_t *sim;
    int api_port, monitor_port;
    char *log_dir;
    bool passed;
    int count[RCD_TP_KINDS];
    s_proc_t procs[RCD_TP_KINDS][RCD_TP_MAX_PER_KIND];
};

static int s_fixtures; /* fixtures made by this program, for unique names */

/*  --------------------------------------------------------------------
    Environment lists */

static void
s_env_put (s_proc_t *proc, const char *entry)
{
    const char *eq = strchr (entry, '=');
    assert_non_null (eq);
    size_t klen = (size_t)(eq - entry) + 1;
    for (int i = 0; i < proc->nenv; i++)
        if (strncmp (proc->env[i], entry, klen) == 0) {
            free (proc->env[i]);
            proc->env[i] = strdup (entry);
            assert_non_null (proc->env[i]);
            return;
        }
    assert_true (proc->nenv < S_MAX_ENV);
    proc->env[proc->nenv] = strdup (entry);
    assert_non_null (proc->env[proc->nenv]);
    proc->nenv++;
    proc->env[proc->nenv] = NULL;
}

static void
s_env_putf (s_proc_t *proc, const char *fmt, ...)
{
    char entry[1024];
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (entry, sizeof entry, fmt, ap);
    va_end (ap);
    s_env_put (proc, entry);
}

static void
s_env_put_all (s_proc_t *proc, const char *const *list)
{
    for (int i = 0; list && list[i]; i++)
        s_env_put (proc, list[i]);
}

/*  --------------------------------------------------------------------
    Database on a server of the test's own */

static void
s_admin (const char *base, const char *stmt)
{
    size_t size = strlen (base) + 32;
    char *url = malloc (size);
    assert_non_null (url);
    snprintf (url, size, "%s dbname=postgres", base);
    rcd_db_t *db = rcd_db_new (url);
    assert_non_null (db);
    if (!rcd_db_connected (db))
        fail_msg ("cannot reach PostgreSQL %s: %s", base, rcd_db_error (db));
    if (rcd_db_script (db, stmt) != 0)
        fail_msg ("%s: %s", stmt, rcd_db_error (db));
    rcd_db_destroy (&db);
    free (url);
}

static char *
s_db_create_on (const char *base, const char *dbname)
{
    char stmt[256];
    snprintf (stmt, sizeof stmt, "DROP DATABASE IF EXISTS %s", dbname);
    s_admin (base, stmt);
    snprintf (stmt, sizeof stmt, "CREATE DATABASE %s", dbname);
    s_admin (base, stmt);
    size_t size = strlen (base) + strlen (dbname) + 16;
    char *url = malloc (size);
    assert_non_null (url);
    snprintf (url, size, "%s dbname=%s", base, dbname);
    rcd_db_t *db = rcd_db_new (url);
    assert_non_null (db);
    if (rcd_migrate_apply (db) < 0)
        fail_msg ("migrations failed: %s", rcd_db_error (db));
    rcd_db_destroy (&db);
    return url;
}

/*  --------------------------------------------------------------------
    Logs */

static void
s_mkdir_p (const char *path)
{
    char buf[1024];
    snprintf (buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir (buf, 0755);
            *p = '/';
        }
    if (mkdir (buf, 0755) != 0 && errno != EEXIST)
        fail_msg ("cannot create %s: %s", buf, strerror (errno));
}

static void
s_remove_dir (const char *path)
{
    DIR *dir = opendir (path);
    if (!dir)
        return;
    struct dirent *entry;
    char file[1024];
    while ((entry = readdir (dir)) != NULL) {
        if (entry->d_name[0] == '.')
            continue;
        int n = snprintf (file, sizeof file, "%s/%s", path, entry->d_name);
        if (n > 0 && (size_t)n < sizeof file)
            remove (file);
    }
    closedir (dir);
    rmdir (path);
}

/*  --------------------------------------------------------------------
    Construction */

static s_proc_t *
s_proc (rcd_test_pipeline_t *self, rcd_tp_kind_t kind, int index)
{
    assert_true (kind >= 0 && kind < RCD_TP_KINDS);
    if (index < 0 || index >= self->count[kind])
        fail_msg ("no %s #%d in this pipeline", s_kind_names[kind], index);
    return &self->procs[kind][index];
}

static void
s_proc_env (rcd_test_pipeline_t *self, s_proc_t *proc,
            const rcd_test_pipeline_opts_t *opts, rcd_tp_kind_t kind,
            const int *ports)
{
    s_env_putf (proc, "DATABASE_URL=%s", self->db_url);
    s_env_putf (proc, "RECADO_ADMIN_KEY=%s", RCD_TP_ADMIN_KEY);
    s_env_putf (proc, "RECADO_HTTP_PORT=%d", self->api_port);
    s_env_putf (proc, "RECADO_MONITOR_PORT=%d",
                self->monitor_port ? self->monitor_port : ports[4]);
    s_env_putf (proc, "RECADO_EVENTS_BIND=tcp://127.0.0.1:%d", ports[0]);
    s_env_putf (proc, "RECADO_EVENTS_ENDPOINT=tcp://127.0.0.1:%d", ports[0]);
    s_env_putf (proc, "RECADO_ALERTS_ENDPOINT=tcp://127.0.0.1:%d", ports[1]);
    s_env_putf (proc, "RECADO_NUDGE_BIND=tcp://127.0.0.1:%d", ports[2]);
    s_env_putf (proc, "RECADO_NUDGE_ENDPOINT=tcp://127.0.0.1:%d", ports[2]);
    s_env_putf (proc, "RECADO_DISPATCH_BIND=tcp://127.0.0.1:%d", ports[3]);
    s_env_putf (proc, "RECADO_DISPATCH_ENDPOINT=tcp://127.0.0.1:%d", ports[3]);
    /* the tenant API's own rate limit is a test of its own; here it
       would only slow bulk submission down (a test may set it back) */
    s_env_put (proc, "RECADO_API_RATE_PER_SECOND=0");
    s_env_put_all (proc, opts->env);
    s_env_put_all (proc, opts->kind_env[kind]);
}

rcd_test_pipeline_t *
rcd_test_pipeline_new (const rcd_test_pipeline_opts_t *opts)
{
    assert_non_null (opts);
    assert_non_null (opts->name);
    rcd_test_pipeline_t *self = calloc (1, sizeof *self);
    assert_non_null (self);
    int n = ++s_fixtures;

    char dbname[64];
    snprintf (dbname, sizeof dbname, "%s_%d", opts->name, n);
    if (opts->pg_base) {
        self->pg_base = strdup (opts->pg_base);
        char full[96];
        snprintf (full, sizeof full, "t_%s_%d", dbname, (int)getpid ());
        self->dbname = strdup (full);
        self->db_url = s_db_create_on (self->pg_base, full);
    }
    else
        self->db_url = rcd_test_db_create (dbname);

    const char *bin_dir = getenv ("RECADO_BIN_DIR");
    char dir[1024];
    snprintf (dir, sizeof dir, "%s/../test-logs/%s-%d-%d",
              bin_dir ? bin_dir : ".", opts->name, (int)getpid (), n);
    s_remove_dir (dir);
    s_mkdir_p (dir);
    self->log_dir = strdup (dir);

    self->sim = rcd_gwsim_new ("127.0.0.1", 0);
    assert_non_null (self->sim);
    self->api_port = rcd_test_free_port ();
    if (opts->monitor)
        self->monitor_port = rcd_test_free_port ();
    int ports[5];
    for (int i = 0; i < 5; i++)
        ports[i] = rcd_test_free_port ();

    self->count[RCD_TP_SCHEDULER] = opts->schedulers > 0 ? opts->schedulers : 1;
    self->count[RCD_TP_SENDER] = opts->senders > 0 ? opts->senders : 1;
    self->count[RCD_TP_RECOVERY] = opts->no_recovery ? 0 : 1;
    self->count[RCD_TP_INGESTOR] = 1;
    self->count[RCD_TP_MONITOR] = opts->monitor ? 1 : 0;
    for (int k = 0; k < RCD_TP_KINDS; k++) {
        assert_true (self->count[k] <= RCD_TP_MAX_PER_KIND);
        for (int i = 0; i < self->count[k]; i++) {
            s_proc_t *proc = &self->procs[k][i];
            char path[1100];
            snprintf (path, sizeof path, "%s/%s%d.log", self->log_dir,
                      s_kind_names[k], i);
            proc->log_path = strdup (path);
            s_proc_env (self, proc, opts, (rcd_tp_kind_t)k, ports);
        }
    }
    /* the monitor binds events first so early heartbeats are seen; the
       ingestor last, so that work submitted finds everything running */
    static const rcd_tp_kind_t order[] = {RCD_TP_MONITOR, RCD_TP_SCHEDULER,
                                          RCD_TP_SENDER, RCD_TP_RECOVERY,
                                          RCD_TP_INGESTOR};
    for (size_t o = 0; o < sizeof order / sizeof order[0]; o++)
        for (int i = 0; i < self->count[order[o]]; i++)
            rcd_test_pipeline_start (self, order[o], i);

    char ready[128];
    snprintf (ready, sizeof ready, "http://127.0.0.1:%d/readyz",
              self->api_port);
    if (!rcd_test_wait_http_ok (ready, S_READY_MS)) {
        /* nothing may outlive the failed test: the caller has no handle */
        rcd_test_pipeline_destroy (&self);
        fail_msg ("ingestor not ready in %d ms", S_READY_MS);
    }
    return self;
}

void
rcd_test_pipeline_destroy (rcd_test_pipeline_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    rcd_test_pipeline_t *self = *self_p;
    for (int k = RCD_TP_KINDS - 1; k >= 0; k--)
        for (int i = 0; i < self->count[k]; i++) {
            s_proc_t *proc = &self->procs[k][i];
            if (proc->pid > 0)
                rcd_test_stop (proc->pid, SIGKILL, 5000);
            proc->pid = 0;
            for (int e = 0; e < proc->nenv; e++)
                free (proc->env[e]);
        }
    rcd_gwsim_destroy (&self->sim);
    if (self->pg_base) {
        char stmt[256];
        snprintf (stmt, sizeof stmt, "DROP DATABASE IF EXISTS %s WITH (FORCE)",
                  self->dbname);
        s_admin (self->pg_base, stmt);
        free (self->db_url);
    }
    else
        rcd_test_db_drop (&self->db_url);
    if (self->passed && !getenv ("RECADO_TEST_KEEP_LOGS"))
        s_remove_dir (self->log_dir);
    else
        fprintf (stderr, "pipeline logs kept in %s\n", self->log_dir);
    for (int k = 0; k < RCD_TP_KINDS; k++)
        for (int i = 0; i < self->count[k]; i++)
            free (self->procs[k][i].log_path);
    free (self->log_dir);
    free (self->pg_base);
    free (self->dbname);
    free (self);
    *self_p = NULL;
}

void
rcd_test_pipeline_passed (rcd_test_pipeline_t *self)
{
    self->passed = true;
}

rcd_gwsim_t *
rcd_test_pipeline_sim (rcd_test_pipeline_t *self)
{
    return self->sim;
}

const char *
rcd_test_pipeline_db (rcd_test_pipeline_t *self)
{
    return self->db_url;
}

int
rcd_test_pipeline_api_port (rcd_test_pipeline_t *self)
{
    return self->api_port;
}

int
rcd_test_pipeline_monitor_port (rcd_test_pipeline_t *self)
{
    return self->monitor_port;
}

/*  --------------------------------------------------------------------
    Processes */

pid_t
rcd_test_pipeline_pid (rcd_test_pipeline_t *self, rcd_tp_kind_t kind, int index)
{
    return s_proc (self, kind, index)->pid;
}

const char *
rcd_test_pipeline_log (rcd_test_pipeline_t *self, rcd_tp_kind_t kind, int index)
{
    return s_proc (self, kind, index)->log_path;
}

bool
rcd_test_pipeline_log_has (rcd_test_pipeline_t *self, rcd_tp_kind_t kind,
                           int index, const char *needle)
{
    FILE *file = fopen (s_proc (self, kind, index)->log_path, "r");
    if (!file)
        return false;
    char line[8192];
    bool found = false;
    while (!found && fgets (line, sizeof line, file))
        found = strstr (line, needle) != NULL;
    fclose (file);
    return found;
}

void
rcd_test_pipeline_set_env (rcd_test_pipeline_t *self, rcd_tp_kind_t kind,
                           int index, const char *entry)
{
    s_env_put (s_proc (self, kind, index), entry);
}

int
rcd_test_pipeline_stop (rcd_test_pipeline_t *self, rcd_tp_kind_t kind,
                        int index, int sig, int timeout_ms)
{
    s_proc_t *proc = s_proc (self, kind, index);
    if (proc->pid <= 0)
        return -1;
    int code = rcd_test_stop (proc->pid, sig, timeout_ms);
    proc->pid = 0;
    return code;
}

void
rcd_test_pipeline_start (rcd_test_pipeline_t *self, rcd_tp_kind_t kind,
                         int index)
{
    s_proc_t *proc = s_proc (self, kind, index);
    if (proc->pid > 0)
        fail_msg ("%s #%d is already running", s_kind_names[kind], index);
    char *bin = rcd_test_bin (s_programs[kind]);
    const char *argv[] = {bin, NULL};
    proc->pid =
        rcd_test_spawn (argv, (const char *const *)proc->env, proc->log_path);
    free (bin);
    if (proc->pid <= 0)
        fail_msg ("cannot start %s", s_programs[kind]);
}

bool
rcd_test_pipeline_running (rcd_test_pipeline_t *self, rcd_tp_kind_t kind,
                           int index)
{
    s_proc_t *proc = s_proc (self, kind, index);
    if (proc->pid <= 0)
        return false;
    int status = 0;
    if (waitpid (proc->pid, &status, WNOHANG) == proc->pid) {
        fprintf (stderr, "%s #%d exited (status 0x%x; log %s)\n",
                 s_kind_names[kind], index, status, proc->log_path);
        proc->pid = 0;
        return false;
    }
    return true;
}

void
rcd_test_pipeline_stop_all (rcd_test_pipeline_t *self)
{
    static const rcd_tp_kind_t order[] = {RCD_TP_INGESTOR, RCD_TP_RECOVERY,
                                          RCD_TP_SCHEDULER, RCD_TP_SENDER,
                                          RCD_TP_MONITOR};
    for (size_t o = 0; o < sizeof order / sizeof order[0]; o++)
        for (int i = 0; i < self->count[order[o]]; i++) {
            s_proc_t *proc = &self->procs[order[o]][i];
            if (proc->pid <= 0)
                continue;
            int code =
                rcd_test_pipeline_stop (self, order[o], i, SIGTERM, 30000);
            if (code != 0)
                fail_msg ("%s #%d exited %d on SIGTERM (log: %s)",
                          s_kind_names[order[o]], i, code, proc->log_path);
        }
}

/*  --------------------------------------------------------------------
    API */

char *
rcd_test_pipeline_tenant (rcd_test_pipeline_t *self, const char *name)
{
    return rcd_test_create_tenant (self->api_port, RCD_TP_ADMIN_KEY, name,
                                   NULL);
}

long long
rcd_test_pipeline_instance (rcd_test_pipeline_t *self, const char *key,
                            const char *json)
{
    json_t *body = json_loads (json, 0, NULL);
    assert_non_null (body);
    if (!json_object_get (body, "base_url"))
        json_object_set_new (body, "base_url",
                             json_string (rcd_gwsim_url (self->sim)));
    char *text = json_dumps (body, JSON_COMPACT);
    json_decref (body);
    json_t *answer = rcd_test_api_expect (self->api_port, 201, "POST",
                                          "/v1/instances", key, text);
    free (text);
    long long id = json_integer_value (json_object_get (answer, "id"));
    json_decref (answer);
    assert_true (id > 0);
    return id;
}

long long
rcd_test_pipeline_evolution (rcd_test_pipeline_t *self, const char *key,
                             const char *name, double rate_per_second)
{
    json_t *body = json_pack ("{s:s, s:s, s:s, s:f}", "name", name, "provider",
                              "evolution", "api_key", "sim-key",
                              "rate_per_second", rate_per_second);
    char *text = json_dumps (body, JSON_COMPACT);
    json_decref (body);
    long long id = rcd_test_pipeline_instance (self, key, text);
    free (text);
    return id;
}

long long
rcd_test_pipeline_meta (rcd_test_pipeline_t *self, const char *key,
                        const char *name, const char *phone_number_id,
                        double rate_per_second)
{
    json_t *body =
        json_pack ("{s:s, s:s, s:s, s:s, s:f}", "name", name, "provider",
                   "meta", "access_token", "EAAGsimtoken", "phone_number_id",
                   phone_number_id, "rate_per_second", rate_per_second);
    char *text = json_dumps (body, JSON_COMPACT);
    json_decref (body);
    long long id = rcd_test_pipeline_instance (self, key, text);
    free (text);
    return id;
}

void
rcd_test_pipeline_digits (int i, char *buf, size_t size)
{
    snprintf (buf, size, "55119%08d", i % 100000000);
}

void
rcd_test_pipeline_text (const char *prefix, int i, char *buf, size_t size)
{
    snprintf (buf, size, "%s %d", prefix, i);
}

json_t *
rcd_test_pipeline_messages (int first, int count, const char *prefix,
                            const char *instance)
{
    json_t *items = json_array ();
    assert_non_null (items);
    for (int i = first; i < first + count; i++) {
        char digits[32], to[40], text[256];
        rcd_test_pipeline_digits (i, digits, sizeof digits);
        snprintf (to, sizeof to, "+%s", digits);
        rcd_test_pipeline_text (prefix, i, text, sizeof text);
        json_t *item = json_pack ("{s:s, s:s}", "to", to, "text", text);
        assert_non_null (item);
        if (instance)
            json_object_set_new (item, "instance", json_string (instance));
        json_array_append_new (items, item);
    }
    return items;
}

int
rcd_test_pipeline_submit (rcd_test_pipeline_t *self, const char *key,
                          json_t *items)
{
    assert_true (json_is_array (items));
    size_t total = json_array_size (items);
    int accepted = 0;
    for (size_t from = 0; from < total; from += S_BATCH_MAX) {
        size_t to = from + S_BATCH_MAX < total ? from + S_BATCH_MAX : total;
        json_t *chunk = json_array ();
        for (size_t i = from; i < to; i++)
            json_array_append (chunk, json_array_get (items, i));
        json_t *body = json_pack ("{s:o}", "items", chunk);
        char *text = json_dumps (body, JSON_COMPACT);
        json_decref (body);
        json_t *answer = rcd_test_api_expect (self->api_port, 207, "POST",
                                              "/v1/messages/batch", key, text);
        free (text);
        json_t *results = json_object_get (answer, "items");
        assert_int_equal (json_array_size (results), to - from);
        for (size_t i = 0; i < json_array_size (results); i++) {
            json_t *item = json_array_get (results, i);
            if (!json_is_integer (json_object_get (item, "id"))) {
                char *dump = json_dumps (item, JSON_COMPACT);
                fail_msg ("batch item %zu refused: %s", from + i, dump);
            }
            accepted++;
        }
        json_decref (answer);
    }
    json_decref (items);
    return accepted;
}

/*  --------------------------------------------------------------------
    Waiting */

long long
rcd_test_pipeline_count (rcd_test_pipeline_t *self, const char *status)
{
    if (!status)
        return rcd_test_sql_int (self->db_url, "SELECT count(*) FROM messages",
                                 0, NULL);
    const char *params[] = {status};
    return rcd_test_sql_int (self->db_url,
                             "SELECT count(*) FROM messages WHERE status = $1",
                             1, params);
}

static bool
s_settled (void *arg)
{
    rcd_test_pipeline_t *self = arg;
    return rcd_test_sql_int (self->db_url,
                             "SELECT count(*) FROM messages"
                             " WHERE status IN ('pending', 'sending')",
                             0, NULL) == 0;
}

bool
rcd_test_pipeline_wait_settled (rcd_test_pipeline_t *self, int timeout_ms)
{
    bool settled = rcd_test_wait_until (s_settled, self, timeout_ms);
    if (!settled)
        rcd_test_pipeline_print_counts (self, "not settled");
    return settled;
}

typedef struct {
    rcd_test_pipeline_t *self;
    const char *status;
    long long n;
} s_count_wait_t;

static bool
s_count_reached (void *arg)
{
    s_count_wait_t *w = arg;
    return rcd_test_pipeline_count (w->self, w->status) >= w->n;
}

bool
rcd_test_pipeline_wait_count (rcd_test_pipeline_t *self, const char *status,
                              long long n, int timeout_ms)
{
    s_count_wait_t w = {self, status, n};
    return rcd_test_wait_until (s_count_reached, &w, timeout_ms);
}

void
rcd_test_pipeline_print_counts (rcd_test_pipeline_t *self, const char *label)
{
    char *counts = rcd_test_sql (
        self->db_url,
        "SELECT coalesce(string_agg(status || '=' || n, ' ' ORDER BY status),"
        " 'none') FROM (SELECT status, count(*) AS n FROM messages"
        " GROUP BY status) s",
        0, NULL);
    fprintf (stderr, "%s: %s\n", label, counts ? counts : "?");
    free (counts);
}
