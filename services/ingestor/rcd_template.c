/*  rcd_template.c - {{var}} placeholders. */
#include "rcd_template.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool
s_name_char (char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '_';
}

/*  Parses the placeholder opening at p ("{{"). Returns the length of the
    whole placeholder and sets *name and *name_len, or 0 when malformed. */
static size_t
s_placeholder (const char *p, const char **name, size_t *name_len)
{
    const char *q = p + 2;
    while (*q == ' ')
        q++;
    const char *start = q;
    while (s_name_char (*q))
        q++;
    size_t len = (size_t)(q - start);
    while (*q == ' ')
        q++;
    if (len < 1 || len > RCD_TEMPLATE_NAME_MAX || q[0] != '}' || q[1] != '}')
        return 0;
    *name = start;
    *name_len = len;
    return (size_t)(q + 2 - p);
}

int
rcd_template_check (const char *text, const char **why)
{
    const char *name;
    size_t name_len;
    for (const char *p = strstr (text, "{{"); p; p = strstr (p, "{{")) {
        size_t len = s_placeholder (p, &name, &name_len);
        if (len == 0) {
            *why = "a \"{{\" must open a placeholder: {{name}}, the name "
                   "1 to 64 letters, digits or '_'";
            return -2;
        }
        p += len;
    }
    return 0;
}

/*  A growing output buffer. */
typedef struct {
    char *data;
    size_t len, cap;
} s_buf_t;

static int
s_put (s_buf_t *buf, const char *bytes, size_t n)
{
    if (buf->len + n + 1 > buf->cap) {
        size_t cap = buf->cap ? buf->cap : 256;
        while (cap < buf->len + n + 1)
            cap *= 2;
        char *data = realloc (buf->data, cap);
        if (!data)
            return -1;
        buf->data = data;
        buf->cap = cap;
    }
    memcpy (buf->data + buf->len, bytes, n);
    buf->len += n;
    buf->data[buf->len] = '\0';
    return 0;
}

/*  The value of name in the first scope that has a usable one. */
static json_t *
s_lookup (json_t *const *scopes, size_t nscopes, const char *name)
{
    for (size_t i = 0; i < nscopes; i++) {
        json_t *v = scopes[i] ? json_object_get (scopes[i], name) : NULL;
        if (json_is_string (v) || json_is_number (v))
            return v;
    }
    return NULL;
}

int
rcd_template_render (const char *text, json_t *const *scopes, size_t nscopes,
                     char **out_p, char *missing, size_t missing_size)
{
    s_buf_t buf = {NULL, 0, 0};
    const char *p = text;
    int rc = -1;
    for (;;) {
        const char *open = strstr (p, "{{");
        const char *name = NULL;
        size_t name_len = 0, len = 0;
        if (open)
            len = s_placeholder (open, &name, &name_len);
        if (!open || len == 0) {
            /* malformed ones were refused when stored; copy them as is */
            const char *end = open ? open + 2 : p + strlen (p);
            if (s_put (&buf, p, (size_t)(end - p)) != 0)
                goto cleanup;
            if (!open)
                break;
            p = end;
            continue;
        }
        if (s_put (&buf, p, (size_t)(open - p)) != 0)
            goto cleanup;
        char key[RCD_TEMPLATE_NAME_MAX + 1];
        memcpy (key, name, name_len);
        key[name_len] = '\0';
        json_t *value = s_lookup (scopes, nscopes, key);
        char number[48];
        const char *text_value = NULL;
        if (json_is_string (value))
            text_value = json_string_value (value);
        else if (json_is_integer (value)) {
            snprintf (number, sizeof number, "%" PRId64,
                      (int64_t)json_integer_value (value));
            text_value = number;
        }
        else if (json_is_real (value)) {
            snprintf (number, sizeof number, "%.15g", json_real_value (value));
            text_value = number;
        }
        else {
            snprintf (missing, missing_size, "%s", key);
            rc = -2;
            goto cleanup;
        }
        if (s_put (&buf, text_value, strlen (text_value)) != 0)
            goto cleanup;
        p = open + len;
    }
    if (!buf.data && s_put (&buf, "", 0) != 0)
        goto cleanup;
    *out_p = buf.data;
    return 0;
cleanup:
    free (buf.data);
    return rc;
}

int
rcd_template_brl (int64_t cents, char *buf, size_t size)
{
    /* magnitude as unsigned: INT64_MIN has no positive twin */
    uint64_t v = cents < 0 ? (uint64_t)0 - (uint64_t)cents : (uint64_t)cents;
    char reais[32];
    int n = snprintf (reais, sizeof reais, "%" PRIu64, v / 100);
    char grouped[48];
    size_t g = 0;
    for (int i = 0; i < n; i++) {
        if (i > 0 && (n - i) % 3 == 0)
            grouped[g++] = '.';
        grouped[g++] = reais[i];
    }
    grouped[g] = '\0';
    return snprintf (buf, size, "%sR$ %s,%02u", cents < 0 ? "-" : "", grouped,
                     (unsigned)(v % 100));
}
