/*  rcd_db.c - libpq behind a small class.

    Reconnects lazily: a call that finds the connection bad resets it, at
    most once per backoff period (doubling from 100 ms to 5 s), so a
    PostgreSQL restart costs failed calls, not a blocked service.
*/
#include "rcd_db.h"
#include "rcd_clock.h"
#include "rcd_log.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RCD_DB_BACKOFF_MIN_MS 100
#define RCD_DB_BACKOFF_MAX_MS 5000
/*  COPY data is handed to libpq in pieces of about this size. */
#define RCD_DB_COPY_PIECE 65536

typedef struct s_stmt {
    char *name;
    char *sql;
    uint64_t prepared_gen; /* connection generation it was prepared on */
    struct s_stmt *next;
} s_stmt_t;

struct rcd_db {
    char *url;
    PGconn *conn;
    uint64_t gen;        /* bumped on every successful (re)connect */
    int64_t retry_at_ms; /* no reconnect attempt before this */
    int backoff_ms;      /* next backoff */
    s_stmt_t *stmts;     /* registered statements */
    char *on_connect;    /* run first on every new session; NULL: none */
    bool copying;        /* between rcd_db_copy_begin and end/abort */
    char *copy_buf;      /* COPY rows not yet handed to libpq */
    size_t copy_len, copy_cap;
    char error[512];  /* last error text */
    char sqlstate[6]; /* last SQLSTATE */
};

static void
s_set_error (rcd_db_t *self, const char *text, const char *state)
{
    snprintf (self->error, sizeof self->error, "%s", text ? text : "");
    size_t n = strcspn (self->error, "\n");
    self->error[n] = 0;
    snprintf (self->sqlstate, sizeof self->sqlstate, "%s", state ? state : "");
}

