/*  rcd_api_json.c - what every handler shares: error bodies, body
    parsing, field tables, timestamps and business hours.

    Validation happens here, in C, before any SQL runs: a request that
    fails it has cost no round trip and stored nothing.
*/
#include "rcd_api.h"
#include "rcd_template.h"
#include "rcd_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
rcd_api_fail (rcd_api_error_t *err, int status, const char *code,
              const char *field, const char *fmt, ...)
{
    err->status = status;
    err->code = code;
    snprintf (err->field, sizeof err->field, "%s", field ? field : "");
    va_list args;
    va_start (args, fmt);
    vsnprintf (err->message, sizeof err->message, fmt, args);
    va_end (args);
    return -2;
}

json_t *
rcd_api_error_json (const rcd_api_error_t *err)
{
    return json_pack ("{s:s, s:s, s:o}", "code", err->code, "message",
                      err->message, "field",
                      err->field[0] ? json_string (err->field) : json_null ());
}

void
rcd_api_reply_error (rcd_api_reply_t *reply, const rcd_api_error_t *err)
{
    rcd_api_reply_json (reply, err->status,
                        json_pack ("{s:o}", "error", rcd_api_error_json (err)));
}

void
rcd_api_reply_fail (rcd_api_reply_t *reply, int status, const char *code,
                    const char *field, const char *fmt, ...)
{
    rcd_api_error_t err;
    err.status = status;
    err.code = code;
    snprintf (err.field, sizeof err.field, "%s", field ? field : "");
    va_list args;
    va_start (args, fmt);
    vsnprintf (err.message, sizeof err.message, fmt, args);
    va_end (args);
    rcd_api_reply_error (reply, &err);
}

void
rcd_api_reply_db_error (rcd_api_reply_t *reply, rcd_db_t *db, const char *what)
{
    const char *state = rcd_db_sqlstate (db);
    /* class 08: connection exceptions; 57P0x: the server is going away */
    if (strncmp (state, "08", 2) == 0 || strncmp (state, "57P", 3) == 0 ||
        !rcd_db_connected (db)) {
        rcd_log_warn ("database unavailable", "{s:s, s:s}", "during", what,
                      "error", rcd_db_error (db));
        rcd_api_reply_fail (reply, 503, "unavailable", NULL,
                            "the database is unavailable; retry later");
        reply->retry_after_s = 1;
        return;
    }
    rcd_log_error ("database error", "{s:s, s:s, s:s}", "during", what,
                   "sqlstate", state, "error", rcd_db_error (db));
    rcd_api_reply_fail (reply, 500, "internal_error", NULL, "internal error");
}

void
rcd_api_reply_json (rcd_api_reply_t *reply, int status, json_t *obj)
{
    free (reply->body);
    reply->body = obj ? json_dumps (obj, JSON_COMPACT) : NULL;
    reply->status = status;
    json_decref (obj);
    if (obj && !reply->body) { /* out of memory while encoding */
        reply->status = 500;
        reply->body = NULL;
    }
}

void
rcd_api_reply_text (rcd_api_reply_t *reply, int status, const char *json_text)
{
    free (reply->body);
    reply->body = json_text ? strdup (json_text) : NULL;
    reply->status = status;
}

void
rcd_api_reply_document (rcd_api_req_t *req, rcd_api_reply_t *reply,
                        const char *stmt, int nparams,
                        const char *const *params, const char *missing)
{
    rcd_db_res_t *res = NULL;
    if (rcd_db_run (req->db, stmt, nparams, params, &res) != 0)
        rcd_api_reply_db_error (reply, req->db, stmt);
    else if (rcd_db_res_rows (res) != 1)
        rcd_api_reply_fail (reply, 404, "not_found", NULL, "%s", missing);
    else
        rcd_api_reply_text (reply, 200, rcd_db_res_value (res, 0, 0));
    rcd_db_res_destroy (&res);
}

int
rcd_api_parse_body (const rcd_api_req_t *req, json_t **obj_p,
                    rcd_api_error_t *err)
{
    *obj_p = NULL;
    if (!req->body || req->body_size == 0)
        return rcd_api_fail (err, 400, "invalid_json", NULL,
                             "the body is empty; a JSON object is expected");
    json_error_t jerr;
    json_t *obj =
        json_loadb (req->body, req->body_size, JSON_REJECT_DUPLICATES, &jerr);
    if (!obj)
        return rcd_api_fail (err, 400, "invalid_json", NULL,
                             "invalid JSON at line %d column %d: %s", jerr.line,
                             jerr.column, jerr.text);
    if (!json_is_object (obj)) {
        json_decref (obj);
        return rcd_api_fail (err, 400, "invalid_json", NULL,
                             "the body must be a JSON object");
    }
    *obj_p = obj;
    return 0;
}

