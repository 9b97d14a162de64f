/*  test_business_hours - the business-hours SQL functions of migration
    0002 (rcd_business_open, rcd_business_next_open) called with fixed
    instants, across midnight windows and America/Santiago's 2026
    daylight-saving changes (found by probing the time-zone database, not
    assumed), and the scheduler claiming only tenants whose window is open.

    Instants are compared as UTC text ("2026-11-23T11:00:00Z") so the
    session time zone plays no part. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "rcd_proto.h"
#include "rcd_scheduler_server.h"
#include "rcd_test.h"

#define S_SP "America/Sao_Paulo"
#define S_CL "America/Santiago"

/*  Monday to Friday, 08:00-12:00 and 13:00-18:00. */
#define S_SPLIT_DAY "[[\"08:00\", \"12:00\"], [\"13:00\", \"18:00\"]]"
#define S_WEEKDAYS                                                             \
    "{\"mon\": " S_SPLIT_DAY ", \"tue\": " S_SPLIT_DAY                         \
    ", \"wed\": " S_SPLIT_DAY ", \"thu\": " S_SPLIT_DAY                        \
    ", \"fri\": " S_SPLIT_DAY "}"
#define S_EVERY_DAY(w)                                                         \
    "{\"mon\": " w ", \"tue\": " w ", \"wed\": " w ", \"thu\": " w             \
    ", \"fri\": " w ", \"sat\": " w ", \"sun\": " w "}"

static char *s_url;

static int
group_setup (void **state)
{
    (void)state;
    s_url = rcd_test_db_create ("business_hours");
    return 0;
}

static int
group_teardown (void **state)
{
    (void)state;
    rcd_test_db_drop (&s_url);
    return 0;
}

/*  rcd_business_open(hours, tz, at) as "t"/"f". */
static void
s_assert_open (const char *hours, const char *tz, const char *at, bool open)
{
    const char *p[] = {hours, tz, at};
    char *got = rcd_test_sql (
        s_url, "SELECT rcd_business_open($1::jsonb, $2, $3::timestamptz)", 3,
        p);
    assert_non_null (got);
    if (strcmp (got, open ? "t" : "f") != 0)
        fail_msg ("open(%s, %s, %s) = %s, expected %s", hours, tz, at, got,
                  open ? "t" : "f");
    free (got);
}

/*  rcd_business_next_open(hours, tz, after) as UTC text, or NULL. */
static char *
s_next_open (const char *hours, const char *tz, const char *after)
{
    const char *p[] = {hours, tz, after};
    return rcd_test_sql (s_url,
                         "SELECT to_char(rcd_business_next_open($1::jsonb, $2, "
                         "$3::timestamptz) AT TIME ZONE 'UTC', "
                         "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
                         3, p);
}

static void
s_assert_next_open (const char *hours, const char *tz, const char *after,
                    const char *expected)
{
    char *got = s_next_open (hours, tz, after);
    if (!got || strcmp (got, expected) != 0)
        fail_msg ("next_open(%s, %s, %s) = %s, expected %s", hours, tz, after,
                  got ? got : "NULL", expected);
    free (got);
}

static void
test_split_windows_in_sao_paulo (void **state)
{
    (void)state;
    /* 2026-11-23 is a Monday; Sao Paulo is at -03 all year */
    s_assert_open (S_WEEKDAYS, S_SP, "2026-11-23 07:59:59-03", false);
    s_assert_open (S_WEEKDAYS, S_SP, "2026-11-23 08:00-03", true);
    s_assert_open (S_WEEKDAYS, S_SP, "2026-11-23 11:59:59-03", true);
    s_assert_open (S_WEEKDAYS, S_SP, "2026-11-23 12:00-03", false);
    s_assert_open (S_WEEKDAYS, S_SP, "2026-11-23 12:30-03", false);
    s_assert_open (S_WEEKDAYS, S_SP, "2026-11-23 13:00-03", true);
    s_assert_open (S_WEEKDAYS, S_SP, "2026-11-23 17:59:59-03", true);
    s_assert_open (S_WEEKDAYS, S_SP, "2026-11-23 18:00-03", false);
    /* the same instant written in UTC: the zone is the tenant's */
    s_assert_open (S_WEEKDAYS, S_SP, "2026-11-23 16:00Z", true);
    s_assert_open (S_WEEKDAYS, S_SP, "2026-11-23 15:30Z", false);
    /* in UTC's own zone 16:00 is 16:00: open; 12:30 closed */
    s_assert_open (S_WEEKDAYS, "UTC", "2026-11-23 12:30Z", false);
    /* Saturday and Sunday are left out: closed all day */
    s_assert_open (S_WEEKDAYS, S_SP, "2026-11-21 10:00-03", false);
    s_assert_open (S_WEEKDAYS, S_SP, "2026-11-22 10:00-03", false);
    /* 12:30 closed: next opening 13:00 the same day */
    s_assert_next_open (S_WEEKDAYS, S_SP, "2026-11-23 12:30-03",
                        "2026-11-23T16:00:00Z");
    /* open now: the instant itself */
    s_assert_next_open (S_WEEKDAYS, S_SP, "2026-11-23 09:15:07-03",
                        "2026-11-23T12:15:07Z");
    /* Friday 18:30 -> Monday 08:00 local */
    s_assert_next_open (S_WEEKDAYS, S_SP, "2026-11-20 18:30-03",
                        "2026-11-23T11:00:00Z");
}

