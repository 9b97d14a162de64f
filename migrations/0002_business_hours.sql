-- 0002_business_hours: a tenant's weekly business hours, evaluated by
-- PostgreSQL in the tenant's IANA time zone (API.md "tenant settings").
--
-- hours is NULL (or JSON null): always open. Otherwise an object of
-- weekdays "mon".."sun" to lists of ["HH:MM", "HH:MM"] windows in local
-- time; start inclusive, end exclusive, end may be "24:00"; a weekday left
-- out is closed; a window whose end is not after its start never opens.
--
-- Everything here is built only from functions PostgreSQL itself marks
-- IMMUTABLE (timezone(text, timestamptz), timezone(text, timestamp),
-- arithmetic on timestamp without time zone, jsonb operators), so these
-- are IMMUTABLE too: they read no table and no session setting (not even
-- TimeZone). The time-zone database can change with a PostgreSQL update,
-- which PostgreSQL accepts for timezone() as well.
--
-- Daylight saving (observed on PostgreSQL 15, America/Santiago 2026):
--  * a local time in a spring-forward gap (2026-09-06 00:30 does not
--    exist) is read by "timestamp AT TIME ZONE tz" with the offset in
--    effect before the change: 00:30 -> 04:30Z = 01:30 -03. A window
--    starting at 00:30 is already open at the change itself (04:00Z, 01:00
--    local >= 00:30), so rcd_local_instants answers the first instant whose
--    local time is at or past it (04:00Z), not PostgreSQL's reading.
--  * an ambiguous local time (2026-04-04 23:30 happens twice, at -03 then
--    at -04) is read by PostgreSQL as the later one (03:30Z);
--    rcd_local_instants answers both (02:30Z and 03:30Z) and next_open
--    takes the first one after its argument.

-- "HH:MM" -> seconds since local midnight ("24:00" -> 86400).
CREATE FUNCTION rcd_hhmm_seconds(hhmm text) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT split_part(hhmm, ':', 1)::int * 3600
         + split_part(hhmm, ':', 2)::int * 60
$$;

-- The windows of one weekday (isodow 1 = mon .. 7 = sun) as a jsonb array;
-- empty when the day is left out or hours is not an object of arrays.
CREATE FUNCTION rcd_business_day(hours jsonb, isodow integer) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(hours) = 'object'
                 AND jsonb_typeof(hours -> (ARRAY['mon', 'tue', 'wed', 'thu',
                                  'fri', 'sat', 'sun'])[isodow]) = 'array'
                THEN hours -> (ARRAY['mon', 'tue', 'wed', 'thu', 'fri', 'sat',
                                     'sun'])[isodow]
                ELSE '[]'::jsonb END
$$;

-- The instants whose local time in tz is l: one normally, two when l is
-- repeated by a fall-back change; when l falls in a spring-forward gap,
-- the first instant whose local time is at or past l (the change itself).
-- Works on UTC "timestamp without time zone" values so that all arithmetic
-- stays immutable; off_b / off_a are the UTC offsets a day before and
-- after PostgreSQL's reading of l.
CREATE FUNCTION rcd_local_instants(l timestamp, tz text)
RETURNS SETOF timestamptz
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    WITH o AS (
        SELECT u,
               ((u - interval '1 day') AT TIME ZONE 'UTC' AT TIME ZONE tz)
                   - (u - interval '1 day') AS off_b,
               ((u + interval '1 day') AT TIME ZONE 'UTC' AT TIME ZONE tz)
                   - (u + interval '1 day') AS off_a
          FROM (SELECT (l AT TIME ZONE tz) AT TIME ZONE 'UTC' AS u) x
    ), exact AS (
        SELECT DISTINCT v.c
          FROM o, LATERAL (VALUES (o.u), (l - o.off_b), (l - o.off_a)) v(c)
         WHERE (v.c AT TIME ZONE 'UTC' AT TIME ZONE tz) = l
    )
    SELECT c AT TIME ZONE 'UTC' FROM exact
    UNION ALL
    SELECT g.first AT TIME ZONE 'UTC'
      FROM (SELECT min(l - o.off_a + k * interval '1 minute') AS first
              FROM o, generate_series(0,
                  greatest(0, (extract(epoch FROM o.off_a - o.off_b) / 60)::int)) k
             WHERE ((l - o.off_a + k * interval '1 minute')
                    AT TIME ZONE 'UTC' AT TIME ZONE tz) >= l) g
     WHERE NOT EXISTS (SELECT 1 FROM exact) AND g.first IS NOT NULL
$$;

-- Is the business open at instant at, in time zone tz?
CREATE FUNCTION rcd_business_open(hours jsonb, tz text, at timestamptz)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN hours IS NULL OR jsonb_typeof(hours) = 'null' THEN true
        ELSE EXISTS (
            SELECT 1
              FROM (SELECT at AT TIME ZONE tz AS lt) l,
                   jsonb_array_elements(rcd_business_day(
                       hours, extract(isodow FROM l.lt)::int)) w
             WHERE extract(epoch FROM l.lt::time)
                       >= rcd_hhmm_seconds(w ->> 0)
               AND extract(epoch FROM l.lt::time)
                       < rcd_hhmm_seconds(w ->> 1))
        END
$$;

-- after itself when open then; else the next instant a window opens,
-- searching the local day of after and the 8 local days that follow; NULL
-- when no window opens in that span (no window at all).
CREATE FUNCTION rcd_business_next_open(hours jsonb, tz text,
                                       after timestamptz)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN rcd_business_open(hours, tz, after) THEN after
        ELSE (
            SELECT min(i.at)
              FROM generate_series(0, 8) d,
                   LATERAL (SELECT (after AT TIME ZONE tz)::date + d AS day) dd,
                   LATERAL jsonb_array_elements(rcd_business_day(
                       hours, extract(isodow FROM dd.day)::int)) w,
                   LATERAL rcd_local_instants(
                       dd.day + rcd_hhmm_seconds(w ->> 0) * interval '1 second',
                       tz) i(at)
             WHERE rcd_hhmm_seconds(w ->> 1) > rcd_hhmm_seconds(w ->> 0)
               AND i.at > after
               -- a window lying wholly in a spring-forward gap never opens
               AND rcd_business_open(hours, tz, i.at))
        END
$$;