/*  Suppresses libpq's notices (they would break our JSON log lines). */
static void
s_notice_ignore (void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/*  Runs the on-connect statement on a new session. Returns 0 or -1
    (error set). */
static int
s_session_init (rcd_db_t *self)
{
    if (!self->on_connect)
        return 0;
    PGresult *res = PQexec (self->conn, self->on_connect);
    int rc = PQresultStatus (res) == PGRES_COMMAND_OK ||
                     PQresultStatus (res) == PGRES_TUPLES_OK
                 ? 0
                 : -1;
    if (rc != 0)
        s_set_error (self, PQresultErrorMessage (res),
                     PQresultErrorField (res, PG_DIAG_SQLSTATE));
    PQclear (res);
    return rc;
}

/*  Connects (or reconnects) when the connection is down and backoff
    allows. Returns true when connected. */
static bool
s_ensure_connected (rcd_db_t *self)
{
    if (self->conn && PQstatus (self->conn) == CONNECTION_OK)
        return true;
    int64_t now = rcd_clock_mono_ms ();
    if (now < self->retry_at_ms) {
        s_set_error (self, "database unavailable (backing off)", "08006");
        return false;
    }
    if (self->conn)
        PQfinish (self->conn);
    /* A default connect timeout, so an unreachable host that never
       refuses cannot block an actor; the URL's own setting wins. JIT off
       by default: our statements are short, and a generic plan whose
       estimates pass jit_above_cost spent 100-300 ms compiling a claim of
       ten rows (the URL's own options win here too). */
    const char *keys[] = {"connect_timeout", "options", "dbname", NULL};
    const char *values[] = {"5", "-c jit=off", self->url, NULL};
    self->conn = PQconnectdbParams (keys, values, 1);
    if (self->conn && PQstatus (self->conn) == CONNECTION_OK &&
        s_session_init (self) == 0) {
        PQsetNoticeProcessor (self->conn, s_notice_ignore, NULL);
        self->gen++;
        self->backoff_ms = RCD_DB_BACKOFF_MIN_MS;
        self->retry_at_ms = 0;
        return true;
    }
    if (!self->conn || PQstatus (self->conn) != CONNECTION_OK)
        s_set_error (self,
                     self->conn ? PQerrorMessage (self->conn) : "no memory",
                     "08006");
    else { /* connected, but the session could not be set up */
        PQfinish (self->conn);
        self->conn = NULL;
    }
    rcd_log_warn ("db: connect failed", "{s:s, s:i}", "error", self->error,
                  "retry_ms", self->backoff_ms);
    self->retry_at_ms = now + self->backoff_ms;
    self->backoff_ms *= 2;
    if (self->backoff_ms > RCD_DB_BACKOFF_MAX_MS)
        self->backoff_ms = RCD_DB_BACKOFF_MAX_MS;
    return false;
}

rcd_db_t *
rcd_db_new (const char *url)
{
    rcd_db_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->url = strdup (url ? url : "");
    if (!self->url) {
        free (self);
        return NULL;
    }
    self->backoff_ms = RCD_DB_BACKOFF_MIN_MS;
    (void)s_ensure_connected (self);
    return self;
}

void
rcd_db_destroy (rcd_db_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    rcd_db_t *self = *self_p;
    while (self->stmts) {
        s_stmt_t *next = self->stmts->next;
        free (self->stmts->name);
        free (self->stmts->sql);
        free (self->stmts);
        self->stmts = next;
    }
    if (self->conn)
        PQfinish (self->conn);
    free (self->copy_buf);
    free (self->on_connect);
    free (self->url);
    free (self);
    *self_p = NULL;
}

int
rcd_db_on_connect (rcd_db_t *self, const char *sql)
{
    char *copy = strdup (sql);
    if (!copy)
        return -1;
    free (self->on_connect);
    self->on_connect = copy;
    if (!self->conn || PQstatus (self->conn) != CONNECTION_OK)
        return 0;
    if (s_session_init (self) == 0)
        return 0;
    /* a session that could not be set up is not used */
    PQfinish (self->conn);
    self->conn = NULL;
    return -1;
}

bool
rcd_db_connected (rcd_db_t *self)
{
    return s_ensure_connected (self);
}

uint64_t
rcd_db_generation (rcd_db_t *self)
{
    return self->gen;
}

int
rcd_db_prepare (rcd_db_t *self, const char *name, const char *sql)
{
    /* A second entry under one name would shadow the first: once that one
       was prepared on the connection, preparing the shadow fails with
       42P05 on every run until a reconnect. Registering the same
       statement again is harmless; reusing a name for other SQL is a bug. */
    for (s_stmt_t *old = self->stmts; old; old = old->next)
        if (strcmp (old->name, name) == 0) {
            if (strcmp (old->sql, sql) == 0)
                return 0;
            s_set_error (self, "statement name registered with other SQL",
                         "42P05");
            return -1;
        }
    s_stmt_t *stmt = calloc (1, sizeof *stmt);
    if (!stmt)
        return -1;
    stmt->name = strdup (name);
    stmt->sql = strdup (sql);
    if (!stmt->name || !stmt->sql) {
        free (stmt->name);
        free (stmt->sql);
        free (stmt);
        return -1;
    }
    stmt->next = self->stmts;
    self->stmts = stmt;
    return 0;
}

/*  Turns a PGresult into our return code; keeps or clears it. */
static int
s_finish (rcd_db_t *self, PGresult *res, rcd_db_res_t **res_p)
{
    ExecStatusType st = res ? PQresultStatus (res) : PGRES_FATAL_ERROR;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        self->error[0] = 0;
        self->sqlstate[0] = 0;
        if (res_p)
            *res_p = (rcd_db_res_t *)res;
        else
            PQclear (res);
        return 0;
    }
    if (res)
        s_set_error (self, PQresultErrorMessage (res),
                     PQresultErrorField (res, PG_DIAG_SQLSTATE));
    else
        s_set_error (self, PQerrorMessage (self->conn), "08006");
    PQclear (res);
    if (PQstatus (self->conn) != CONNECTION_OK) {
        /* Connection lost: reconnect on a later call, after backoff. */
        self->retry_at_ms = rcd_clock_mono_ms () + RCD_DB_BACKOFF_MIN_MS;
        if (!self->sqlstate[0])
            snprintf (self->sqlstate, sizeof self->sqlstate, "08006");
    }
    return -1;
}