static void
test_null_empty_and_missing_days (void **state)
{
    (void)state;
    /* NULL (and JSON null): always open, next_open is the instant itself */
    const char *p[] = {S_SP};
    char *got = rcd_test_sql (
        s_url,
        "SELECT rcd_business_open(NULL, $1, '2026-11-22 03:00Z') "
        "AND rcd_business_open('null', $1, '2026-11-22 03:00Z') "
        "AND rcd_business_next_open(NULL, $1, '2026-11-22 03:00Z') = "
        "'2026-11-22 03:00Z'",
        1, p);
    assert_string_equal (got, "t");
    free (got);
    /* no weekday at all: never open, no next opening */
    s_assert_open ("{}", S_SP, "2026-11-23 10:00-03", false);
    got = s_next_open ("{}", S_SP, "2026-11-23 10:00-03");
    assert_null (got);
    /* only Sunday: Monday closed, next opening the coming Sunday */
    const char *sun = "{\"sun\": [[\"09:00\", \"10:00\"]]}";
    s_assert_open (sun, S_SP, "2026-11-23 09:30-03", false);
    s_assert_open (sun, S_SP, "2026-11-22 09:30-03", true);
    s_assert_next_open (sun, S_SP, "2026-11-23 09:30-03",
                        "2026-11-29T12:00:00Z");
    /* a window whose end is not after its start never opens */
    s_assert_open ("{\"mon\": [[\"10:00\", \"10:00\"]]}", S_SP,
                   "2026-11-23 10:00-03", false);
    got = s_next_open ("{\"mon\": [[\"10:00\", \"10:00\"]]}", S_SP,
                       "2026-11-23 09:00-03");
    assert_null (got);
}

static void
test_midnight_windows (void **state)
{
    (void)state;
    /* Tuesday 22:00-24:00 then Wednesday 00:00-02:00: one span across
       midnight (2026-11-24 is a Tuesday) */
    const char *h = "{\"tue\": [[\"22:00\", \"24:00\"]], "
                    "\"wed\": [[\"00:00\", \"02:00\"]]}";
    s_assert_open (h, S_SP, "2026-11-24 21:59:59-03", false);
    s_assert_open (h, S_SP, "2026-11-24 22:00-03", true);
    s_assert_open (h, S_SP, "2026-11-24 23:59:59.999-03", true);
    s_assert_open (h, S_SP, "2026-11-25 00:00-03", true);
    s_assert_open (h, S_SP, "2026-11-25 01:59:59-03", true);
    s_assert_open (h, S_SP, "2026-11-25 02:00-03", false);
    /* Monday 23:00 is not Tuesday's window; Wednesday 22:00 not either */
    s_assert_open (h, S_SP, "2026-11-23 23:00-03", false);
    s_assert_open (h, S_SP, "2026-11-25 23:00-03", false);
    s_assert_next_open (h, S_SP, "2026-11-24 21:00-03", "2026-11-25T01:00:00Z");
    s_assert_next_open (h, S_SP, "2026-11-24 23:00-03",
                        "2026-11-25T02:00:00Z"); /* open: itself */
    /* after Wednesday's window: next Tuesday 22:00 (7 days on) */
    s_assert_next_open (h, S_SP, "2026-11-25 02:00-03", "2026-12-02T01:00:00Z");
    /* every day 00:00-24:00: always open */
    s_assert_open (S_EVERY_DAY ("[[\"00:00\", \"24:00\"]]"), S_SP,
                   "2026-11-22 00:00-03", true);
}

