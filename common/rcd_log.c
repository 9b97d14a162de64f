/*  rcd_log.c - JSON-lines logging (the line's shape: rcd_log.h).

    Lines go to stderr (the process manager captures it). A pack format
    that fails to build is itself logged, never fatal.
*/
#include "rcd_log.h"

#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static const char *s_service = "recado";
static rcd_log_level_t s_level = RCD_LOG_INFO;
static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
static const char *s_level_names[] = {"debug", "info", "warn", "error"};
/*  This thread's current trace id ("" for none): rcd_log_set_trace. */
static __thread char s_trace[64];

void
rcd_log_init (const char *service)
{
    s_service = service;
    const char *level = getenv ("RECADO_LOG_LEVEL");
    for (int i = 0; level && i < 4; i++)
        if (strcmp (level, s_level_names[i]) == 0)
            s_level = (rcd_log_level_t)i;
}

void
rcd_log_set_level (rcd_log_level_t level)
{
    s_level = level;
}

bool
rcd_log_enabled (rcd_log_level_t level)
{
    return level >= s_level;
}

/*  RFC 3339 UTC timestamp with milliseconds. */
static void
s_format_now (char *buf, size_t size)
{
    struct timeval tv;
    gettimeofday (&tv, NULL);
    struct tm tm;
    gmtime_r (&tv.tv_sec, &tm);
    size_t n = strftime (buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf (buf + n, size - n, ".%03ldZ", (long)(tv.tv_usec / 1000));
}

void
rcd_log_set_trace (const char *trace_id)
{
    snprintf (s_trace, sizeof s_trace, "%s", trace_id ? trace_id : "");
}

/*  The line's core keys, in their order. NULL when msg is not UTF-8. */
static json_t *
s_line_new (const char *ts, rcd_log_level_t level, const char *msg)
{
    return json_pack ("{s:s, s:s, s:s, s:s}", "time", ts, "level",
                      s_level_names[level], "service", s_service, "event", msg);
}

void
rcd_log_write (rcd_log_level_t level, const char *msg, const char *fields, ...)
{
    if (level < s_level) {
        /* an "o" in the format hands us a reference: build the fields
           anyway so that it is released, not leaked */
        if (fields && strchr (fields, 'o')) {
            va_list ap;
            va_start (ap, fields);
            json_t *extra = json_vpack_ex (NULL, 0, fields, ap);
            va_end (ap);
            json_decref (extra);
        }
        return;
    }
    char ts[40];
    s_format_now (ts, sizeof ts);
    json_t *line = s_line_new (ts, level, msg ? msg : "");
    if (!line) /* msg is not UTF-8: keep the line, lose the text */
        line = s_line_new (ts, level, "(event is not valid UTF-8)");
    if (!line)
        return;
    json_t *extra = NULL;
    json_error_t err;
    if (fields) {
        va_list ap;
        va_start (ap, fields);
        extra = json_vpack_ex (&err, 0, fields, ap);
        va_end (ap);
    }
    /* the fields' own trace id wins over the thread's */
    json_t *trace =
        json_is_object (extra) ? json_object_get (extra, "trace_id") : NULL;
    if (trace && !json_is_null (trace))
        json_object_set (line, "trace_id", trace);
    else if (s_trace[0])
        json_object_set_new (line, "trace_id", json_string (s_trace));
    if (trace)
        json_object_del (extra, "trace_id");
    if (fields && !json_is_object (extra))
        json_object_set_new (
            line, "log_error",
            json_string (extra ? "fields is not an object" : err.text));
    else if (extra && json_object_size (extra) > 0)
        json_object_set (line, "fields", extra);
    json_decref (extra);
    char *text = json_dumps (line, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref (line);
    if (!text)
        return;
    /* one write for text and newline: stderr is unbuffered, and processes
       sharing one log file must not split each other's lines */
    size_t len = strlen (text);
    char *full = realloc (text, len + 2);
    if (!full) {
        free (text);
        return;
    }
    full[len] = '\n';
    full[len + 1] = 0;
    pthread_mutex_lock (&s_lock);
    fwrite (full, 1, len + 1, stderr);
    fflush (stderr);
    pthread_mutex_unlock (&s_lock);
    free (full);
}

void
rcd_log_external (void *cls, const char *fmt, va_list ap)
{
    char text[512];
    vsnprintf (text, sizeof text, fmt, ap);
    text[strcspn (text, "\n")] = 0;
    rcd_log_warn (cls ? (const char *)cls : "library", "{s:s}", "detail", text);
}

char *
rcd_log_mask_phone (const char *phone, char *out, size_t out_size)
{
    if (!out || out_size == 0)
        return out;
    if (!phone) {
        snprintf (out, out_size, "null");
        return out;
    }
    size_t len = strlen (phone);
    size_t keep_head = phone[0] == '+' ? 5 : 4;
    if (len <= keep_head + 4) {
        snprintf (out, out_size, "****");
        return out;
    }
    size_t o = 0;
    for (size_t i = 0; i < len && o + 1 < out_size; i++)
        out[o++] = (i < keep_head || i >= len - 4) ? phone[i] : '*';
    out[o] = 0;
    return out;
}