static const char *
s_type_name (rcd_api_type_t type)
{
    switch (type) {
        case RCD_API_STRING:
            return "a string";
        case RCD_API_INTEGER:
            return "an integer";
        case RCD_API_NUMBER:
            return "a number";
        case RCD_API_BOOLEAN:
            return "a boolean";
        case RCD_API_OBJECT:
            return "an object";
        case RCD_API_ARRAY:
            return "an array";
        case RCD_API_ANY:
            break;
    }
    return "a value";
}

static bool
s_type_ok (json_t *value, rcd_api_type_t type)
{
    switch (type) {
        case RCD_API_STRING:
            return json_is_string (value);
        case RCD_API_INTEGER:
            return json_is_integer (value);
        case RCD_API_NUMBER:
            return json_is_number (value);
        case RCD_API_BOOLEAN:
            return json_is_boolean (value);
        case RCD_API_OBJECT:
            return json_is_object (value);
        case RCD_API_ARRAY:
            return json_is_array (value);
        case RCD_API_ANY:
            return true;
    }
    return false;
}

int
rcd_api_check_fields (json_t *obj, const rcd_api_field_t *fields,
                      const char *prefix, rcd_api_error_t *err)
{
    char path[128];
    const char *key;
    json_t *value;
    json_object_foreach (obj, key, value)
    {
        const rcd_api_field_t *f = fields;
        while (f->name && strcmp (f->name, key) != 0)
            f++;
        snprintf (path, sizeof path, "%s%s", prefix, key);
        if (!f->name)
            return rcd_api_fail (err, 400, "invalid_field", path,
                                 "unknown field");
        if (!json_is_null (value) && !s_type_ok (value, f->type))
            return rcd_api_fail (err, 400, "invalid_field", path, "must be %s",
                                 s_type_name (f->type));
    }
    for (const rcd_api_field_t *f = fields; f->name; f++) {
        json_t *v = json_object_get (obj, f->name);
        if (f->required && (!v || json_is_null (v))) {
            snprintf (path, sizeof path, "%s%s", prefix, f->name);
            return rcd_api_fail (err, 400, "missing_field", path,
                                 "is required");
        }
    }
    return 0;
}

const char *
rcd_api_string (json_t *obj, const char *name)
{
    return json_string_value (json_object_get (obj, name));
}

bool
rcd_api_has_control (const char *text)
{
    for (const unsigned char *p = (const unsigned char *)text; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return true;
    return false;
}

size_t
rcd_api_utf8_length (const char *text)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++)
        n += (*p & 0xC0) != 0x80; /* count everything but continuations */
    return n;
}

/*  Reads exactly n digits at *p into *value and advances. */
static bool
s_digits (const char **p, int n, int *value)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return false;
        v = v * 10 + (c - '0');
    }
    *p += n;
    *value = v;
    return true;
}

/*  Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
    days_from_civil). */
static int64_t
s_days_from_civil (int y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int
s_days_in_month (int y, int m)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : days[m - 1];
}

int
rcd_api_parse_time (const char *text, int64_t *ms_p)
{
    const char *p = text;
    int y, mo, d, h, mi, s = 0, ms = 0;
    if (!s_digits (&p, 4, &y) || *p++ != '-' || !s_digits (&p, 2, &mo) ||
        *p++ != '-' || !s_digits (&p, 2, &d))
        return -2;
    if (*p != 'T' && *p != 't' && *p != ' ')
        return -2;
    p++;
    if (!s_digits (&p, 2, &h) || *p++ != ':' || !s_digits (&p, 2, &mi))
        return -2;
    if (*p == ':') {
        p++;
        if (!s_digits (&p, 2, &s))
            return -2;
        if (*p == '.') {
            p++;
            int nfrac = 0;
            while (*p >= '0' && *p <= '9') {
                if (nfrac < 3)
                    ms = ms * 10 + (*p - '0');
                if (++nfrac > 9)
                    return -2;
                p++;
            }
            if (nfrac == 0)
                return -2;
            for (int i = nfrac; i < 3; i++)
                ms *= 10;
        }
    }
    int offset_min = 0;
    if (*p == 'Z' || *p == 'z')
        p++;
    else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1;
        int oh, om;
        if (!s_digits (&p, 2, &oh) || *p++ != ':' || !s_digits (&p, 2, &om))
            return -2;
        /* PostgreSQL accepts offsets up to 15:59 */
        if (oh > 15 || om > 59)
            return -2;
        offset_min = sign * (oh * 60 + om);
    }
    else
        return -2; /* RFC 3339 needs the offset: no guessing a zone */
    if (*p)
        return -2;
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > s_days_in_month (y, mo) ||
        h > 23 || mi > 59 || s > 59)
        return -2;
    int64_t days = s_days_from_civil (y, mo, d);
    int64_t secs = days * 86400 + (int64_t)h * 3600 + (int64_t)mi * 60 + s -
                   (int64_t)offset_min * 60;
    *ms_p = secs * 1000 + ms;
    return 0;
}