/*  The 2026 change of America/Santiago between from and to (dates): the
    instant T of the change and the UTC offsets before and after, found by
    probing utc offsets minute by minute. Answers "T|off_before|off_after"
    with T as UTC text and offsets in seconds. */
static char *
s_santiago_change (const char *from, const char *to)
{
    const char *p[] = {from, to, S_CL};
    return rcd_test_sql (
        s_url,
        "WITH probe AS ("
        "  SELECT x, extract(epoch FROM (x AT TIME ZONE $3) - "
        "         (x AT TIME ZONE 'UTC'))::int AS off"
        "    FROM generate_series($1::timestamptz, $2::timestamptz, "
        "                         interval '1 minute') x"
        "), change AS ("
        "  SELECT x, lag(off) OVER (ORDER BY x) AS before, off AS after "
        "    FROM probe"
        ") SELECT to_char(x AT TIME ZONE 'UTC', "
        "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') || '|' || before || '|' || after"
        "    FROM change WHERE before <> after ORDER BY x LIMIT 1",
        3, p);
}

/*  An instant as UTC text: local (a timestamp without zone) minus an
    offset in seconds. Plain arithmetic, not the functions under test. */
static char *
s_local_minus_offset (const char *local, int offset_s)
{
    char off[24];
    snprintf (off, sizeof off, "%d", offset_s);
    const char *p[] = {local, off};
    return rcd_test_sql (
        s_url,
        "SELECT to_char($1::timestamp - $2::int * interval '1 second', "
        "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
        2, p);
}

/*  The local date of the first 08:00 at or after instant $1 in a zone at
    offset $2 (seconds): the same day when $1 is before 08:00 local. */
#define S_FIRST_8AM_DAY                                                        \
    "SELECT (($1::timestamptz AT TIME ZONE 'UTC') + $2::int * interval '1 "    \
    "second' + interval '16 hours')::date::text"

static char *
s_sql_text (const char *sql, const char *a, const char *b)
{
    const char *p[] = {a, b};
    return rcd_test_sql (s_url, sql, 2, p);
}