/*  A statement cannot run while a COPY is in progress. */
static bool
s_copy_busy (rcd_db_t *self)
{
    if (self->copying)
        s_set_error (self, "a COPY is in progress", "55000");
    return self->copying;
}

int
rcd_db_exec (rcd_db_t *self, const char *sql, int nparams,
             const char *const *params, rcd_db_res_t **res_p)
{
    if (res_p)
        *res_p = NULL;
    if (s_copy_busy (self) || !s_ensure_connected (self))
        return -1;
    PGresult *res =
        PQexecParams (self->conn, sql, nparams, NULL, params, NULL, NULL, 0);
    return s_finish (self, res, res_p);
}

int
rcd_db_run (rcd_db_t *self, const char *name, int nparams,
            const char *const *params, rcd_db_res_t **res_p)
{
    if (res_p)
        *res_p = NULL;
    if (s_copy_busy (self) || !s_ensure_connected (self))
        return -1;
    s_stmt_t *stmt = self->stmts;
    while (stmt && strcmp (stmt->name, name) != 0)
        stmt = stmt->next;
    if (!stmt) {
        s_set_error (self, "statement not registered", "26000");
        return -1;
    }
    if (stmt->prepared_gen != self->gen) {
        PGresult *res = PQprepare (self->conn, stmt->name, stmt->sql, 0, NULL);
        if (s_finish (self, res, NULL) != 0)
            return -1;
        stmt->prepared_gen = self->gen;
    }
    PGresult *res =
        PQexecPrepared (self->conn, stmt->name, nparams, params, NULL, NULL, 0);
    return s_finish (self, res, res_p);
}

int
rcd_db_script (rcd_db_t *self, const char *sql)
{
    if (s_copy_busy (self) || !s_ensure_connected (self))
        return -1;
    return s_finish (self, PQexec (self->conn, sql), NULL);
}

int
rcd_db_begin (rcd_db_t *self)
{
    return rcd_db_exec (self, "BEGIN", 0, NULL, NULL);
}

int
rcd_db_commit (rcd_db_t *self)
{
    return rcd_db_exec (self, "COMMIT", 0, NULL, NULL);
}

void
rcd_db_rollback (rcd_db_t *self)
{
    if (self->copying)
        rcd_db_copy_abort (self, "rolled back");
    if (self->conn && PQstatus (self->conn) == CONNECTION_OK &&
        PQtransactionStatus (self->conn) != PQTRANS_IDLE)
        PQclear (PQexec (self->conn, "ROLLBACK"));
}

const char *
rcd_db_error (rcd_db_t *self)
{
    return self->error;
}

const char *
rcd_db_sqlstate (rcd_db_t *self)
{
    return self->sqlstate;
}

bool
rcd_db_error_is (rcd_db_t *self, const char *sqlstate)
{
    return strcmp (self->sqlstate, sqlstate) == 0;
}

int
rcd_db_res_rows (const rcd_db_res_t *res)
{
    return res ? PQntuples ((const PGresult *)res) : 0;
}

int
rcd_db_res_cols (const rcd_db_res_t *res)
{
    return res ? PQnfields ((const PGresult *)res) : 0;
}

int64_t
rcd_db_res_affected (const rcd_db_res_t *res)
{
    const char *n = res ? PQcmdTuples ((PGresult *)res) : NULL;
    return n && *n ? strtoll (n, NULL, 10) : 0;
}

bool
rcd_db_res_isnull (const rcd_db_res_t *res, int row, int col)
{
    return PQgetisnull ((const PGresult *)res, row, col) != 0;
}