/*  "HH:MM" into minutes of the day; "24:00" only when end. */
static int
s_clock_minutes (const char *text, bool end)
{
    const char *p = text;
    int h, m;
    if (!text || !s_digits (&p, 2, &h) || *p++ != ':' ||
        !s_digits (&p, 2, &m) || *p)
        return -1;
    if (h == 24 && m == 0 && end)
        return 24 * 60;
    if (h > 23 || m > 59)
        return -1;
    return h * 60 + m;
}

int
rcd_api_check_business_hours (json_t *value, rcd_api_error_t *err)
{
    static const char *const days[] = {"mon", "tue", "wed", "thu",
                                       "fri", "sat", "sun", NULL};
    if (!value || json_is_null (value))
        return 0;
    if (!json_is_object (value))
        return rcd_api_fail (err, 400, "invalid_field", "business_hours",
                             "must be null or an object of weekdays");
    char path[128];
    const char *key;
    json_t *windows;
    json_object_foreach (value, key, windows)
    {
        int day = 0;
        while (days[day] && strcmp (days[day], key) != 0)
            day++;
        snprintf (path, sizeof path, "business_hours.%s", key);
        if (!days[day])
            return rcd_api_fail (err, 400, "invalid_field", path,
                                 "unknown weekday (mon, tue, wed, thu, fri, "
                                 "sat, sun)");
        if (!json_is_array (windows) || json_array_size (windows) > 24)
            return rcd_api_fail (err, 400, "invalid_field", path,
                                 "must be a list of at most 24 "
                                 "[\"HH:MM\", \"HH:MM\"] windows");
        size_t i;
        json_t *w;
        json_array_foreach (windows, i, w)
        {
            snprintf (path, sizeof path, "business_hours.%s[%zu]", key, i);
            int from = -1, to = -1;
            if (json_is_array (w) && json_array_size (w) == 2) {
                from = s_clock_minutes (
                    json_string_value (json_array_get (w, 0)), false);
                to = s_clock_minutes (json_string_value (json_array_get (w, 1)),
                                      true);
            }
            if (from < 0 || to < 0)
                return rcd_api_fail (err, 400, "invalid_field", path,
                                     "must be [\"HH:MM\", \"HH:MM\"] (the "
                                     "end may be \"24:00\")");
            if (from >= to)
                return rcd_api_fail (err, 400, "invalid_field", path,
                                     "the window must end after it starts");
        }
    }
    return 0;
}

int
rcd_api_parse_clock (const char *text, bool end)
{
    return s_clock_minutes (text, end);
}

int
rcd_api_parse_id (const char *text, int64_t *id_p)
{
    if (!text || !*text || strlen (text) > 18)
        return -2;
    int64_t v = 0;
    for (const char *p = text; *p; p++) {
        if (*p < '0' || *p > '9')
            return -2;
        v = v * 10 + (*p - '0');
    }
    if (v <= 0)
        return -2;
    *id_p = v;
    return 0;
}

int
rcd_api_check_vars (json_t *vars, const char *prefix, rcd_api_error_t *err)
{
    char path[RCD_TEMPLATE_NAME_MAX + 64];
    snprintf (path, sizeof path, "%svars", prefix);
    if (json_object_size (vars) > RCD_API_VARS_MAX)
        return rcd_api_fail (err, 400, "invalid_field", path,
                             "must hold at most %d variables",
                             RCD_API_VARS_MAX);
    const char *key;
    json_t *value;
    json_object_foreach (vars, key, value)
    {
        size_t len = strlen (key);
        if (len < 1 || len > RCD_TEMPLATE_NAME_MAX ||
            strspn (key, "abcdefghijklmnopqrstuvwxyz"
                         "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") != len)
            return rcd_api_fail (err, 400, "invalid_field", path,
                                 "variable names must be 1 to %d letters, "
                                 "digits or '_'",
                                 RCD_TEMPLATE_NAME_MAX);
        snprintf (path, sizeof path, "%svars.%s", prefix, key);
        if (!json_is_string (value) && !json_is_number (value))
            return rcd_api_fail (err, 400, "invalid_field", path,
                                 "must be a string or a number");
        if (json_is_string (value) && rcd_api_utf8_length (json_string_value (
                                          value)) > RCD_API_VAR_VALUE_CHARS)
            return rcd_api_fail (err, 400, "invalid_field", path,
                                 "must be at most %d characters",
                                 RCD_API_VAR_VALUE_CHARS);
    }
    return 0;
}