static void
test_santiago_spring_forward (void **state)
{
    (void)state;
    char *change = s_santiago_change ("2026-08-15Z", "2026-09-30Z");
    assert_non_null (change);
    char t[32];
    int before = 0, after = 0;
    assert_int_equal (sscanf (change, "%31[^|]|%d|%d", t, &before, &after), 3);
    free (change);
    assert_int_equal (after - before, 3600); /* clocks go forward 1 h */
    /* the local day of the first 08:00 after the change, and the gap's
       start (local, read with the old offset) */
    char offs[16];
    snprintf (offs, sizeof offs, "%d", after);
    char *day = s_sql_text (S_FIRST_8AM_DAY, t, offs);
    char gap_start[40];
    snprintf (offs, sizeof offs, "%d", before);
    char *gs = s_sql_text ("SELECT to_char(($1::timestamptz AT TIME ZONE "
                           "'UTC') + $2::int * interval '1 second', "
                           "'YYYY-MM-DD HH24:MI:SS')",
                           t, offs);
    snprintf (gap_start, sizeof gap_start, "%s", gs);
    free (gs);

    /* every day 08:00-18:00: from 20:00 local the evening before the
       change, the next opening is 08:00 local at the NEW offset */
    const char *h = S_EVERY_DAY ("[[\"08:00\", \"18:00\"]]");
    char local[64], from[64];
    snprintf (local, sizeof local, "%s 08:00", day);
    char *expect = s_local_minus_offset (local, after);
    char *before_change = s_local_minus_offset (local, before);
    assert_string_not_equal (expect, before_change);
    char *prev_evening = s_sql_text (
        "SELECT to_char($1::timestamptz - interval '4 hours' "
        "+ $2::int * interval '0 second', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
        t, "0");
    s_assert_next_open (h, S_CL, prev_evening, expect);
    s_assert_open (h, S_CL, expect, true);
    snprintf (from, sizeof from, "%s", expect);
    free (expect);
    free (before_change);
    /* and on the day after the change */
    char *next_day = s_sql_text ("SELECT ($1::date + $2::int)::text", day, "1");
    snprintf (local, sizeof local, "%s 08:00", next_day);
    expect = s_local_minus_offset (local, after);
    snprintf (from, sizeof from, "%s 18:30", day);
    char *from_utc = s_local_minus_offset (from, after);
    s_assert_next_open (h, S_CL, from_utc, expect);
    free (from_utc);
    free (expect);
    free (next_day);

    /* a window starting inside the gap (gap start + 30 min does not exist
       locally) opens at the change itself, the first instant whose local
       time is past it; PostgreSQL alone would read that local time with
       the old offset, 30 min later */
    char *in_gap = s_sql_text ("SELECT to_char($1::timestamp + interval '30 "
                               "minutes' + $2::int * interval '0 second', "
                               "'HH24:MI')",
                               gap_start, "0");
    char hg[400];
    snprintf (hg, sizeof hg, S_EVERY_DAY ("[[\"%s\", \"04:00\"]]"), in_gap,
              in_gap, in_gap, in_gap, in_gap, in_gap, in_gap);
    snprintf (local, sizeof local, "%s", t);
    char *pg_reading = s_sql_text (
        "SELECT to_char((($1::timestamp + interval '30 minutes') AT TIME ZONE "
        "'America/Santiago') AT TIME ZONE 'UTC', "
        "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') || $2",
        gap_start, "");
    char *t_plus_30 = s_sql_text (
        "SELECT to_char(($1::timestamptz + interval '30 minutes') AT TIME "
        "ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') || $2",
        t, "");
    assert_string_equal (pg_reading, t_plus_30); /* documented in 0002 */
    free (pg_reading);
    free (t_plus_30);
    char *minus_1s = s_sql_text ("SELECT ($1::timestamptz - interval '1 "
                                 "second')::text || $2",
                                 t, "");
    s_assert_open (hg, S_CL, minus_1s, false);
    s_assert_open (hg, S_CL, t, true);
    s_assert_next_open (hg, S_CL, prev_evening, t);
    free (minus_1s);
    free (in_gap);
    /* a window wholly inside the gap never opens that day */
    char *gap_end = s_sql_text ("SELECT to_char($1::timestamp + interval '30 "
                                "minutes' + $2::int * interval '0 second', "
                                "'HH24:MI')",
                                gap_start, "0");
    char *gap_from = s_sql_text ("SELECT to_char($1::timestamp, 'HH24:MI') "
                                 "|| $2",
                                 gap_start, "");
    char *dow = s_sql_text ("SELECT (ARRAY['mon','tue','wed','thu','fri',"
                            "'sat','sun'])[extract(isodow FROM $1::date)::int] "
                            "|| $2",
                            day, "");
    snprintf (hg, sizeof hg, "{\"%s\": [[\"%s\", \"%s\"]]}", dow, gap_from,
              gap_end);
    char *nx = s_next_open (hg, S_CL, prev_evening);
    assert_non_null (nx);
    assert_string_not_equal (nx, t);
    char *week_later = s_sql_text (
        "SELECT to_char($1::timestamptz AT TIME ZONE 'UTC' + interval '7 "
        "days' + $2::int * interval '0 second', "
        "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
        t, "0");
    /* a week later the same local time exists: gap start at the new
       offset, i.e. the change instant + 7 days - 1 h */
    char *week_expect = s_sql_text (
        "SELECT to_char($1::timestamp - interval '1 hour' + $2::int * "
        "interval '0 second', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
        week_later, "0");
    assert_string_equal (nx, week_expect);
    free (nx);
    free (week_later);
    free (week_expect);
    free (dow);
    free (gap_from);
    free (gap_end);
    free (prev_evening);
    free (day);
}