const char *
rcd_db_res_value (const rcd_db_res_t *res, int row, int col)
{
    if (PQgetisnull ((const PGresult *)res, row, col))
        return NULL;
    return PQgetvalue ((const PGresult *)res, row, col);
}

int64_t
rcd_db_res_int64 (const rcd_db_res_t *res, int row, int col)
{
    const char *v = rcd_db_res_value (res, row, col);
    return v ? strtoll (v, NULL, 10) : 0;
}

void
rcd_db_res_destroy (rcd_db_res_t **res_p)
{
    if (!res_p || !*res_p)
        return;
    PQclear ((PGresult *)*res_p);
    *res_p = NULL;
}

/*  --- COPY --- */

int
rcd_db_copy_begin (rcd_db_t *self, const char *sql)
{
    if (self->copying) {
        s_set_error (self, "a COPY is already in progress", "55000");
        return -1;
    }
    if (!s_ensure_connected (self))
        return -1;
    PGresult *res = PQexec (self->conn, sql);
    if (PQresultStatus (res) != PGRES_COPY_IN) {
        if (PQresultStatus (res) == PGRES_COMMAND_OK ||
            PQresultStatus (res) == PGRES_TUPLES_OK) {
            PQclear (res); /* not a COPY FROM STDIN: refuse it */
            s_set_error (self, "not a COPY FROM STDIN statement", "42601");
            return -1;
        }
        (void)s_finish (self, res, NULL); /* sets the error, clears */
        return -1;
    }
    PQclear (res);
    self->copying = true;
    self->copy_len = 0;
    return 0;
}

/*  Hands the buffered rows to libpq. Returns 0 or -1 (error set). */
static int
s_copy_flush (rcd_db_t *self)
{
    if (self->copy_len == 0)
        return 0;
    if (PQputCopyData (self->conn, self->copy_buf, (int)self->copy_len) != 1) {
        s_set_error (self, PQerrorMessage (self->conn), "08006");
        return -1;
    }
    self->copy_len = 0;
    return 0;
}

int
rcd_db_copy_row (rcd_db_t *self, int ncols, const char *const *values)
{
    if (!self->copying) {
        s_set_error (self, "no COPY in progress", "55000");
        return -1;
    }
    /* worst case: every byte escaped, a separator per column, \N */
    size_t need = 1;
    for (int c = 0; c < ncols; c++)
        need += (values[c] ? 2 * strlen (values[c]) : 2) + 1;
    if (self->copy_len + need > self->copy_cap) {
        size_t cap =
            self->copy_cap ? self->copy_cap : (size_t)RCD_DB_COPY_PIECE * 2;
        while (cap < self->copy_len + need)
            cap *= 2;
        char *grown = realloc (self->copy_buf, cap);
        if (!grown) {
            s_set_error (self, "out of memory", "53200");
            return -1;
        }
        self->copy_buf = grown;
        self->copy_cap = cap;
    }
    char *out = self->copy_buf + self->copy_len;
    for (int c = 0; c < ncols; c++) {
        if (c > 0)
            *out++ = '\t';
        const char *v = values[c];
        if (!v) {
            *out++ = '\\';
            *out++ = 'N';
            continue;
        }
        /* COPY's text format: backslash, newline, carriage return and the
           tab delimiter are the bytes that would end or change a field */
        for (; *v; v++)
            switch (*v) {
                case '\\':
                    *out++ = '\\';
                    *out++ = '\\';
                    break;
                case '\n':
                    *out++ = '\\';
                    *out++ = 'n';
                    break;
                case '\r':
                    *out++ = '\\';
                    *out++ = 'r';
                    break;
                case '\t':
                    *out++ = '\\';
                    *out++ = 't';
                    break;
                default:
                    *out++ = *v;
            }
    }
    *out++ = '\n';
    self->copy_len = (size_t)(out - self->copy_buf);
    return self->copy_len >= RCD_DB_COPY_PIECE ? s_copy_flush (self) : 0;
}

