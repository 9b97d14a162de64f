/*  rcd_config.c - table-driven settings from the environment. */
#include "rcd_config.h"
#include "rcd_log.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *
rcd_config_env_name (const rcd_config_spec_t *spec, char *buf, size_t size)
{
    if (spec->env)
        return spec->env;
    size_t n = (size_t)snprintf (buf, size, "RECADO_");
    for (const char *k = spec->key; *k && n + 1 < size; k++)
        buf[n++] = (char)toupper ((unsigned char)*k);
    buf[n < size ? n : size - 1] = 0;
    return buf;
}

/*  Parses one value into its field. Returns 0 or -1 with *why set. */
static int
s_parse_value (const rcd_config_spec_t *spec, const char *text, void *target,
               const char **why)
{
    char *field = (char *)target + spec->offset;
    switch (spec->type) {
        case RCD_CONFIG_TYPE_INT: {
            char *end = NULL;
            errno = 0;
            long long v = strtoll (text, &end, 10);
            if (errno || end == text || *end) {
                *why = "not an integer";
                return -1;
            }
            if (v < spec->min || v > spec->max) {
                *why = "out of range";
                return -1;
            }
            *(int64_t *)field = v;
            return 0;
        }
        case RCD_CONFIG_TYPE_BOOL: {
            bool v;
            if (!strcasecmp (text, "1") || !strcasecmp (text, "true") ||
                !strcasecmp (text, "yes") || !strcasecmp (text, "on"))
                v = true;
            else if (!strcasecmp (text, "0") || !strcasecmp (text, "false") ||
                     !strcasecmp (text, "no") || !strcasecmp (text, "off"))
                v = false;
            else {
                *why = "not a boolean";
                return -1;
            }
            *(bool *)field = v;
            return 0;
        }
        case RCD_CONFIG_TYPE_STR:
        case RCD_CONFIG_TYPE_SECRET: {
            char **slot = (char **)field;
            free (*slot);
            *slot = strdup (text);
            return *slot ? 0 : -1;
        }
    }
    return -1;
}

int
rcd_config_load (const rcd_config_spec_t *specs, void *target)
{
    for (const rcd_config_spec_t *s = specs; s->key; s++) {
        char envbuf[96];
        const char *env = rcd_config_env_name (s, envbuf, sizeof envbuf);
        const char *text = getenv (env);
        if (!text || !*text)
            text = s->def;
        if (!text) {
            /* no default means required, strings included (rcd_config.h);
               an optional string says so with a default of "" */
            rcd_log_error ("config: missing required setting", "{s:s, s:s}",
                           "key", s->key, "env", env);
            rcd_config_free (specs, target);
            return -1;
        }
        const char *why = "out of memory";
        if (s_parse_value (s, text, target, &why) != 0) {
            if (s->type == RCD_CONFIG_TYPE_SECRET)
                rcd_log_error ("config: bad value", "{s:s, s:s, s:s}", "key",
                               s->key, "env", env, "why", why);
            else
                rcd_log_error ("config: bad value",
                               "{s:s, s:s, s:s, s:s, s:I, s:I}", "key", s->key,
                               "env", env, "value", text, "why", why, "min",
                               (json_int_t)s->min, "max", (json_int_t)s->max);
            rcd_config_free (specs, target);
            return -1;
        }
    }
    return 0;
}

/*  Masks a secret for the log. A URL keeps what helps an operator and
    hides what could be a credential: scheme://user:***@host:port, then
    the path only for PostgreSQL URLs (the database name), and "?***" for
    any query (libpq takes password=... there). Anything else, such as a
    key=value conninfo or a token, is "***" as a whole. */
static json_t *
s_masked (const rcd_config_spec_t *spec, const char *value)
{
    if (!value)
        return json_null ();
    if (spec->type != RCD_CONFIG_TYPE_SECRET)
        return json_string (value);
    const char *scheme = strstr (value, "://");
    if (!scheme || strchr (value, ' '))
        return json_string ("***");
    const char *authority = scheme + 3;
    const char *rest = authority + strcspn (authority, "/?#");
    /* the last '@' of the authority ends the user info */
    const char *at = NULL;
    for (const char *p = authority; p < rest; p++)
        if (*p == '@')
            at = p;
    const char *host = at ? at + 1 : authority;
    const char *colon =
        at ? memchr (authority, ':', (size_t)(at - authority)) : NULL;
    const char *user_end = colon ? colon : at ? at : authority;
    bool postgres = strncmp (value, "postgres://", 11) == 0 ||
                    strncmp (value, "postgresql://", 13) == 0;
    size_t pathlen = postgres ? strcspn (rest, "?#") : 0;
    char buf[512];
    snprintf (buf, sizeof buf, "%.*s%.*s%s%s%.*s%.*s%s",
              (int)(authority - value), value, (int)(user_end - authority),
              authority, colon ? ":***" : "", at ? "@" : "", (int)(rest - host),
              host, (int)pathlen, rest,
              rest[pathlen] ? (postgres ? "?***" : "/***") : "");
    return json_string (buf);
}

void
rcd_config_log (const rcd_config_spec_t *specs, const void *target)
{
    json_t *obj = json_object ();
    for (const rcd_config_spec_t *s = specs; s->key; s++) {
        const char *field = (const char *)target + s->offset;
        json_t *v = NULL;
        if (s->type == RCD_CONFIG_TYPE_INT)
            v = json_integer (*(const int64_t *)field);
        else if (s->type == RCD_CONFIG_TYPE_BOOL)
            v = json_boolean (*(const bool *)field);
        else
            v = s_masked (s, *(char *const *)field);
        json_object_set_new (obj, s->key, v);
    }
    rcd_log_info ("config", "{s:o}", "config", obj);
}

void
rcd_config_print_help (const rcd_config_spec_t *specs, const char *usage)
{
    printf ("%s\n\nSettings (environment):\n", usage);
    for (const rcd_config_spec_t *s = specs; s->key; s++) {
        char envbuf[96];
        printf ("  %-34s %s (default: %s)\n",
                rcd_config_env_name (s, envbuf, sizeof envbuf), s->help,
                s->def ? (s->type == RCD_CONFIG_TYPE_SECRET ? "***" : s->def)
                       : "none");
    }
}

void
rcd_config_free (const rcd_config_spec_t *specs, void *target)
{
    for (const rcd_config_spec_t *s = specs; s->key; s++) {
        if (s->type != RCD_CONFIG_TYPE_STR && s->type != RCD_CONFIG_TYPE_SECRET)
            continue;
        char **slot = (char **)((char *)target + s->offset);
        free (*slot);
        *slot = NULL;
    }
}