static void
test_santiago_fall_back (void **state)
{
    (void)state;
    char *change = s_santiago_change ("2026-03-15Z", "2026-04-30Z");
    assert_non_null (change);
    char t[32];
    int before = 0, after = 0;
    assert_int_equal (sscanf (change, "%31[^|]|%d|%d", t, &before, &after), 3);
    free (change);
    assert_int_equal (before - after, 3600); /* clocks go back 1 h */
    char offs[16];
    snprintf (offs, sizeof offs, "%d", after);
    char *day = s_sql_text (S_FIRST_8AM_DAY, t, offs);
    /* 08:00-18:00 every day: from the evening before, the next opening is
       08:00 local at the new offset on the day of the change */
    const char *h = S_EVERY_DAY ("[[\"08:00\", \"18:00\"]]");
    char local[64];
    snprintf (local, sizeof local, "%s 08:00", day);
    char *expect = s_local_minus_offset (local, after);
    char *old = s_local_minus_offset (local, before);
    assert_string_not_equal (expect, old);
    char *evening = s_sql_text (
        "SELECT ($1::timestamptz - interval '5 hours' + $2::int * interval "
        "'0 second')::text",
        t, "0");
    s_assert_next_open (h, S_CL, evening, expect);
    s_assert_open (h, S_CL, expect, true);
    s_assert_open (h, S_CL, old, false); /* 07:00 local at the new offset */
    free (expect);
    free (old);
    /* the repeated local hour just before the change instant's new-offset
       reading: a window over its second half is open twice; next_open
       from the evening before answers the first time */
    snprintf (offs, sizeof offs, "%d", before);
    char *first = s_sql_text ("SELECT to_char($1::timestamptz - interval '30 "
                              "minutes' + $2::int * interval '0 second', "
                              "'HH24:MI')",
                              t, "0");
    free (first);
    /* local time of T - 30 min at the old offset is the window start */
    char *start = s_sql_text (
        "SELECT to_char((($1::timestamptz - interval '30 minutes') AT TIME "
        "ZONE 'UTC') + $2::int * interval '1 second', 'HH24:MI')",
        t, offs);
    char *end = s_sql_text ("SELECT CASE WHEN $1 = '23:30' THEN '24:00' ELSE "
                            "to_char($1::time + interval '30 minutes', "
                            "'HH24:MI') END || $2",
                            start, "");
    char *dow = s_sql_text (
        "SELECT (ARRAY['mon','tue','wed','thu','fri','sat','sun'])"
        "[extract(isodow FROM (($1::timestamptz - interval '30 minutes') AT "
        "TIME ZONE 'UTC') + $2::int * interval '1 second')::int]",
        t, offs);
    char hr[160];
    snprintf (hr, sizeof hr, "{\"%s\": [[\"%s\", \"%s\"]]}", dow, start, end);
    char *first_at = s_sql_text (
        "SELECT to_char(($1::timestamptz - interval '30 minutes') AT TIME "
        "ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') || $2",
        t, "");
    char *second_at = s_sql_text (
        "SELECT to_char(($1::timestamptz + interval '30 minutes') AT TIME "
        "ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') || $2",
        t, "");
    char *mid = s_sql_text ("SELECT ($1::timestamptz + interval '1 minute' "
                            "+ $2::int * interval '0 second')::text",
                            t, "0");
    s_assert_open (hr, S_CL, first_at, true);
    s_assert_open (hr, S_CL, mid, false); /* first hour of the repeat */
    s_assert_open (hr, S_CL, second_at, true);
    s_assert_next_open (hr, S_CL, evening, first_at);
    s_assert_next_open (hr, S_CL, mid, second_at);
    free (first_at);
    free (second_at);
    free (mid);
    free (dow);
    free (start);
    free (end);
    free (evening);
    free (day);
}

/*  The scheduler: a closed tenant's due messages wait; opened, they leave
    in send_at order. */

static long long
s_tenant (const char *name)
{
    const char *p[] = {name};
    long long tenant = rcd_test_sql_int (
        s_url,
        "WITH t AS (INSERT INTO tenants (name, api_key_hash, webhook_token) "
        "VALUES ($1, sha256(convert_to($1, 'UTF8')), 'tok') RETURNING id), "
        "i AS (INSERT INTO instances (tenant_id, name, provider, base_url, "
        "api_key, rate_per_second) SELECT id, 'main', 'evolution', "
        "'http://127.0.0.1:1', 'k', 100 FROM t) SELECT id FROM t",
        1, p);
    assert_true (tenant > 0);
    return tenant;
}

static long long
s_message (long long tenant, int send_at_offset_s)
{
    char t[24], off[24];
    snprintf (t, sizeof t, "%lld", tenant);
    snprintf (off, sizeof off, "%d", send_at_offset_s);
    const char *p[] = {t, off};
    return rcd_test_sql_int (
        s_url,
        "INSERT INTO messages (tenant_id, to_phone, body, send_at) VALUES "
        "($1, '+5511912345678', 'hi', now() + $2::int * interval '1 "
        "second') RETURNING id",
        2, p);
}

static bool
s_recv_dispatch (zsock_t *pull, rcd_dispatch_t *out, int timeout_ms)
{
    zsock_set_rcvtimeo (pull, timeout_ms);
    rcd_proto_msg_t msg;
    if (rcd_proto_recv (pull, &msg) != 0)
        return false;
    assert_int_equal (msg.type, RCD_MSG_DISPATCH);
    *out = msg.u.dispatch;
    return true;
}