int
rcd_api_parse_batch (const rcd_api_req_t *req, json_t **body_p,
                     json_t **items_p, rcd_api_reply_t *reply)
{
    static const rcd_api_field_t fields[] = {
        {"items", RCD_API_ARRAY, true},
        {NULL, RCD_API_ANY, false},
    };
    rcd_api_error_t err;
    *items_p = NULL;
    if (rcd_api_parse_body (req, body_p, &err) != 0 ||
        rcd_api_check_fields (*body_p, fields, "", &err) != 0) {
        rcd_api_reply_error (reply, &err);
        return -1;
    }
    *items_p = json_object_get (*body_p, "items");
    size_t count = json_array_size (*items_p);
    if (count > RCD_API_BATCH_MAX) {
        rcd_api_reply_fail (reply, 413, "payload_too_large", "items",
                            "at most %d items per batch (got %zu)",
                            RCD_API_BATCH_MAX, count);
        return -1;
    }
    return 0;
}

void
rcd_api_fail_unstored (rcd_api_error_t *err, bool db_down)
{
    if (db_down)
        rcd_api_fail (err, 503, "unavailable", NULL,
                      "the database is unavailable; retry later");
    else
        rcd_api_fail (err, 500, "internal_error", NULL, "internal error");
}

int
rcd_api_check_offsets (json_t *list, const char *field, bool repeats_ok,
                       int *days, size_t *n_p, rcd_api_error_t *err)
{
    char path[160];
    size_t n = json_array_size (list);
    if (n < 1 || n > RCD_API_OFFSETS_MAX)
        return rcd_api_fail (err, 400, "invalid_field", field,
                             "must hold 1 to %d whole numbers of days",
                             RCD_API_OFFSETS_MAX);
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get (list, i);
        json_int_t day = json_integer_value (v);
        snprintf (path, sizeof path, "%s[%zu]", field, i);
        if (!json_is_integer (v) || day < -RCD_API_OFFSET_DAYS ||
            day > RCD_API_OFFSET_DAYS)
            return rcd_api_fail (err, 400, "invalid_field", path,
                                 "must be a whole number of days from %d to "
                                 "%d",
                                 -RCD_API_OFFSET_DAYS, RCD_API_OFFSET_DAYS);
        for (size_t j = 0; j < i && !repeats_ok; j++)
            if (days[j] == (int)day)
                return rcd_api_fail (err, 400, "invalid_field", path,
                                     "repeats %s[%zu]", field, j);
        days[i] = (int)day;
    }
    *n_p = n;
    return 0;
}

int
rcd_api_parse_date (const char *text, int *y, int *m, int *d)
{
    if (!text || strlen (text) != 10 || text[4] != '-' || text[7] != '-')
        return -2;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && (text[i] < '0' || text[i] > '9'))
            return -2;
    *y = atoi (text);
    *m = atoi (text + 5);
    *d = atoi (text + 8);
    if (*y < 1900 || *m < 1 || *m > 12 || *d < 1 ||
        *d > s_days_in_month (*y, *m))
        return -2;
    return 0;
}

int64_t
rcd_api_days (int y, int m, int d)
{
    int last = s_days_in_month (y, m);
    return s_days_from_civil (y, m, d > last ? last : d);
}

void
rcd_api_page_init (rcd_api_page_t *page)
{
    *page = (rcd_api_page_t){.limit = RCD_API_PAGE_DEFAULT};
}

int
rcd_api_page_param (rcd_api_page_t *page, const char *key, const char *value,
                    rcd_api_reply_t *reply)
{
    if (strcmp (key, "since") == 0) {
        if (!value || rcd_api_parse_time (value, &page->since_ms) != 0) {
            rcd_api_reply_fail (reply, 400, "invalid_field", "since",
                                "must be an RFC 3339 timestamp with offset");
            return -1;
        }
        page->since = value;
        return 1;
    }
    if (strcmp (key, "limit") == 0) {
        if (rcd_api_parse_id (value, &page->limit) != 0 ||
            page->limit > RCD_API_PAGE_MAX) {
            rcd_api_reply_fail (reply, 400, "invalid_field", "limit",
                                "must be 1 to %d", RCD_API_PAGE_MAX);
            return -1;
        }
        return 1;
    }
    if (strcmp (key, "cursor") == 0) {
        if (rcd_api_parse_id (value, &page->cursor) != 0) {
            rcd_api_reply_fail (reply, 400, "invalid_field", "cursor",
                                "must be a next_cursor from a previous page");
            return -1;
        }
        return 1;
    }
    return 0;
}