/*  Ends the COPY (with why: as a failure) and reads its result. Returns
    0 with *rows_p, or -1 (error set). */
static int
s_copy_finish (rcd_db_t *self, const char *why, int64_t *rows_p)
{
    self->copying = false;
    self->copy_len = 0;
    if (!self->conn || PQputCopyEnd (self->conn, why) != 1) {
        s_set_error (self, self->conn ? PQerrorMessage (self->conn) : "",
                     "08006");
        return -1;
    }
    int rc = 0;
    PGresult *res;
    /* the COPY's own result, then NULL; an error result keeps rc -1 */
    while ((res = PQgetResult (self->conn)) != NULL) {
        if (PQresultStatus (res) == PGRES_COMMAND_OK) {
            if (rows_p)
                *rows_p = rcd_db_res_affected ((rcd_db_res_t *)res);
            PQclear (res);
        }
        else {
            (void)s_finish (self, res, NULL); /* sets the error, clears */
            rc = -1;
        }
    }
    if (rc == 0 && why) {
        s_set_error (self, why, "57014");
        rc = -1;
    }
    return rc;
}

int
rcd_db_copy_end (rcd_db_t *self, int64_t *rows_p)
{
    if (rows_p)
        *rows_p = 0;
    if (!self->copying) {
        s_set_error (self, "no COPY in progress", "55000");
        return -1;
    }
    if (s_copy_flush (self) != 0) {
        char error[sizeof self->error];
        memcpy (error, self->error, sizeof error);
        (void)s_copy_finish (self, "client failed to send the data", NULL);
        s_set_error (self, error, "08006");
        return -1;
    }
    return s_copy_finish (self, NULL, rows_p);
}

void
rcd_db_copy_abort (rcd_db_t *self, const char *why)
{
    if (!self->copying)
        return;
    char error[sizeof self->error], state[sizeof self->sqlstate];
    memcpy (error, self->error, sizeof error);
    memcpy (state, self->sqlstate, sizeof state);
    (void)s_copy_finish (self, why ? why : "aborted by the client", NULL);
    /* the caller's reason to give up is the error worth keeping */
    if (error[0])
        s_set_error (self, error, state);
}

char *
rcd_db_int64_array (const int64_t *values, size_t count)
{
    size_t cap = 2 + count * 21 + 1;
    char *buf = malloc (cap);
    if (!buf)
        return NULL;
    size_t n = 0;
    buf[n++] = '{';
    for (size_t i = 0; i < count; i++)
        n += (size_t)snprintf (buf + n, cap - n, "%s%lld", i ? "," : "",
                               (long long)values[i]);
    buf[n++] = '}';
    buf[n] = 0;
    return buf;
}

/*  Grows a buffer to hold at least need more bytes. */
static int
s_reserve (char **buf, size_t len, size_t *cap, size_t need)
{
    if (len + need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap : 256;
    while (ncap < len + need)
        ncap *= 2;
    char *nbuf = realloc (*buf, ncap);
    if (!nbuf)
        return -1;
    *buf = nbuf;
    *cap = ncap;
    return 0;
}

int
rcd_db_text_array_append (char **buf, size_t *len, size_t *cap,
                          const char *value)
{
    size_t vlen = value ? strlen (value) : 4;
    /* worst case: every char escaped, quotes, comma, braces, NUL */
    if (s_reserve (buf, *len, cap, 2 * vlen + 6) != 0)
        return -1;
    char *b = *buf;
    size_t n = *len;
    if (n == 0)
        b[n++] = '{';
    else
        b[n - 1] = ','; /* replace the closing brace */
    if (!value) {
        memcpy (b + n, "NULL", 4);
        n += 4;
    }
    else {
        b[n++] = '"';
        for (const char *p = value; *p; p++) {
            if (*p == '"' || *p == '\\')
                b[n++] = '\\';
            b[n++] = *p;
        }
        b[n++] = '"';
    }
    b[n++] = '}';
    b[n] = 0;
    *len = n;
    return 0;
}