static void
test_scheduler_claims_only_open_tenants (void **state)
{
    (void)state;
    long long open = s_tenant ("open");
    long long closed = s_tenant ("closed");
    char c[24];
    snprintf (c, sizeof c, "%lld", closed);
    const char *pc[] = {c};
    /* closed: one window, on the weekday two days from now (local) */
    rcd_test_sql_int (
        s_url,
        "WITH u AS (UPDATE tenants SET business_hours = jsonb_build_object("
        "(ARRAY['mon','tue','wed','thu','fri','sat','sun'])[extract(isodow "
        "FROM (now() AT TIME ZONE timezone) + interval '2 days')::int], "
        "'[[\"00:00\", \"24:00\"]]'::jsonb) WHERE id = $1 RETURNING "
        "rcd_business_open(business_hours, timezone, now()) o) "
        "SELECT count(*) FROM u WHERE NOT o",
        1, pc);
    assert_int_equal (
        rcd_test_sql_int (s_url,
                          "SELECT count(*) FROM tenants WHERE id = $1 AND NOT "
                          "rcd_business_open(business_hours, timezone, now())",
                          1, pc),
        1);
    /* closed tenant's messages inserted newest first, so id order is the
       reverse of send_at order */
    long long c3 = s_message (closed, -10);
    long long c2 = s_message (closed, -20);
    long long c1 = s_message (closed, -30);
    long long o1 = s_message (open, -5);
    long long o2 = s_message (open, -4);

    char endpoints[3][64];
    for (int i = 0; i < 3; i++)
        snprintf (endpoints[i], sizeof endpoints[i], "tcp://127.0.0.1:%d",
                  rcd_test_free_port ());
    rcd_scheduler_config_t cfg = {
        .database_url = s_url,
        .nudge_bind = endpoints[0],
        .dispatch_bind = endpoints[1],
        .events_endpoint = endpoints[2],
        .poll_ms = 50,
        .claim_batch = 1, /* one per statement: socket order = claim order */
        .lease_ms = 30000,
        .dispatch_hwm = 1000,
        .lock_key = 4343,
        .drain_timeout_ms = 1000,
        .burst_ms = 1000,
    };
    zsock_t *pull = zsock_new (ZMQ_PULL);
    assert_non_null (pull);
    assert_int_equal (zsock_connect (pull, "%s", endpoints[1]), 0);
    zactor_t *sched = zactor_new (rcd_scheduler_server, &cfg);
    assert_non_null (sched);

    rcd_dispatch_t d;
    assert_true (s_recv_dispatch (pull, &d, 5000));
    assert_int_equal (d.tenant_id, open);
    assert_int_equal (d.id, o1);
    rcd_dispatch_clear (&d);
    assert_true (s_recv_dispatch (pull, &d, 5000));
    assert_int_equal (d.id, o2);
    rcd_dispatch_clear (&d);
    /* several polls: nothing of the closed tenant leaves */
    assert_false (s_recv_dispatch (pull, &d, 500));
    assert_int_equal (
        rcd_test_sql_int (s_url,
                          "SELECT count(*) FROM messages WHERE tenant_id = "
                          "$1 AND status = 'pending' AND attempts = 0",
                          1, pc),
        3);

    /* open it: every day, all day */
    rcd_test_sql_int (
        s_url,
        "WITH u AS (UPDATE tenants SET business_hours = "
        "'" S_EVERY_DAY (
            "[[\"00:00\", \"24:00\"]]") "' "
                                        "WHERE id = $1 RETURNING 1) SELECT "
                                        "count(*) FROM u",
        1, pc);
    long long expect[3] = {c1, c2, c3};
    for (int i = 0; i < 3; i++) {
        assert_true (s_recv_dispatch (pull, &d, 5000));
        assert_int_equal (d.tenant_id, closed);
        assert_int_equal (d.id, expect[i]);
        rcd_dispatch_clear (&d);
    }
    assert_false (s_recv_dispatch (pull, &d, 300));
    zactor_destroy (&sched);
    zsock_destroy (&pull);
    assert_int_equal (rcd_test_sql_int (s_url,
                                        "SELECT count(*) FROM messages WHERE "
                                        "status = 'sending'",
                                        0, NULL),
                      5);
}

int
main (void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test (test_split_windows_in_sao_paulo),
        cmocka_unit_test (test_null_empty_and_missing_days),
        cmocka_unit_test (test_midnight_windows),
        cmocka_unit_test (test_santiago_spring_forward),
        cmocka_unit_test (test_santiago_fall_back),
        cmocka_unit_test (test_scheduler_claims_only_open_tenants),
    };
    return cmocka_run_group_tests (tests, group_setup, group_teardown);
}
